"""The ssh provider through its interface, against a real OpenSSH server (tests/sshd.py).

Two "machines" are two entries that reach the same sshd, each with its own folder, and
whose services bind different loopback addresses. The machines have no systemd, so the
supervisor under test is the setsid one with a pid file (``supervisor: auto`` falls back
to it); the systemd branch of the start script is not exercised here.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from providers.base import AccountBlocked
from providers.base import HostSpec
from providers.base import HostState
from providers.base import NotFound
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import RunSpec
from providers.base import TransientError
from providers.ssh import SshProvider
from providers.ssh import SshSettings
from tests.sshd import Sshd
from tests.sshd import keygen
from tests.sshd import make_sshd

APP = "{python} -m failover.demo_app --port {port} --bind {address}"
NET = f"127.81.{random.randint(1, 250)}"
PORT = 18180


def machine(sshd: Sshd, root: Path, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "address": f"{NET}.{n}",
        "name": f"m{n}",
        "ssh": sshd.endpoint(),
        "host_key": sshd.host_key,
        "dir": str(root / f"m{n}"),
        **extra,
    }


def settings(sshd: Sshd, root: Path, *machines: dict[str, Any], **extra: Any) -> SshSettings:
    return SshSettings.model_validate(
        {
            "name": "own",
            "type": "ssh",
            "identity_file": str(sshd.client_key),
            "python": sys.executable,
            "machines": list(machines) or [machine(sshd, root, 1), machine(sshd, root, 2)],
            "connect_timeout": "3s",
            "timeout": "20s",
            **extra,
        }
    )


def spec(name: str = "web-g1-own", generation: int = 1, **run: Any) -> HostSpec:
    return HostSpec(
        name=name,
        service="web",
        generation=generation,
        port=PORT,
        run=RunSpec(command=run.pop("command", APP), **run),
    )


def kill_hosts(root: Path) -> None:
    """Tests leave nothing running: every supervisor under ``root`` is killed."""
    for pid_file in root.glob("m*/*/pid"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    kill_hosts(tmp_path)


def make(settings_: SshSettings, root: Path, logs: list[str] | None = None) -> SshProvider:
    sink = logs.append if logs is not None else (lambda m: None)
    return SshProvider(settings_, ProviderContext(root, sink, ports={"web": PORT}))


def wait_state(p: SshProvider, host_id: str, state: HostState) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        host = p.get_host(host_id)
        if host and host.state == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"{host_id} never reached {state}: {p.get_host(host_id)}")


def get(address: str) -> int:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}:{PORT}/", timeout=2) as r:
                return int(r.status)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_lifecycle_on_two_machines(running_sshd: Sshd, machines: Path) -> None:
    p = make(settings(running_sshd, machines), machines)
    first = p.create_host(spec(setup=("echo set > marker",), env={"GREETING": "a b'c"}))
    assert first.address == f"{NET}.1" and first.zone == "m1"
    assert p.create_host(spec()).id == first.id  # idempotent on the name
    wait_state(p, first.id, HostState.RUNNING)
    assert get(f"{NET}.1") == 200
    folder = machines / "m1" / "web"
    assert (folder / "root" / "marker").read_text() == "set\n"
    assert "GREETING='a b'\"'\"'c'" in (folder / "env").read_text()
    assert (folder / "env").stat().st_mode & 0o077 == 0

    # The first machine serves the service: the next host goes to the second.
    second = p.create_host(spec("web-g2-own", 2))
    assert second.address == f"{NET}.2"
    assert sorted(h.id for h in p.list_hosts("web")) == sorted([first.id, second.id])
    assert p.list_hosts("other") == []

    # The process outlives every SSH session: a new provider (new connections) sees it.
    p.close()
    p = make(settings(running_sshd, machines), machines)
    assert p.get_host(first.id).state == HostState.RUNNING  # type: ignore[union-attr]
    assert get(f"{NET}.1") == 200

    p.stop_host(first.id)
    stopped = p.get_host(first.id)
    assert stopped is not None and stopped.state == HostState.STOPPED
    assert (folder / "host.json").exists()  # stop keeps the files
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{NET}.1:{PORT}/", timeout=1)
    p.stop_host(first.id)  # idempotent

    p.destroy_host(first.id)
    assert not folder.exists()
    assert p.get_host(first.id) is None
    p.destroy_host(first.id)  # idempotent
    p.destroy_host(second.id)
    assert p.list_hosts("web") == []
    p.close()


def test_list_hosts_rebuilds_from_the_machines(running_sshd: Sshd, machines: Path) -> None:
    p = make(settings(running_sshd, machines), machines)
    host = p.create_host(spec(generation=7))
    p.close()
    # Another watcher with no state of its own: everything comes from the machine's files.
    other = make(settings(running_sshd, machines), machines / "elsewhere")
    (found,) = other.list_hosts("web")
    assert (found.id, found.name, found.generation, found.purpose) == (
        host.id,
        "web-g1-own",
        7,
        "serve",
    )
    other.destroy_host(host.id)
    other.close()


def test_a_create_cut_off_before_the_start_is_resumed(running_sshd: Sshd, machines: Path) -> None:
    p = make(settings(running_sshd, machines), machines)
    host = p.create_host(spec())
    wait_state(p, host.id, HostState.RUNNING)
    # As if the watcher died after the upload, before the supervisor started.
    folder = machines / "m1" / "web"
    os.killpg(int((folder / "pid").read_text()), signal.SIGKILL)
    for name in ("pid", "exit", "phase"):
        (folder / name).unlink(missing_ok=True)
    assert p.get_host(host.id).raw_state == "uploaded"  # type: ignore[union-attr]
    again = p.create_host(spec())
    assert again.id == host.id
    wait_state(p, host.id, HostState.RUNNING)
    assert get(f"{NET}.1") == 200
    p.destroy_host(host.id)
    p.close()


def test_a_crashed_service_is_reported_with_its_log(running_sshd: Sshd, machines: Path) -> None:
    p = make(settings(running_sshd, machines), machines)
    host = p.create_host(spec(command="echo oops >&2; exit 3"))
    wait_state(p, host.id, HostState.STOPPED)
    found = p.get_host(host.id)
    assert found is not None and "exited with status 3" in (found.reason or "")
    assert "oops" in (machines / "m1" / "web" / "log").read_text()
    # A dead host's machine is taken again, the old folder replaced (no other is free).
    one = settings(running_sshd, machines, machine(running_sshd, machines, 1))
    p2 = make(one, machines)
    again = p2.create_host(spec("web-g2-own", 2))
    assert again.address == f"{NET}.1" and again.id != host.id
    p2.destroy_host(host.id)  # the old id must not touch the new host
    assert p2.get_host(again.id) is not None
    p2.destroy_host(again.id)
    p.close()
    p2.close()


def test_failed_setup_stops_the_host(running_sshd: Sshd, machines: Path) -> None:
    p = make(settings(running_sshd, machines), machines)
    host = p.create_host(spec(setup=("false",)))
    wait_state(p, host.id, HostState.STOPPED)
    assert "setup failed" in (p.get_host(host.id).reason or "")  # type: ignore[union-attr]
    p.destroy_host(host.id)
    p.close()


def test_exec_on_host_streams_in_the_working_folder(running_sshd: Sshd, machines: Path) -> None:
    p = make(settings(running_sshd, machines), machines)
    host = p.create_host(spec(env={"SECRET_WORD": "swordfish"}))
    out = io.BytesIO()
    data = os.urandom(300_000)
    result = p.exec_on_host(
        host.id,
        'cat > dump; echo "$SECRET_WORD $(pwd)"; echo warn >&2; exit 4',
        stdin=io.BytesIO(data),
        stdout=out,
    )
    assert (result.status, result.stderr) == (4, "warn\n")
    assert out.getvalue().decode() == f"swordfish {machines / 'm1' / 'web' / 'root'}\n"
    assert (machines / "m1" / "web" / "root" / "dump").read_bytes() == data
    back = io.BytesIO()
    assert p.exec_on_host(host.id, "cat dump", stdout=back).status == 0
    assert back.getvalue() == data
    with pytest.raises(NotFound):
        p.exec_on_host(f"{NET}.1/web/00000000", "true")
    p.destroy_host(host.id)
    p.close()


def test_check_account_reports_each_machine(running_sshd: Sshd, machines: Path) -> None:
    p = make(settings(running_sshd, machines), machines)
    report = p.check_service("web", PORT)
    assert report.state == "available", report
    names = [c.name for c in report.checks]
    assert names == ["m1: login", f"m1: port {PORT}", "m2: login", f"m2: port {PORT}"]
    assert all(c.ok for c in report.checks)
    host = p.create_host(spec())
    wait_state(p, host.id, HostState.RUNNING)
    get(f"{NET}.1")
    report = p.check_service("web", PORT)
    assert [c.detail for c in report.checks if c.name == f"m1: port {PORT}"] == [
        f"{NET}.1:{PORT} serves our web"
    ]
    p.destroy_host(host.id)
    p.close()


def test_a_busy_port_moves_to_the_next_machine(running_sshd: Sshd, machines: Path) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((f"{NET}.1", PORT))
        squatter.listen()
        p = make(settings(running_sshd, machines), machines)
        report = p.check_service("web", PORT)
        (busy,) = [c for c in report.checks if c.name == f"m1: port {PORT}"]
        assert not busy.ok and "taken by another" in busy.detail
        host = p.create_host(spec())
        assert host.address == f"{NET}.2"
        p.destroy_host(host.id)
        p.close()


def test_wrong_host_key_is_refused_before_login(running_sshd: Sshd, machines: Path) -> None:
    wrong = keygen(machines / "wrong", "wrong")
    before = running_sshd.logins()
    p = make(
        settings(running_sshd, machines, machine(running_sshd, machines, 1, host_key=wrong)),
        machines,
    )
    with pytest.raises(ProviderError) as caught:
        p.create_host(spec())
    message = str(caught.value)
    offered = _fingerprint(running_sshd.host_key)
    assert offered in message and _fingerprint(wrong) in message, message
    assert "m1" in message and running_sshd.endpoint() in message
    assert "ssh-keyscan" in message  # how to update the pin
    report = p.check_account()
    assert report.state == "unknown" and offered in (report.reason or "")
    assert running_sshd.logins() == before  # no login, so no command reached the machine
    assert not (machines / "m1").exists()
    p.close()


def test_known_hosts_file_hashed_revoked_and_ca(running_sshd: Sshd, machines: Path) -> None:
    import subprocess

    known = machines / "known_hosts"
    known.write_text(running_sshd.known_hosts_line() + "\n")
    # Hashed entries (`ssh-keygen -H`) are what trips other tools; they must match here.
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert "|1|" in known.read_text()
    m1 = machine(running_sshd, machines, 1, host_key=None, known_hosts=str(known))
    p = make(settings(running_sshd, machines, m1), machines)
    assert p.check_account().state == "available"
    p.close()

    # The same key also marked @revoked: refused.
    known.write_text(running_sshd.known_hosts_line() + f"\n@revoked * {running_sshd.host_key}\n")
    p = make(settings(running_sshd, machines, m1), machines)
    report = p.check_account()
    assert report.state == "unknown" and "host key refused" in (report.reason or "")
    p.close()

    # An entry for another host only: no trust on first use.
    known.write_text(f"[127.0.0.9]:{running_sshd.port} {running_sshd.host_key}\n")
    p = make(settings(running_sshd, machines, m1), machines)
    assert "no entry for this machine" in (p.check_account().reason or "")
    p.close()


def test_a_host_certificate_authority_pin(running_sshd: Sshd, machines: Path) -> None:
    ca = f"@cert-authority {running_sshd.ca_key}"
    p = make(
        settings(running_sshd, machines, machine(running_sshd, machines, 1, host_key=ca)), machines
    )
    assert p.check_account().state == "available"
    p.close()
    known = machines / "known_hosts"
    known.write_text(f"@cert-authority [127.0.0.1]:{running_sshd.port} {running_sshd.ca_key}\n")
    m1 = machine(running_sshd, machines, 1, host_key=None, known_hosts=str(known))
    p = make(settings(running_sshd, machines, m1), machines)
    assert p.check_account().state == "available"
    p.close()
    # A CA that did not sign the host's certificate is refused.
    other_ca = keygen(machines / "other_ca", "other")
    wrong = machine(running_sshd, machines, 1, host_key=f"@cert-authority {other_ca}")
    p = make(settings(running_sshd, machines, wrong), machines)
    report = p.check_account()
    assert report.state == "unknown" and "CA " in (report.reason or ""), report.reason
    p.close()


def test_loading_an_ssh_config_imports_no_asyncssh(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import sys\n"
        "from providers.base import provider_class\n"
        "from providers.ssh import SshSettings\n"
        "provider_class('ssh'); provider_class('static')\n"
        "SshSettings.model_validate({'name': 'a', 'type': 'ssh', 'known_hosts': 'k',"
        " 'machines': [{'address': '192.0.2.1'}]})\n"
        "print('asyncssh' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert done.stdout.strip() == "False", done.stderr


def test_refused_key_is_account_blocked(running_sshd: Sshd, machines: Path) -> None:
    s = settings(running_sshd, machines, identity_file=str(running_sshd.stranger_key))
    p = make(s, machines)
    report = p.check_account()
    assert report.state == "blocked", report
    assert "login refused" in (report.reason or "")
    with pytest.raises(AccountBlocked) as caught:
        p.create_host(spec())
    assert "m1" in str(caught.value) and "m2" in str(caught.value)
    p.close()


def test_a_machine_that_does_not_answer_is_skipped(tmp_path: Path, machines: Path) -> None:
    # Its own sshd, stopped mid-test: the first machine stops answering, the second
    # (the session's sshd) takes the host.
    doomed = make_sshd(tmp_path / "doomed")
    doomed.start()
    live = make_sshd(tmp_path / "live")
    live.start()
    try:
        first = {**machine(doomed, machines, 1), "host_key": doomed.host_key}
        second = machine(live, machines, 2)
        s = settings(doomed, machines, first, second)
        # The client key of each server differs: authorize one key on both.
        (live.dir / "authorized_keys").write_text(doomed.client_key.with_suffix(".pub").read_text())
        logs: list[str] = []
        p = make(s, machines, logs)
        assert p.check_account().state == "available"
        p.close()
        # A stopped sshd leaves open sessions alive, as on a real machine; a watcher run
        # after the stop connects anew.
        doomed.stop()
        p = make(s, machines, logs)
        report = p.check_account()
        assert report.state == "available"
        (m1,) = [c for c in report.checks if c.name == "m1"]
        assert not m1.ok and m1.level == "warning" and "m1" in m1.detail
        host = p.create_host(spec())
        assert host.address == f"{NET}.2"
        assert any("m1" in line and "next machine" in line for line in logs), logs
        # With every machine silent, the error is transient and names them.
        live.stop()
        with pytest.raises(TransientError) as caught:
            p.create_host(spec("web-g2-own", 2))
        assert f"{NET}.1" in str(caught.value) and f"{NET}.2" in str(caught.value)
        p.close()
    finally:
        doomed.stop()
        live.stop()


def test_config_errors_are_plain(tmp_path: Path) -> None:
    base = {"name": "own", "type": "ssh", "machines": [{"address": "192.0.2.1"}]}
    with pytest.raises(ValidationError, match="no host key pinned"):
        SshSettings.model_validate(base)
    bad_key = {**base, "machines": [{"address": "192.0.2.1", "host_key": "nonsense"}]}
    with pytest.raises(ValidationError, match="public key line"):
        SshSettings.model_validate(bad_key)
    bad_ssh = {**base, "known_hosts": "kh", "machines": [{"address": "a", "ssh": "x@y:z"}]}
    with pytest.raises(ValidationError, match="USER@HOST"):
        SshSettings.model_validate(bad_ssh)
    twice = {**base, "known_hosts": "kh", "machines": [{"address": "a"}, {"address": "a"}]}
    with pytest.raises(ValidationError, match="listed twice"):
        SshSettings.model_validate(twice)
    ok = SshSettings.model_validate({**base, "known_hosts": "kh"})
    p = SshProvider(ok, ProviderContext(tmp_path))
    assert str(p.machines[0].endpoint) == "root@192.0.2.1:22"
    # A pin that cannot be read fails before any connection is tried.
    report = SshProvider(
        SshSettings.model_validate({**base, "known_hosts": str(tmp_path / "missing")}),
        ProviderContext(tmp_path),
    ).check_account()
    assert report.state == "unknown"
    assert "known_hosts" in (report.reason or "") and "unusable" in (report.reason or "")


def _fingerprint(line: str) -> str:
    import asyncssh

    return str(asyncssh.import_public_key(line).get_fingerprint("sha256"))
