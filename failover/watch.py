"""``failover watch``: a probe round per service every ``interval``, acting like ``check``.

SIGTERM and SIGINT end it cleanly: the round in flight finishes its current step (which
is journaled), the run is left for the next command to resume, and the process exits 0.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from failover.certs_renew import certificate_status
from failover.config import Config
from failover.data import plane as data_plane
from failover.data.engines.measure import rpo
from failover.engine import UNKNOWN
from failover.engine import Engine
from failover.engine import ServiceCheck
from failover.publish import serve_pages
from failover.redact import redact
from failover.state import ServiceRow
from failover.state import StateError


class Metrics:
    """Prometheus metrics on their own registry (nothing from the process's globals)."""

    def __init__(self, port: int, address: str) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client import Counter
        from prometheus_client import Gauge
        from prometheus_client import start_http_server

        self.registry = CollectorRegistry()
        r = self.registry
        self.probe_latency = Gauge(
            "failover_probe_latency_seconds", "last probe latency", ["service", "kind"], registry=r
        )
        self.probe_ok = Gauge(
            "failover_probe_success", "1 if the last probe passed", ["service", "kind"], registry=r
        )
        self.state = Gauge(
            "failover_service_state",
            "1 for the service's current state",
            ["service", "state"],
            registry=r,
        )
        self.moves = Counter(
            "failover_moves_total",
            "failovers and moves done by this watcher",
            ["service", "result"],
            registry=r,
        )
        self.step_seconds = Gauge(
            "failover_step_duration_seconds",
            "duration of each step of the last run, by the run's kind (a drill's teardown "
            "is not a move step)",
            ["service", "kind", "step"],
            registry=r,
        )
        self._placement_metrics(r)
        self._data_metrics(r)
        self._where: dict[str, tuple[str, str]] = {}
        self._states: dict[str, str] = {}
        self.rounds = Counter(
            "failover_rounds_total", "probe rounds", ["service", "exit_code"], registry=r
        )
        self.round_seconds = Gauge(
            "failover_round_duration_seconds",
            "how long the last round took (probes, look-ups, verdicts, moves): its margin "
            "is the shortest health.interval minus this",
            registry=r,
        )
        self._journal_seen: tuple[Any, ...] | None = None
        self._placed: set[str] = set()
        self._children: dict[tuple[Any, ...], Any] = {}
        self.server, self.thread = start_http_server(port, addr=address, registry=r)
        # `/` and `/status.json` beside `/metrics`: the last status page the engine made.
        self.pages: Callable[[], tuple[bytes, bytes] | None] = lambda: None
        serve_pages(self.server, lambda: self.pages())

    def _data_metrics(self, r: Any) -> None:
        """The age and size of each service's newest backup, its certificate's expiry and
        its failing stores."""
        from prometheus_client import Gauge

        self.backup_age = Gauge(
            "failover_backup_age_seconds",
            "age of the service's newest complete backup (the recovery point if it moved now)",
            ["service"],
            registry=r,
        )
        self.backup_bytes = Gauge(
            "failover_backup_bytes", "size of the newest complete backup", ["service"], registry=r
        )
        self.certificate_expiry = Gauge(
            "failover_certificate_expiry_timestamp_seconds",
            "when the service's stored certificate expires (section 13)",
            ["service"],
            registry=r,
        )
        self.store_failures = Gauge(
            "failover_store_failures",
            "rounds in a row a backup store failed (0: it answers)",
            ["service", "store"],
            registry=r,
        )
        self.store_rpo = Gauge(
            "failover_store_recovery_point_seconds",
            "engine pgbackrest: now minus the arrival of the store's newest WAL segment",
            ["service", "store"],
            registry=r,
        )

    def _placement_metrics(self, r: Any) -> None:
        """Where each service lives, its generation, the providers' states, the last
        good round and the notifications (issue 15)."""
        from prometheus_client import Counter
        from prometheus_client import Gauge

        self.active = Gauge(
            "failover_active_provider_info",
            "1 for where the service lives now",
            ["service", "provider", "address"],
            registry=r,
        )
        self.generation = Gauge(
            "failover_generation",
            "the service's generation (fencing token)",
            ["service"],
            registry=r,
        )
        self.provider_state = Gauge(
            "failover_provider_state",
            "1 for each provider's current account state (available, blocked, unknown)",
            ["provider", "state"],
            registry=r,
        )
        self.last_good = Gauge(
            "failover_last_good_round_timestamp_seconds",
            "when the service last had a good (OK) round",
            ["service"],
            registry=r,
        )
        self.dns_repairs = Counter(
            "failover_dns_repairs_total",
            "DNS records set back to the active host (drift repairs), by DNS provider",
            ["provider"],
            registry=r,
        )
        from failover.watcher_metrics import WatcherMetrics

        self.watchers = WatcherMetrics(r)
        self.notifications = Counter(
            "failover_notifications_total",
            "notification deliveries by target, event and result (sent, failed, gave_up)",
            ["target", "event", "result"],
            registry=r,
        )

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: a round of 1,000 services sets
        seven series each, and ``labels`` costs more than the value it sets."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, result: ServiceCheck, event: dict[str, Any] | None) -> None:
        name = result.service
        for probe in result.probes:
            if not probe.ran:
                continue  # the round had no time to start it: it says nothing (issue 16)
            if probe.latency_s is not None:
                self._child(self.probe_latency, name, probe.kind).set(probe.latency_s)
            self._child(self.probe_ok, name, probe.kind).set(1 if probe.ok else 0)
        for state in ("up", "down", "unknown"):
            self._child(self.state, name, state).set(1 if result.state == state else 0)
        self._child(self.rounds, name, str(result.exit_code)).inc()
        if result.action == "failover":
            self.moves.labels(result.service, "succeeded").inc()
        elif result.action == "failover_failed":
            self.moves.labels(result.service, "failed").inc()
        if event:
            for step in event["steps"]:
                if step["duration_s"] is not None:
                    labels = (result.service, event["kind"], step["name"])
                    self.step_seconds.labels(*labels).set(step["duration_s"])
        if int(result.exit_code) == 0:
            self._child(self.last_good, name).set(time.time())

    def place(self, service: str, row: ServiceRow) -> None:
        """Where ``service`` lives now and its generation."""
        self._placed.add(service)
        self.generation.labels(service).set(row.generation)
        where = (
            (str(row.active["provider"]), str(row.active.get("address"))) if row.active else None
        )
        old = self._where.pop(service, None)
        if old is not None and old != where:
            self.active.remove(service, *old)  # one info series per service, not a history
        if where is not None:
            self.active.labels(service, *where).set(1)
            self._where[service] = where

    def data(self, service: str, doc: dict[str, Any] | None) -> None:
        """The service's last backup and its stores, from its data state."""
        if not doc:
            return
        last = doc.get("last_backup")
        if last:
            self.backup_age.labels(service).set(max(0.0, time.time() - float(last["taken"])))
            if last.get("bytes") is not None:
                self.backup_bytes.labels(service).set(last["bytes"])
        for store, entry in (doc.get("stores") or {}).items():
            self.store_failures.labels(service, store).set(int(entry.get("failures", 0)))
        for store, age in rpo(doc).items():
            self.store_rpo.labels(service, store).set(age)

    def certificate(self, service: str, doc: dict[str, Any] | None) -> None:
        if doc is not None:
            self.certificate_expiry.labels(service).set(float(doc["not_after"]))

    def publish(self, engine: Engine, results: list[ServiceCheck], took: float) -> None:
        """Everything a round changed, read from the state in a constant number of
        queries plus one per service that moved or keeps backups, not three per service
        (a round of 1,000 services paid 3,000 reads for its metrics: issue 28)."""
        self.round_seconds.set(took)
        newest = engine.store.events(None, limit=1)
        journal = (newest[0]["id"], newest[0]["status"]) if newest else None
        fresh_journal, self._journal_seen = journal != self._journal_seen, journal
        # Where a service lives changes only with a run, which the journal shows.
        moved = [
            r.service
            for r in results
            if fresh_journal or r.action != "none" or r.service not in self._placed
        ]
        rows = engine.store.services(moved) if moved else {}
        for result in results:
            event = None
            if fresh_journal or result.action != "none":
                last = engine.store.events(result.service, limit=1)
                event = last[0] if last else None
            self.observe(result, event)
            if result.service in rows:
                self.place(result.service, rows[result.service])
            if engine.config.services[result.service].data is not None:
                self.data(result.service, engine.store.data_state(result.service))
            if engine.config.services[result.service].tls is not None:
                self.certificate(result.service, certificate_status(engine, result.service))
        self.providers(engine.store.provider_states())

    def providers(self, states: dict[str, dict[str, Any]]) -> None:
        for name, info in states.items():
            old = self._states.get(name)
            if old is not None and old != info["state"]:
                self.provider_state.labels(name, old).set(0)
            self.provider_state.labels(name, info["state"]).set(1)
            self._states[name] = info["state"]

    def repaired(self, counts: dict[str, int]) -> None:
        for provider, n in counts.items():
            self.dns_repairs.labels(provider).inc(n)

    def delivered(self, event: str, target: str, result: str) -> None:
        self.notifications.labels(target, event, result).inc()

    def close(self) -> None:
        self.server.shutdown()


class Watcher:
    def __init__(
        self,
        config: Config,
        say: Callable[[str], None],
        *,
        metrics_port: int | None = None,
        metrics_address: str = "127.0.0.1",
    ) -> None:
        self.config = config
        self.say = say
        self.stopping = threading.Event()
        self.metrics = Metrics(metrics_port, metrics_address) if metrics_port else None

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        self.say(f"watch: {signal.Signals(signum).name} received; finishing the step in flight")
        self.stopping.set()

    def _round(self, engine: Engine, names: list[str]) -> list[ServiceCheck]:
        """One round; a round that fails for any reason is reported UNKNOWN and the
        watcher goes on: a watcher that dies on a bad moment watches nothing."""
        try:
            return engine.check(names)
        except Exception as exc:  # the next round may well succeed
            engine.watchers.resign()  # but a watcher whose rounds fail must not lead
            message = redact(f"this round failed: {type(exc).__name__}: {exc}")
            return [ServiceCheck(n, "unknown", UNKNOWN, "none", message) for n in names]

    def run(self, rounds: int | None = None) -> int:
        previous = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT)}
        engine = Engine(self.config, should_stop=self.stopping.is_set)
        data_plane.background(engine)  # a long backup must not hold up the probes
        if self.metrics:
            engine.notifier.listeners.append(self.metrics.delivered)
            engine.publisher.serving = True
            self.metrics.pages = lambda: engine.publisher.latest
            engine.publisher.request()
        due = {name: 0.0 for name in self.config.services}
        done = 0
        try:
            while not self.stopping.is_set() and (rounds is None or done < rounds):
                now = time.monotonic()
                names = [n for n, t in due.items() if t <= now]
                if names:
                    results = self._round(engine, names)
                    took = time.monotonic() - now
                    for result in results:
                        self.say(
                            f"{time.strftime('%H:%M:%S')} {result.service} "
                            f"{result.state} [{result.exit_code}] {result.message}"
                        )
                    if self.metrics:
                        # A state store out of reach (etcd) already made the round
                        # UNKNOWN; the metrics must not end the watcher over it.
                        with contextlib.suppress(StateError):
                            self.metrics.publish(engine, results, took)
                        self.metrics.repaired(engine.fanout().take_repairs())
                        self.metrics.watchers.update(engine.watchers)
                    for n in names:
                        due[n] = now + self.config.services[n].health.interval
                    done += 1
                    if rounds is not None and done >= rounds:
                        break
                wait = max(0.0, min(due.values()) - time.monotonic())
                self.stopping.wait(wait)
        finally:
            engine.close()
            if self.metrics:
                self.metrics.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0
