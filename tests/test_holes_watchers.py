"""Issue 21, item 1: a watcher that cannot see must never lead, and a leader that
cannot see its own candidate hands the run over instead of destroying a healthy host.

Real ``failover watch`` processes on a real three-member etcd, as in
test_etcd_watchers.py. ``FAILOVER_PROBE_NETWORKS`` blinds a watcher without any traffic
leaving the machine: every probe (or every probe but the first host's) is refused
before it is sent. Leases are long (``LEASE``) so a loaded machine never lets one lapse
by accident; where a test needs a lease to lapse (SIGKILL), it waits for that state.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.engine import Engine
from failover.state.etcd import EtcdStore
from failover.watchers import EtcdWatchers
from failover.watchers import Identity
from tests.etcd_server import EtcdCluster
from tests.helpers import host_records
from tests.helpers import kill_active
from tests.helpers import state_dir
from tests.helpers import wait_for
from tests.test_etcd_store import round_of
from tests.test_etcd_store import watchers_on
from tests.test_etcd_watchers import Watchers
from tests.test_etcd_watchers import all_see
from tests.test_etcd_watchers import moves
from tests.test_etcd_watchers import one_live_host_behind_dns
from tests.test_etcd_watchers import seen
from tests.test_etcd_watchers import settled
from tests.test_etcd_watchers import setup
from tests.test_etcd_watchers import status

pytestmark = pytest.mark.timeout(400)

BLIND = "10.0.0.0/8"  # the hosts live on 127.77.x.y: no probe is ever sent
LEASE = "20s"


@pytest.fixture
def watchers() -> Iterator[Any]:
    made: list[Watchers] = []

    def make(config: Path) -> Watchers:
        made.append(Watchers(config))
        return made[-1]

    yield make
    for w in made:
        w.stop()


def leader(config: Path) -> str | None:
    return next((n for n, w in seen(config).items() if w["leader"]), None)


def test_a_blind_watcher_started_first_never_leads_and_the_others_move_it(
    project: Path, etcd: EtcdCluster, watchers: Any
) -> None:
    config = setup(project, etcd, lease_ttl=LEASE)
    w = watchers(config)
    w.start(1, FAILOVER_PROBE_NETWORKS=BLIND)
    # Its probes were never sent: it cannot tell, so it does not lead.
    wait_for(lambda: all_see(config, ["w1"], "unknown"), timeout=60, what="w1 cannot tell")
    wait_for(lambda: w.log(1).count(" web ") >= 5, timeout=60, what="5 rounds of w1")
    assert leader(config) is None
    assert "cannot tell" in w.log(1) and "FAILOVER_PROBE_NETWORKS" in w.log(1)
    w.start(2)
    w.start(3)
    wait_for(lambda: all_see(config, ["w2", "w3"], "up"), timeout=60, what="w2, w3 see up")
    wait_for(lambda: leader(config) in ("w2", "w3"), timeout=60, what="a seeing leader")
    old = kill_active(config)
    wait_for(lambda: settled(config), timeout=120, what="the failover")
    wait_for(lambda: all_see(config, ["w2", "w3"], "up"), timeout=60, what="up again")
    assert seen(config)["w1"]["sees"]["web"] == "unknown" and leader(config) != "w1"
    w.stop()
    done = moves(config)
    assert [e["status"] for e in done] == ["succeeded"], done
    assert " moved from " not in w.log(1)
    new = one_live_host_behind_dns(config)
    assert new["host_id"] != old["id"]
    # One host made by the failover, and that one serves: no candidate was destroyed.
    assert {h["id"] for h in host_records(config)} == {old["id"], new["host_id"]}


def test_leader_sigkilled_the_blind_watcher_does_not_take_over(
    project: Path, etcd: EtcdCluster, watchers: Any
) -> None:
    config = setup(project, etcd, lease_ttl="5s")
    w = watchers(config)
    first = w.start(2)
    wait_for(lambda: leader(config) == "w2", timeout=60, what="w2 leads")
    w.start(1, FAILOVER_PROBE_NETWORKS=BLIND)
    wait_for(lambda: all_see(config, ["w1"], "unknown"), timeout=60, what="w1 cannot tell")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    # w2's lease lapses, its lead with it; w1 goes on voting and must not take the lead.
    wait_for(lambda: not seen(config)["w2"]["alive"], timeout=60, what="w2's lease to lapse")
    rounds = w.log(1).count(" web ")
    wait_for(lambda: w.log(1).count(" web ") >= rounds + 5, timeout=60, what="5 more rounds")
    assert leader(config) is None
    old = kill_active(config)  # the provider's word would be proof enough to act on
    wait_for(lambda: w.log(1).count(" web ") >= rounds + 15, timeout=60, what="rounds after")
    assert moves(config) == [] and leader(config) is None
    # A watcher that can see comes: it leads and moves the service, once.
    w.start(3)
    wait_for(lambda: settled(config), timeout=120, what="the failover by w3")
    w.stop()
    done = moves(config)
    assert [e["status"] for e in done] == ["succeeded"], done
    new = one_live_host_behind_dns(config)
    assert {h["id"] for h in host_records(config)} == {old["id"], new["host_id"]}


def test_a_leader_blind_to_its_candidate_hands_the_run_over_and_keeps_the_host(
    project: Path, etcd: EtcdCluster, watchers: Any
) -> None:
    config = setup(project, etcd, lease_ttl=LEASE)
    active = status(config)["services"][0]["active"]
    w = watchers(config)
    # w1 sees the live host and nothing else: it leads, and cannot see any candidate.
    w.start(1, FAILOVER_PROBE_NETWORKS=f"{active['address']}/32")
    wait_for(lambda: leader(config) == "w1", timeout=60, what="w1 leads")
    w.start(2)
    w.start(3)
    wait_for(lambda: all_see(config, ["w1", "w2", "w3"], "up"), timeout=60, what="all see up")
    frozen = next(h for h in host_records(config) if h["id"] == active["host_id"])
    os.killpg(int(frozen["pid"]), signal.SIGSTOP)  # no proof: the provider says running
    try:
        wait_for(lambda: settled(config), timeout=180, what="the failover")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(frozen["pid"]), signal.SIGCONT)
    wait_for(lambda: all_see(config, ["w2", "w3"], "up"), timeout=60, what="up again")
    assert leader(config) in ("w2", "w3")
    w.stop()
    done = moves(config)
    assert [e["status"] for e in done] == ["succeeded"], done
    assert "gives up the lead" in w.log(1), w.log(1)
    new = one_live_host_behind_dns(config)
    # The candidate w1 could not see is the host that serves now: never destroyed.
    made = [h for h in host_records(config) if h["id"] != active["host_id"]]
    assert [h["id"] for h in made] == [new["host_id"]], made


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(("failover_watcher_", "failover_etcd_"))
    }


def test_watch_exports_the_lead_the_votes_and_etcd_reachability(
    project: Path, etcd: EtcdCluster, watchers: Any
) -> None:
    config = setup(project, etcd, lease_ttl=LEASE)
    ports = {1: free_port(), 2: free_port()}
    w = watchers(config)
    w.start(1, "--metrics-port", str(ports[1]))
    wait_for(lambda: leader(config) == "w1", timeout=60, what="w1 leads")
    w.start(2, "--metrics-port", str(ports[2]), FAILOVER_PROBE_NETWORKS=BLIND)
    wait_for(lambda: all_see(config, ["w2"], "unknown"), timeout=60, what="w2 cannot tell")
    up = 'failover_watcher_votes{service="web",view="up"}'
    unknown = 'failover_watcher_votes{service="web",view="unknown"}'

    def exported(n: int, leads: float) -> bool:
        found = scrape(ports[n])
        return (
            found.get("failover_watcher_leader") == leads
            and found.get("failover_etcd_reachable") == 1.0
            and found.get(up) == 1.0
            and found.get(unknown) == 1.0
        )

    wait_for(lambda: exported(1, 1.0) and exported(2, 0.0), timeout=60, what="the metrics")
    # Two members of three down: etcd has no quorum and cannot answer.
    etcd.stop("m1")
    etcd.stop("m2")
    wait_for(
        lambda: scrape(ports[1]).get("failover_etcd_reachable") == 0.0,
        timeout=120,
        what="etcd unreachable in the metrics",
    )


def as_watcher(engine: Engine, name: str) -> None:
    """An in-process engine as watcher ``name`` in its own location."""
    store = engine.store
    assert isinstance(store, EtcdStore)
    engine.watchers = EtcdWatchers(engine.config, store, Identity(name, f"loc-{name}"))


def test_the_providers_word_acts_in_the_same_round_though_a_vote_changed(
    project: Path, etcd: EtcdCluster
) -> None:
    config = setup(project, etcd, lease_ttl="120s")
    first, second = Engine(cfg.load(config)), Engine(cfg.load(config))
    try:
        as_watcher(first, "w1")
        as_watcher(second, "w2")
        assert [v.exit_code for v in (*first.check(["web"]), *second.check(["web"]))] == [0, 0]
        kill_active(config)
        (state_dir(config) / "local" / "alpha" / "SUSPENDED").touch()  # alpha refuses us
        decide = first.watchers.decide

        def another_votes_meanwhile(*args: Any, **kw: Any) -> tuple[bool, str]:
            # The window between w1 reading the votes and committing its decision is a
            # few milliseconds; w2's round is put in it so that w2's vote changes there.
            second.check(["web"])
            return decide(*args, **kw)

        first.watchers.decide = another_votes_meanwhile  # type: ignore[method-assign]
        (verdict,) = first.check(["web"])
    finally:
        first.close()
        second.close()
    assert "moved from alpha" in verdict.message, verdict.message
    assert [e["status"] for e in moves(config)] == ["succeeded"]


def test_a_failover_that_failed_twice_the_same_way_is_held_until_the_view_changes(
    etcd_cluster: EtcdCluster,
) -> None:
    w1, w2 = watchers_on(etcd_cluster, ("w1", "loc1"), ("w2", "loc2"))
    for w in (w1, w2, w1):
        round_of(w, ok=False)
    same = ["beta: restore"]
    w1.failed("web", same)
    assert w1.held("web") is None  # once is not a pattern
    w1.failed("web", ["beta: verify"])  # another way: counted afresh
    w1.failed("web", ["beta: verify"])
    assert "failed twice the same way (beta: verify)" in (w1.held("web") or "")
    round_of(w2, ok=True)  # the other watcher's view changed: try again
    w1.snap = None
    assert w1.held("web") is None
    w1.failed("web", None)  # a failover that succeeded clears it
    assert w1.held("web") is None


def test_a_failover_left_open_is_abandoned_once_a_quorum_sees_the_old_host_again(
    project: Path, etcd: EtcdCluster
) -> None:
    """Fault lab seed 637: a failover decided under a real outage and left open before
    its cutover (there a silent store, here the leader stopped after provision) is not
    finished once a quorum sees the old host up again: it is rolled back, the candidate
    destroyed, and the service stays where it is. In-process engines, so the test can
    stop the run at exactly that step; the etcd, the hosts and DNS are real."""
    from tests.helpers import dns_values
    from tests.helpers import live_hosts

    config = setup(project, etcd, lease_ttl="120s")
    old = status(config)["services"][0]["active"]
    stop = threading.Event()

    def on_step(step: str, state: str, detail: str) -> None:
        if (step, state) == ("provision", "succeeded"):
            stop.set()  # the run stops before its next step, left open in the journal

    engines = [Engine(cfg.load(config), on_step=on_step, should_stop=stop.is_set) for _ in "123"]
    frozen = next(h for h in host_records(config) if h["id"] == old["host_id"])
    try:
        for n, engine in enumerate(engines, 1):
            as_watcher(engine, f"w{n}")
        for engine in engines:
            engine.check(["web"])
        os.killpg(int(frozen["pid"]), signal.SIGSTOP)  # no proof: the provider says running

        def left_open() -> bool:
            for engine in engines:
                engine.check(["web"])
            return stop.is_set()

        wait_for(left_open, timeout=120, what="a failover stopped after its provision")
        os.killpg(int(frozen["pid"]), signal.SIGCONT)
        stop.clear()
        assert [e["status"] for e in moves(config)] == ["in_progress"]
        lead = next(e for e in engines if e.watchers.leads(e.watchers.read()))
        for engine in engines:
            if engine is not lead:
                engine.check(["web"])  # they see the old host up again, and vote so
        (verdict,) = lead.check(["web"])  # it settles the open run first
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(frozen["pid"]), signal.SIGCONT)
        for engine in engines:
            engine.close()
    assert "abandoned: 2 of 3 locations see the old host up again" in verdict.message, verdict
    (failover,) = moves(config)
    assert failover["status"] == "failed" and "abandoned" in failover["reason"], failover
    active = status(config)["services"][0]["active"]
    assert active["host_id"] == old["host_id"]
    assert dns_values(config) == [old["address"]]
    assert [h["id"] for h in live_hosts(config)] == [old["host_id"]]  # the candidate is gone
