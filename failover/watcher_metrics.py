"""Prometheus metrics of several watchers (``state.backend: etcd``, issue 21): whether
this watcher leads, how many locations see each service up, down or cannot tell, and
whether etcd answered. With one watcher (SQLite) these series are not exported."""

from __future__ import annotations

from typing import TYPE_CHECKING

from failover.state import StateError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client import Gauge

    from failover.watchers import EtcdWatchers
    from failover.watchers import Solo

VIEWS = ("up", "failing", "down", "unknown")


class WatcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # Registered at the first etcd round: an unlabelled gauge exports 0 from the
        # start, and "leader 0, etcd unreachable" on a lone SQLite watcher would page
        # someone for a store it does not use.
        self.registry = registry
        self.gauges: tuple[Gauge, Gauge, Gauge] | None = None

    def _gauges(self) -> tuple[Gauge, Gauge, Gauge]:
        from prometheus_client import Gauge

        if self.gauges is None:
            self.gauges = (
                Gauge(
                    "failover_watcher_leader",
                    "1 while this watcher holds the lead (it alone acts)",
                    registry=self.registry,
                ),
                Gauge(
                    "failover_watcher_votes",
                    "live watcher locations whose vote on the service is this view "
                    "(failing: down for fewer than fall rounds)",
                    ["service", "view"],
                    registry=self.registry,
                ),
                Gauge(
                    "failover_etcd_reachable",
                    "1 if etcd answered this watcher's last read",
                    registry=self.registry,
                ),
            )
        return self.gauges

    def update(self, watchers: EtcdWatchers | Solo) -> None:
        from failover.watchers import EtcdWatchers

        if not isinstance(watchers, EtcdWatchers):
            return
        leader, votes, reachable = self._gauges()
        try:
            snap = watchers.read()
        except StateError:
            reachable.set(0)
            return
        reachable.set(1)
        leader.set(1 if watchers.leads(snap) else 0)
        for service in watchers.config.services:
            counts = watchers.counts(snap, service)
            for view in VIEWS:
                votes.labels(service, view).set(counts.get(view, 0))
