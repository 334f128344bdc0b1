"""The local provider through its interface: real process groups on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from providers.base import AccountBlocked
from providers.base import HostSpec
from providers.base import HostState
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import RunSpec
from providers.local import LocalProvider
from providers.local import LocalSettings
from providers.util import pid_alive

ROOT = Path(__file__).resolve().parent.parent


def provider(tmp_path: Path, name: str = "alpha") -> LocalProvider:
    return LocalProvider(LocalSettings(name=name, type="local"), ProviderContext(tmp_path))


def spec(
    name: str = "web-g1-alpha",
    command: str = "{python} -m http.server {port} --bind {address}",
    restore: tuple[str, ...] = (),
) -> HostSpec:
    return HostSpec(
        name=name, service="web", generation=1, port=18080, run=RunSpec(command, (), restore)
    )


def wait_state(p: LocalProvider, host_id: str, state: HostState) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        host = p.get_host(host_id)
        if host and host.state == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"{host_id} never reached {state}")


def test_lifecycle(tmp_path: Path) -> None:
    p = provider(tmp_path)
    host = p.create_host(spec())
    try:
        assert host.address and host.address.startswith("127.77.")
        assert p.create_host(spec()).id == host.id  # idempotent on the name
        wait_state(p, host.id, HostState.RUNNING)
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://{host.address}:18080/", timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert [h.id for h in p.list_hosts("web")] == [host.id]
        assert p.list_hosts("other") == []
        other = p.create_host(spec("web-g2-alpha"))
        assert other.address != host.address
        p.stop_host(other.id)
        assert p.get_host(other.id).state == HostState.STOPPED  # type: ignore[union-attr]
        p.destroy_host(other.id)
    finally:
        p.destroy_host(host.id)
    gone = p.get_host(host.id)
    assert gone is not None and gone.state == HostState.TERMINATED
    assert p.list_hosts("web") == []
    p.destroy_host(host.id)  # destroying twice is fine


def test_failed_restore_is_reported(tmp_path: Path) -> None:
    p = provider(tmp_path)
    host = p.create_host(spec(restore=("echo restoring; exit 4",)))
    wait_state(p, host.id, HostState.STOPPED)
    got = p.get_host(host.id)
    assert got is not None and got.reason and "restore failed with exit status 4" in got.reason
    p.destroy_host(host.id)


def test_list_hosts_rebuilds_from_files(tmp_path: Path) -> None:
    first = provider(tmp_path)
    host = first.create_host(spec())
    try:
        again = provider(tmp_path)  # a fresh process knowing nothing but the folder
        assert [h.id for h in again.list_hosts("web")] == [host.id]
    finally:
        first.destroy_host(host.id)


def test_suspended_refuses_every_call(tmp_path: Path) -> None:
    p = provider(tmp_path)
    host = p.create_host(spec())
    (tmp_path / "local" / "alpha" / "SUSPENDED").write_text("")
    for call in (
        lambda: p.create_host(spec("x")),
        lambda: p.get_host(host.id),
        lambda: p.list_hosts("web"),
        lambda: p.stop_host(host.id),
        lambda: p.destroy_host(host.id),
    ):
        with pytest.raises(AccountBlocked, match="suspended"):
            call()
    assert p.check_account().state == "blocked"
    (tmp_path / "local" / "alpha" / "SUSPENDED").unlink()
    assert p.check_account().state == "available"
    p.destroy_host(host.id)


def _create_in_a_process_killed_after_start(tmp_path: Path, point: str) -> None:
    """``create_host`` in a child process that dies at failpoint ``point`` (as an OOM
    kill would): only the files it left tell what it did."""
    code = (
        "import sys; from pathlib import Path; from tests.test_local_provider import "
        "provider, spec; provider(Path(sys.argv[1])).create_host(spec())"
    )
    env = {**os.environ, "FAILOVER_FAILPOINT": point, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, timeout=60)
    assert proc.returncode == 137


def test_a_host_whose_creator_died_after_starting_it_is_listed_and_destroyed(
    tmp_path: Path,
) -> None:
    _create_in_a_process_killed_after_start(tmp_path, "local:started")
    p = provider(tmp_path)
    (host,) = p.list_hosts("web")  # found, though its creator never recorded its pid
    assert host.extra["pid"] and pid_alive(host.extra["pid"])
    assert p.get_host(host.id) is not None
    p.destroy_host(host.id)
    assert not pid_alive(host.extra["pid"])
    assert p.list_hosts("web") == []


def test_a_create_resumed_after_its_creator_died_adopts_the_host_it_started(
    tmp_path: Path,
) -> None:
    _create_in_a_process_killed_after_start(tmp_path, "local:started")
    p = provider(tmp_path)
    (half,) = p.list_hosts("web")
    host = p.create_host(spec())  # what a resumed run asks for: the same name
    try:
        assert host.id == half.id and host.extra["pid"] == half.extra["pid"]
        assert [h.id for h in p.list_hosts("web")] == [host.id]
    finally:
        p.destroy_host(host.id)


def test_a_record_left_before_its_process_started_is_replaced(tmp_path: Path) -> None:
    p = provider(tmp_path)
    address = p._allocate_address("h-0000dead", 18080)
    p._record_intent(spec(), "h-0000dead", address)  # the creator died right here
    (stale,) = p.list_hosts("web")
    assert stale.state == HostState.STOPPED and "cut short" in (stale.reason or "")
    host = p.create_host(spec())
    try:
        assert host.id != "h-0000dead"
        assert [h.id for h in p.list_hosts("web")] == [host.id]
    finally:
        p.destroy_host(host.id)


def test_a_host_that_cannot_start_leaves_no_folder_and_no_address(tmp_path: Path) -> None:
    # `validate` refuses this name; a provider called directly must still clean up.
    p = provider(tmp_path)
    bad = HostSpec(
        name="web-g1-alpha",
        service="web",
        generation=1,
        port=18080,
        run=RunSpec("true", (), (), {"A=B": "x"}),
    )
    with pytest.raises(ProviderError, match="cannot start host"):
        p.create_host(bad)
    assert list((tmp_path / "local" / "alpha" / "hosts").iterdir()) == []
    assert (tmp_path / "local" / "addresses.json").read_text().strip() == "{}"
