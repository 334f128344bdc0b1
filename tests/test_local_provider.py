"""The local provider through its interface: real process groups on loopback."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from providers.base import AccountBlocked, HostSpec, HostState, ProviderContext, RunSpec
from providers.local import LocalProvider, LocalSettings


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
