"""Prometheus metrics of several watchers (``state.backend: etcd``, issue 21): whether
this watcher leads, how many locations see each service up, down or cannot tell, and
whether etcd answered. With one watcher (SQLite) these series are not exported."""

from __future__ import annotations

from typing import TYPE_CHECKING

from failover.state import StateError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from failover.watchers import EtcdWatchers
    from failover.watchers import Solo

VIEWS = ("up", "failing", "down", "unknown")


class WatcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Gauge

        self.leader = Gauge(
            "failover_watcher_leader",
            "1 while this watcher holds the lead (it alone acts)",
            registry=registry,
        )
        self.votes = Gauge(
            "failover_watcher_votes",
            "live watcher locations whose vote on the service is this view "
            "(failing: down for fewer than fall rounds)",
            ["service", "view"],
            registry=registry,
        )
        self.reachable = Gauge(
            "failover_etcd_reachable",
            "1 if etcd answered this watcher's last read",
            registry=registry,
        )

    def update(self, watchers: EtcdWatchers | Solo) -> None:
        from failover.watchers import EtcdWatchers

        if not isinstance(watchers, EtcdWatchers):
            return
        try:
            snap = watchers.read()
        except StateError:
            self.reachable.set(0)
            return
        self.reachable.set(1)
        self.leader.set(1 if watchers.leads(snap) else 0)
        for service in watchers.config.services:
            counts = watchers.counts(snap, service)
            for view in VIEWS:
                self.votes.labels(service, view).set(counts.get(view, 0))
