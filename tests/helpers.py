"""Writing configs and driving the real ``failover`` command in tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange

ROOT = Path(__file__).resolve().parent.parent
FAILOVER = str(Path(sys.executable).parent / "failover")

APP = "{python} -m failover.demo_app --port {port} --bind {address}"
FLAKY = "{python} -m tests.apps.flaky --port {port} --bind {address}"


def base_config(**service: Any) -> dict[str, Any]:
    svc: dict[str, Any] = {
        "domain": "www.example.test",
        "port": 8080,
        "run": {"command": APP},
        "health": {"interval": "200ms", "timeout": "200ms", "fall": 2, "rise": 1},
        "policy": {"ready_timeout": "10s", "max_moves_per_hour": 10},
    }
    for key, value in service.items():
        if isinstance(value, dict) and isinstance(svc.get(key), dict):
            svc[key] = {**svc[key], **value}
        else:
            svc[key] = value
    return {
        "version": 1,
        "dns": {"type": "local", "zone": "example.test", "ttl": 5},
        "providers": [{"name": "alpha", "type": "local"}, {"name": "beta", "type": "local"}],
        "services": {"web": svc},
    }


def write_config(tmp: Path, data: dict[str, Any] | str, name: str = "failover.yaml") -> Path:
    path = tmp / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def env_for(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAILOVER_")}
    env["FAILOVER_PROBE_NETWORKS"] = "127.0.0.0/8"
    # The hosts run `python -m tests.apps...`, which needs the checkout on the path.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def failover(
    *args: str,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    cmd = [FAILOVER, *args]
    if config is not None:
        cmd += ["-c", str(config)]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env_for(env),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def failover_json(*args: str, config: Path, env: dict[str, str] | None = None) -> Any:
    proc = failover(*args, "--json", config=config, env=env)
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"not JSON ({exc}): {proc.stdout!r} {proc.stderr!r}") from None


def state_dir(config: Path) -> Path:
    return config.parent / ".failover"


def host_records(config: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((state_dir(config) / "local").glob("*/hosts/*/host.json")):
        meta = json.loads(path.read_text())
        meta["provider"] = path.parent.parent.parent.name
        if not meta.get("pid"):
            # A create cut short: the host's shell wrote its own pid file.
            text = (
                (path.parent / "pid").read_text().strip() if (path.parent / "pid").exists() else ""
            )
            meta["pid"] = int(text) if text.isdigit() else 0
        out.append(meta)
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def live_hosts(config: Path) -> list[dict[str, Any]]:
    """Hosts whose process group is running, whatever the state says."""
    return [
        h
        for h in host_records(config)
        if not h.get("destroyed") and not h.get("stopped") and pid_alive(int(h["pid"]))
    ]


def active_host_id(config: Path) -> str:
    """The first service's active host, as ``failover status`` shows it, read from the
    state store in this process: a ``status`` process costs half a second of CPU (seconds
    with a cloud SDK to load), and kill_active runs in most end-to-end tests."""
    from failover.config import load
    from failover.state import open_store

    conf = load(config)
    store = open_store(conf)
    try:
        active = store.service(next(iter(conf.services))).active
    finally:
        store.close()
    assert active is not None, f"{config}: no active host"
    return str(active["host_id"])


def kill_active(config: Path) -> dict[str, Any]:
    active = active_host_id(config)
    for host in host_records(config):
        if host["id"] == active:
            pid = int(host["pid"])
            os.killpg(pid, signal.SIGKILL)
            wait_for(lambda pid=pid: not pid_alive(pid), what="host to die")
            return host
    raise AssertionError(f"active host {active} not found")


def wait_for(predicate: Any, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def dns_values(config: Path, name: str = "www.example.test") -> list[str]:
    zone = json.loads((state_dir(config) / "dns" / "example.test.json").read_text())
    return list(zone["records"][f"{name} A"]["values"])


def cleanup(config: Path) -> None:
    """Kill every host a test left (tests must leave nothing running)."""
    for host in host_records(config):
        if host.get("pid") and pid_alive(int(host["pid"])):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(host["pid"]), signal.SIGKILL)


def dns_moves(prefix: str, old: str | None, new: str, n: int = 10) -> list[RecordChange]:
    """``n`` changes ``prefix0``... from ``old`` (None: no condition) to ``new`` + index."""
    expect = None if old is None else [old]
    return [RecordChange(f"{prefix}{i}", "A", [f"{new}{i}"], 30, expect) for i in range(n)]


def result_values(results: list[Record | ProviderError]) -> list[list[str] | str]:
    return [r.values if isinstance(r, Record) else type(r).__name__ for r in results]
