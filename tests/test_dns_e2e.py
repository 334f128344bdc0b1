"""End to end through the CLI: a local -> local failover whose DNS is a real BIND server
(RFC 2136), and the same with Cloudflare (the SDK against tests/doubles/cloudflare.py).

The credentials reach the config only through ``${ENV}``; the tests check that they
never show up in what the CLI prints (text or --json), in the history or in any file
the tool writes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.dns.rfc2136 import query_authoritative
from tests.conftest import ROOT
from tests.servers import bind_server
from tests.servers import free_port

# Deliberately neutral variable names: the values must stay hidden because of the
# fields they land in (key_secret, api_token), not because the name looks secret.
SECRET_VAR = "E2E_DNS_KEY_MATERIAL"
TOKEN_VAR = "E2E_CF_CREDENTIAL"


class Cli:
    """Runs ``cli.py`` in a subprocess and keeps everything it printed."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.env = env
        self.printed: list[str] = []

    def __call__(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), *args, "-c", str(self.config)],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.config.parent,
            timeout=120,
        )
        self.printed += [proc.stdout, proc.stderr]
        assert proc.returncode in ok, (
            f"failover {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        return proc

    def json(self, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
        proc = self(*args, "--json", ok=ok)
        return json.loads(proc.stdout)


def service_yaml(port: int) -> str:
    return f"""
providers:
  - {{name: alpha, type: local}}
  - {{name: beta, type: local}}
services:
  web:
    domain: www.example.test
    port: {port}
    run:
      command: "{sys.executable} -m http.server {{port}} --bind {{address}}"
    health:
      interval: 300ms
      timeout: 250ms
      fall: 2
      rise: 1
    policy:
      providers: [alpha, beta]
      ready_timeout: 20s
"""


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (SECRET_VAR, TOKEN_VAR)}
    env.update(extra)
    env["FAILOVER_PROBE_NETWORKS"] = "127.0.0.0/8"
    env["PYTHONPATH"] = str(ROOT)
    return env


def cut_off_alpha(state_dir: Path, host_id: str) -> None:
    """What a cloud does to a customer it drops: account suspended, host gone."""
    root = state_dir / "local" / "alpha"
    (root / "SUSPENDED").write_text("the provider closed this account\n")
    meta = json.loads((root / "hosts" / host_id / "host.json").read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(meta["pid"]), signal.SIGKILL)


def kill_hosts(state_dir: Path) -> None:
    for meta_file in (state_dir / "local").glob("*/hosts/*/host.json"):
        with contextlib.suppress(ValueError, KeyError, OSError):
            pid = int(json.loads(meta_file.read_text())["pid"])
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    (state_dir / "local" / "alpha" / "SUSPENDED").unlink(missing_ok=True)


@contextlib.contextmanager
def hosts_cleaned(state_dir: Path) -> Iterator[None]:
    try:
        yield
    finally:
        kill_hosts(state_dir)


def fail_over(cli: Cli, state_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """deploy on alpha, cut alpha off, run `check` until the service moved.
    Returns the active host before and after."""
    cli("deploy", "--provider", "alpha")
    before = cli.json("status")["services"][0]
    assert before["active"]["provider"] == "alpha"
    cut_off_alpha(state_dir, before["active"]["host_id"])
    deadline = time.monotonic() + 60
    while True:
        doc = cli.json("check", ok=(0, 1, 2))
        if doc["services"][0]["action"] == "failover":
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no failover within 60s: {doc}")
        time.sleep(0.3)
    assert doc["exit_code"] == 1  # WARNING: moved in this run and healthy again
    after = cli.json("status")["services"][0]
    assert after["active"]["provider"] == "beta"
    assert after["active"]["address"] != before["active"]["address"]
    return before, after


def assert_hidden(secret: str, cli: Cli, root: Path, skip: tuple[Path, ...] = ()) -> None:
    """``secret`` in no CLI output and in no file under ``root`` (but ``skip``)."""
    for text in cli.printed:
        assert secret not in text, f"secret leaked in CLI output:\n{text[:3000]}"
    needle = secret.encode()
    checked = 0
    for path in root.rglob("*"):
        if not path.is_file() or any(path.is_relative_to(s) for s in skip):
            continue
        checked += 1
        assert needle not in path.read_bytes(), f"secret leaked into {path}"
    assert checked > 0


# --------------------------------------------------------------------------- BIND


def bind_config(tmp_path: Path, host: str, port: int, key_name: str, zone: str) -> Path:
    config = tmp_path / "failover.yaml"
    config.write_text(
        f"""version: 1
dns:
  type: rfc2136
  zone: {zone}
  ttl: 30
  server: ["127.0.0.1:{free_port()}", "{host}:{port}"]   # the first one is down
  key_name: {key_name}
  key_secret: ${{{SECRET_VAR}}}
  timeout: 500ms
  poll_interval: 0s
  propagation_timeout: 5s
  retry_attempts: 2
  retry_max_time: 5s
"""
        + service_yaml(free_port())
    )
    return config


def test_failover_with_bind_dns(tmp_path: Path) -> None:
    with bind_server(tmp_path) as (host, port, key_name, secret, zone):
        server = f"{host}:{port}"
        config = bind_config(tmp_path, host, port, key_name, zone)
        state_dir = tmp_path / ".failover"
        cli = Cli(config, env_with(**{SECRET_VAR: secret}))
        with hosts_cleaned(state_dir):
            cli("validate")
            doctor = cli.json("doctor", ok=(0, 1))
            assert "key accepted" in json.dumps(doctor)
            _before, after = fail_over(cli, state_dir)
            # Asked of the server itself: it answers the new host, with the config's TTL.
            values, ttl = query_authoritative(server, "www.example.test", "A", 1)
            assert values == [after["active"]["address"]] and ttl == 30
            assert after["dns"]["values"] == values
            history = cli.json("history")["events"]
            assert [e["kind"] for e in history][:2] == ["failover", "deploy"]
            cutover = next(s for s in history[0]["steps"] if s["name"] == "cutover")
            assert after["active"]["address"] in cutover["detail"]
            cli("history")
            cli("status")
        assert_hidden(secret, cli, tmp_path, skip=(tmp_path / "bind",))


def test_bind_secret_hidden_when_things_fail(tmp_path: Path) -> None:
    with bind_server(tmp_path) as (host, port, key_name, _secret, zone):
        wrong = base64.b64encode(os.urandom(32)).decode()
        config = bind_config(tmp_path, host, port, key_name, zone)
        state_dir = tmp_path / ".failover"
        cli = Cli(config, env_with(**{SECRET_VAR: wrong}))
        with hosts_cleaned(state_dir):
            doctor = cli("doctor", ok=(1,))
            assert "rejected by server" in doctor.stdout + doctor.stderr
            cli.json("doctor", ok=(1,))
            failed = cli("deploy", "--provider", "alpha", ok=(1,))
            assert f"rejected by server {host}:{port} for zone {zone}" in (
                failed.stdout + failed.stderr
            )
            cli.json("deploy", "--provider", "alpha", ok=(1,))
            cli.json("history")
            cli.json("status", ok=(0, 1))
            cli("check", ok=(0, 1, 2, 3))
        # The record did not move.
        assert query_authoritative(f"{host}:{port}", "www.example.test", "A", 1)[0] == [
            "127.77.0.1"
        ]
        assert_hidden(wrong, cli, tmp_path, skip=(tmp_path / "bind",))


# --------------------------------------------------------------------------- Cloudflare


@pytest.fixture
def cloudflare_double() -> Iterator[Any]:
    pytest.importorskip("cloudflare")
    from tests.doubles.cloudflare import CloudflareDouble

    token = "cf-e2e-" + os.urandom(12).hex()
    with CloudflareDouble(token=token) as double:
        double.add_zone("example.test")
        # Proxied at Cloudflare: the cutover must keep it so.
        double.add_record("example.test", "www.example.test", "A", "127.0.0.2", proxied=True)
        yield double, token


def cloudflare_config(tmp_path: Path, base_url: str) -> Path:
    config = tmp_path / "failover.yaml"
    config.write_text(
        f"""version: 1
dns:
  type: cloudflare
  zone: example.test
  ttl: 60
  api_token: ${{{TOKEN_VAR}}}
  endpoint: {base_url}
  timeout: 2s
  retry_attempts: 3
  retry_max_time: 5s
"""
        + service_yaml(free_port())
    )
    return config


def test_failover_with_cloudflare_dns(tmp_path: Path, cloudflare_double: Any) -> None:
    double, token = cloudflare_double
    config = cloudflare_config(tmp_path, double.base_url)
    state_dir = tmp_path / ".failover"
    cli = Cli(config, env_with(**{TOKEN_VAR: token}))
    with hosts_cleaned(state_dir):
        cli("validate")
        doctor = cli.json("doctor", ok=(0, 1))
        assert "token accepted" in json.dumps(doctor)
        double.fail_next(429, retry_after=0)  # throttled once during the run: retried
        _before, after = fail_over(cli, state_dir)
        (record,) = double.records("www.example.test", "A")
        assert record["content"] == after["active"]["address"]
        assert record["proxied"] is True
        assert after["dns"]["values"] == [after["active"]["address"]]
        history = cli.json("history")["events"]
        assert [e["kind"] for e in history][:2] == ["failover", "deploy"]
        cli("status")
    assert_hidden(token, cli, tmp_path)


def test_cloudflare_token_hidden_when_rejected(tmp_path: Path, cloudflare_double: Any) -> None:
    double, token = cloudflare_double
    wrong = "cf-wrong-" + os.urandom(12).hex()
    config = cloudflare_config(tmp_path, double.base_url)
    state_dir = tmp_path / ".failover"
    cli = Cli(config, env_with(**{TOKEN_VAR: wrong}))
    with hosts_cleaned(state_dir):
        doctor = cli("doctor", ok=(1,))
        assert "token rejected" in doctor.stdout + doctor.stderr
        cli.json("doctor", ok=(1,))
        failed = cli("deploy", "--provider", "alpha", ok=(1,))
        assert "token rejected" in failed.stdout + failed.stderr
        cli.json("history")
        cli.json("status", ok=(0, 1))
    assert double.records("www.example.test")[0]["content"] == "127.0.0.2"
    assert_hidden(wrong, cli, tmp_path)
    assert_hidden(token, cli, tmp_path)
