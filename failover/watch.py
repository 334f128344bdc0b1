"""``failover watch``: a probe round per service every ``interval``, acting like ``check``.

SIGTERM and SIGINT end it cleanly: the round in flight finishes its current step (which
is journaled), the run is left for the next command to resume, and the process exits 0.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from failover.config import Config
from failover.engine import UNKNOWN, Engine, ServiceCheck
from failover.redact import redact


class Metrics:
    """Prometheus metrics on their own registry (nothing from the process's globals)."""

    def __init__(self, port: int, address: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

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
            "duration of each step of the last run",
            ["service", "step"],
            registry=r,
        )
        self.rounds = Counter(
            "failover_rounds_total", "probe rounds", ["service", "exit_code"], registry=r
        )
        self.server, self.thread = start_http_server(port, addr=address, registry=r)

    def observe(self, result: ServiceCheck, event: dict[str, Any] | None) -> None:
        for probe in result.probes:
            if probe.latency_s is not None:
                self.probe_latency.labels(result.service, probe.kind).set(probe.latency_s)
            self.probe_ok.labels(result.service, probe.kind).set(1 if probe.ok else 0)
        for state in ("up", "down", "unknown"):
            self.state.labels(result.service, state).set(1 if result.state == state else 0)
        self.rounds.labels(result.service, str(result.exit_code)).inc()
        if result.action == "failover":
            self.moves.labels(result.service, "succeeded").inc()
        elif result.action == "failover_failed":
            self.moves.labels(result.service, "failed").inc()
        if event:
            for step in event["steps"]:
                if step["duration_s"] is not None:
                    self.step_seconds.labels(result.service, step["name"]).set(step["duration_s"])

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
            message = redact(f"this round failed: {type(exc).__name__}: {exc}")
            return [ServiceCheck(n, "unknown", UNKNOWN, "none", message) for n in names]

    def run(self, rounds: int | None = None) -> int:
        previous = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT)}
        engine = Engine(self.config, should_stop=self.stopping.is_set)
        due = {name: 0.0 for name in self.config.services}
        done = 0
        try:
            while not self.stopping.is_set() and (rounds is None or done < rounds):
                now = time.monotonic()
                names = [n for n, t in due.items() if t <= now]
                if names:
                    for result in self._round(engine, names):
                        self.say(
                            f"{time.strftime('%H:%M:%S')} {result.service} "
                            f"{result.state} [{result.exit_code}] {result.message}"
                        )
                        if self.metrics:
                            last = engine.store.events(result.service, limit=1)
                            self.metrics.observe(result, last[0] if last else None)
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
