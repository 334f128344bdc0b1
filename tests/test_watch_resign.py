"""A leader whose rounds keep failing gives the lead up (found by the fault lab, seed
1021: the lease beat renews the lease whatever the rounds do, so a watcher failing
every round kept the lead and nothing moved off a killed host for minutes).

The watchers are real ``EtcdWatchers`` on the real etcd. The failing round is an engine
stand-in whose ``check`` raises: a round can fail for any reason (a bug, a full disk, a
clock that makes ``time.sleep`` raise), and no single real fault reaches every such
reason, so the test raises the way they all do."""

from __future__ import annotations

from typing import Any

from failover.watch import Watcher
from tests.etcd_server import EtcdCluster
from tests.test_etcd_store import round_of
from tests.test_etcd_store import watchers_on


class FailingEngine:
    def __init__(self, watchers: Any) -> None:
        self.watchers = watchers

    def check(self, names: list[str]) -> list[Any]:
        raise OSError("the round failed for a reason of its own")


def test_a_leader_whose_round_fails_gives_the_lead_up(etcd: EtcdCluster) -> None:
    w1, w2 = watchers_on(etcd, ("w1", "loc1"), ("w2", "loc2"))
    try:
        round_of(w1, True)
        round_of(w2, True)
        assert w1.leads(w1.read()) and not w2.leads(w2.read())
        said: list[str] = []
        watcher = Watcher(w1.config, said.append)
        (result,) = watcher._round(FailingEngine(w1), ["web"])  # type: ignore[arg-type]
        assert result.state == "unknown" and "round failed" in result.message
        assert w1.read().leader is None
        round_of(w2, True)  # the next watcher's good round takes it
        assert w2.leads(w2.read())
    finally:
        w1.close()
        w2.close()


def test_resign_leaves_another_watchers_lead_alone(etcd: EtcdCluster) -> None:
    w1, w2 = watchers_on(etcd, ("w1", "loc1"), ("w2", "loc2"))
    try:
        round_of(w1, True)
        round_of(w2, True)
        w2.resign()
        assert w1.leads(w2.read())
    finally:
        w1.close()
        w2.close()
