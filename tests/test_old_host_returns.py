"""The old host comes back: the provider restores the account after a failover.

alpha "closes the account": its API refuses us (``SUSPENDED``) and its host stops
answering (frozen with SIGSTOP: the process is still there, as a VM behind a cut-off
network is). The service moves to beta; the fence cannot reach alpha. Then alpha
restores the account and the old host wakes up, still serving its old data on its old
address. What must hold:

- it gets no traffic: DNS stays on the new host, and a stale watcher's conditional DNS
  write (``expect`` the old address) is refused;
- a stale writer cannot move the service back: a cutover with the old generation, a
  write with a lease token that was taken over, and a failover bound to the generation
  it observed are all refused, and nothing changes;
- the next ``check`` stops or destroys it (``policy.fence: stop | destroy``) now that its
  provider answers again, and the service stays healthy on beta.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from failover.config import load
from failover.engine import Engine
from failover.state import LeaseLost
from failover.state import SqliteStore as Store
from providers.base import ConflictError
from providers.base import ProviderContext
from providers.dns.local import LocalDns
from providers.dns.local import LocalDnsSettings
from tests.helpers import base_config
from tests.helpers import dns_values
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import host_records
from tests.helpers import live_hosts
from tests.helpers import pid_alive
from tests.helpers import state_dir
from tests.helpers import wait_for
from tests.helpers import write_config

pytestmark = pytest.mark.timeout(120)


def answers(address: str, port: int = 8080) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def record(config: Path, host_id: str) -> dict[str, Any]:
    return next(h for h in host_records(config) if h["id"] == host_id)


def cut_off_then_fail_over(
    project: Path, fence: str
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Deploy on alpha, cut alpha off (API refuses, host frozen), fail over to beta."""
    config = write_config(
        project, base_config(health={"fall": 3}, policy={"fence": fence, "ready_timeout": "5s"})
    )
    failover("deploy", config=config, check=True)
    old = failover_json("status", config=config)["services"][0]["active"]
    pid = int(record(config, old["host_id"])["pid"])
    (state_dir(config) / "local" / "alpha" / "SUSPENDED").write_text("account closed\n")
    os.killpg(pid, signal.SIGSTOP)
    check = failover("check", config=config)
    # The provider refusing us is proof enough: the move happens in this very round.
    assert check.returncode == 1, check.stdout + check.stderr
    assert "moved from alpha to beta" in check.stdout
    new = failover_json("status", config=config)["services"][0]["active"]
    assert new["provider"] == "beta"
    # The fence could not reach alpha: the old host is still there, recorded for later.
    event = failover_json("history", config=config)["events"][0]
    fence_step = next(s for s in event["steps"] if s["name"] == "fence")
    assert fence_step["status"] == "deferred"  # not done: never "succeeded" (issue 21)
    assert "refuses us" in fence_step["detail"] and f"will be {fence}ed" in fence_step["detail"]
    assert pid_alive(pid)
    return config, old, new


@pytest.mark.parametrize("fence", ["destroy", "stop"])
def test_old_host_returns_gets_no_traffic_and_is_fenced_by_the_next_check(
    project: Path, fence: str
) -> None:
    config, old, new = cut_off_then_fail_over(project, fence)
    old_pid = int(record(config, old["host_id"])["pid"])

    # While alpha still refuses us, checks cannot touch the old host: WARNING, saying
    # it is not fenced yet (issue 21), while the service is healthy on beta.
    check = failover("check", config=config)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "healthy on beta" in check.stdout and "NOT fenced yet" in check.stdout
    assert pid_alive(old_pid) and not record(config, old["host_id"]).get("destroyed")

    # alpha restores the account; the old host wakes up and serves its stale copy.
    (state_dir(config) / "local" / "alpha" / "SUSPENDED").unlink()
    os.killpg(old_pid, signal.SIGCONT)
    wait_for(lambda: answers(old["address"]), what="the old host to answer again")

    # It gets no traffic: the record still names the new host only.
    assert dns_values(config) == [new["address"]]
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["host_id"] == new["host_id"] and status["generation"] == 2
    assert status["dns"]["values"] == [new["address"]]

    # The next check fences it now that alpha answers: stopped or destroyed, for good.
    check = failover("check", config=config)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "healthy on beta" in check.stdout
    wait_for(lambda: not pid_alive(old_pid), what="the old host's process to end")
    meta = record(config, old["host_id"])
    if fence == "destroy":
        assert meta.get("destroyed") is True
    else:
        assert meta.get("stopped") is True and not meta.get("destroyed")
    assert not answers(old["address"])
    assert [h["id"] for h in live_hosts(config)] == [new["host_id"]]
    assert dns_values(config) == [new["address"]]
    # Fenced once: a further check has nothing left to do.
    assert failover("check", config=config).returncode == 0
    store = Store(state_dir(config))
    try:
        roles = {h["host_id"]: h["role"] for h in store.hosts("web")}
    finally:
        store.close()
    assert roles[old["host_id"]] == ("destroyed" if fence == "destroy" else "stopped")
    assert roles[new["host_id"]] == "active"


def test_stale_writers_are_refused(project: Path) -> None:
    config, old, new = cut_off_then_fail_over(project, "destroy")
    (state_dir(config) / "local" / "alpha" / "SUSPENDED").unlink()
    os.killpg(int(record(config, old["host_id"])["pid"]), signal.SIGCONT)
    stale_active = {k: old[k] for k in ("provider", "host_id", "address")}

    store = Store(state_dir(config))
    try:
        # A watcher paused since generation 1 tries to point the service back at alpha.
        with pytest.raises(LeaseLost, match="generation 2"):
            store.cutover("web", 1, stale_active, None)
        assert store.service("web").generation == 2
        assert store.service("web").active["host_id"] == new["host_id"]

        # A writer whose lease expired and was taken over: every write is refused.
        stale = store.acquire("service:web", 0.05)
        assert not isinstance(stale, dict)
        time.sleep(0.1)
        other = Store(state_dir(config))
        try:
            newer = other.acquire("service:web", 30)
            assert not isinstance(newer, dict) and newer.token > stale.token
            with pytest.raises(LeaseLost, match="taken over"):
                store.cutover("web", 2, stale_active, stale)
            with pytest.raises(LeaseLost):
                store.renew(stale)
            with pytest.raises(LeaseLost):
                store.start_event("web", "failover", "stale", None, {}, stale)
            other.release(newer)
        finally:
            other.close()
        assert store.service("web").generation == 2
        assert store.service("web").active["host_id"] == new["host_id"]
    finally:
        store.close()

    # The stale watcher's DNS write is conditional on the old address: refused.
    conf = load(config)
    dns = LocalDns(
        LocalDnsSettings(type="local", zone="example.test"),
        ProviderContext(state_dir=state_dir(config)),
    )
    with pytest.raises(ConflictError, match="someone else changed the record"):
        dns.set_record("www.example.test", "A", [old["address"]], 5, expect=[old["address"]])
    assert dns_values(config) == [new["address"]]

    # A failover bound to what the stale watcher saw (generation 1) does nothing.
    engine = Engine(conf)
    try:
        outcome = engine.run("web", "failover", reason="stale", observed_generation=1)
    finally:
        engine.close()
    assert outcome.status == "noop" and "already moved" in outcome.message
    status = failover_json("status", config=config)["services"][0]
    assert status["generation"] == 2 and status["active"]["host_id"] == new["host_id"]
    assert [e["kind"] for e in failover_json("history", config=config)["events"]] == [
        "failover",
        "deploy",
    ]
