"""When notices are sent: after the step, in a background thread, journaled, bounded.

The engine hands the :class:`Notifier` what happened (a run's outcome, a round's
verdicts, an event another room announces) and goes on at once: nothing here runs on
the thread of a move. The worker thread owns its own store connection and journals each
delivery (``sending``, then ``sent`` or ``failed`` and why) before the next; a delivery is
claimed in a transaction before it is sent, so one event is never sent twice to one
target, by this process or a later one. A failed delivery is tried again in each later
round, up to the target's ``retry_rounds``, then marked ``gave_up``.

An incident groups the events of one outage of a service (PagerDuty's ``dedup_key``):
the first paging event opens it, a healthy round (OK) resolves it. Incidents are kept
as delivery rows of their own (event ``incident``), so the store needs no other table.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any

from failover.notify import INCIDENT
from failover.notify import TEST
from failover.notify import DeliveryFailed
from failover.notify import Notice
from failover.notify import PagerDutyTarget
from failover.notify import send
from failover.notify import wants
from failover.redact import redact
from failover.redact import register_secret
from failover.state import now_iso
from failover.state import open_store

if TYPE_CHECKING:
    from failover.config import Config
    from failover.engine.health import Verdict
    from failover.engine.journal import Outcome
    from failover.notify import NotifyTarget

Job = Callable[[Any], None]
Listener = Callable[[str, str, str], None]  # event, target, result (sent|failed|gave_up)
_CLOSE_CAP = 120.0  # the longest a one-shot command waits for its deliveries at exit


def target_names(config: Config) -> dict[str, NotifyTarget]:
    """The configured targets by the name the journal uses (``webhook-0`` unless named)."""
    out: dict[str, NotifyTarget] = {}
    for index, target in enumerate(getattr(config, "notify", None) or []):
        out[target.name or f"{target.type}-{index}"] = target
    return out


class Notifier:
    def __init__(self, config: Config, log: Callable[[str], None], owner: object = None) -> None:
        self.config = config
        self.log = log
        self.owner = owner  # the engine that closes it (its siblings share it)
        self.targets = target_names(config)
        for target in self.targets.values():
            for value in _credentials(target):
                register_secret(value)
        self.listeners: list[Listener] = []
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the engine's side

    def announce(
        self,
        event: str,
        service: str,
        *,
        status: str = "warning",
        reason: str = "",
        origin: dict[str, Any] | None = None,
        to: dict[str, Any] | None = None,
        generation: int | None = None,
        key: str | None = None,
        **extra: Any,
    ) -> None:
        """Queue ``event`` about ``service``; returns at once. Without ``key`` the event
        is sent once per incident of the service (a condition seen every round, like a
        stale backup, is not repeated until the service was healthy in between)."""
        if not self.targets:
            return
        notice = Notice(
            event, service, status, redact(reason), now_iso(), generation, origin, to, extra=extra
        )
        self._submit(lambda store: self._deliver_new(store, notice, key))

    def outcome(self, outcome: Outcome) -> None:
        """A run ended: a failover (or its failure) and a move are events."""
        if outcome.kind not in ("failover", "move") or outcome.status not in (
            "succeeded",
            "failed",
        ):
            return
        event = outcome.event or {}
        data = event.get("data") or {}
        name = outcome.kind
        if outcome.kind == "failover" and outcome.status == "failed":
            name = "failover_failed"
        generation = data.get("generation") or data.get("expected_generation")
        self.announce(
            name,
            outcome.service,
            status=outcome.status,
            reason=outcome.message if outcome.status == "failed" else event.get("reason") or "",
            origin=event.get("from"),
            to=event.get("to"),
            generation=generation,
            key=f"{name}:{outcome.service}:run-{outcome.event_id}",
        )

    def verdicts(self, verdicts: Iterable[Verdict]) -> None:
        """A round's final verdicts: an open circuit breaker and a provider that refuses
        us are events; a healthy service resolves its incident."""
        if not self.targets:
            return
        healthy = set()
        for verdict in verdicts:
            if verdict.action == "circuit_breaker":
                self._about_row("circuit_breaker", verdict, "open", verdict.message)
            elif verdict.blocked is not None:
                self._about_row("provider_blocked", verdict, "warning", verdict.blocked)
            elif verdict.state == "up" and int(verdict.exit_code) == 0:
                healthy.add(verdict.service)
        if healthy:
            self._submit(lambda store: self._resolve(store, healthy))

    def _about_row(self, event: str, verdict: Verdict, status: str, reason: str) -> None:
        name = verdict.service

        def job(store: Any) -> None:
            row = store.service(name)
            notice = Notice(
                event, name, status, redact(reason), now_iso(), row.generation, row.active
            )
            self._deliver_new(store, notice, None)

        self._submit(job)

    def retry(self) -> None:
        """Queue another try of every failed delivery that has rounds left."""
        if self.targets:
            self._submit(self._retry_failed)

    def drain(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until every queued delivery was tried."""
        end = time.monotonic() + timeout
        with self._jobs.all_tasks_done:
            while self._jobs.unfinished_tasks:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._jobs.all_tasks_done.wait(left)
        return True

    def close(self) -> None:
        """Let the deliveries in flight finish (bounded), then stop the worker. A
        one-shot ``check`` calls this before it exits, after its move is done."""
        if self._thread is None:
            return
        budget = sum(t.budget() for t in self.targets.values())
        pending = max(1, self._jobs.unfinished_tasks)
        if not self.drain(min(_CLOSE_CAP, budget * pending)):
            self.log(f"notify: gave up waiting for {self._jobs.unfinished_tasks} delivery job(s)")
        self._jobs.put(None)
        self._thread.join(timeout=1.0)
        self._thread = None

    def test(self) -> list[dict[str, Any]]:
        """Send one test event to every target now (not journaled); each result."""
        notice = Notice(
            TEST,
            "test",
            "test",
            "a test event from `failover notify test`: this target works",
            now_iso(),
            key=f"test:{uuid.uuid4().hex[:12]}",
        )
        results = []
        for name, target in self.targets.items():
            try:
                detail = send(target, notice)
                if isinstance(target, PagerDutyTarget):
                    # Nobody should stay paged by a test: resolve it at once.
                    resolve = replace(notice, action="resolve")
                    detail += "; resolved: " + send(target, resolve)
                results.append({"target": name, "type": target.type, "ok": True, "detail": detail})
            except DeliveryFailed as exc:
                results.append(
                    {"target": name, "type": target.type, "ok": False, "detail": str(exc)}
                )
        return results

    # ------------------------------------------------------------ the worker's side

    def _submit(self, job: Job) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="failover-notify", daemon=True
                )
                self._thread.start()
        self._jobs.put(job)

    def _work(self) -> None:
        assert self.config.state_dir is not None
        store = open_store(self.config)
        try:
            while True:
                job = self._jobs.get()
                try:
                    if job is None:
                        return
                    job(store)
                except Exception as exc:  # one bad job must not end every later delivery
                    self.log(redact(f"notify: {type(exc).__name__}: {exc}"))
                finally:
                    self._jobs.task_done()
        finally:
            store.close()

    def _deliver_new(self, store: Any, notice: Notice, key: str | None) -> None:
        incident = None
        if notice.event in INCIDENT:
            incident = self._incident(store, notice.service)
        key = key or f"{notice.event}:{notice.service}:{incident or notice.at}"
        notice = replace(notice, key=key, incident=incident)
        for name, target in self.targets.items():
            if wants(target, notice):
                self._deliver(store, name, target, notice)

    def _deliver(self, store: Any, name: str, target: NotifyTarget, notice: Notice) -> None:
        body = {**notice.body(), "_action": notice.action}
        claimed = store.claim_delivery(
            notice.key,
            name,
            event=notice.event,
            service=notice.service,
            body=body,
            incident=notice.incident,
            retry_rounds=target.retry_rounds,
        )
        if claimed is None:
            return  # sent already, being sent, or given up: never twice
        try:
            detail = send(target, notice)
        except DeliveryFailed as exc:
            last = claimed["rounds"] > target.retry_rounds
            status = "gave_up" if last else "failed"
            store.finish_delivery(notice.key, name, status, str(exc))
            self.log(
                f"notify: {name}: {notice.event} for {notice.service} {status.replace('_', ' ')}"
                f" (round {claimed['rounds']} of {target.retry_rounds + 1}): {exc}"
            )
            self._tell(notice.event, name, status)
            return
        store.finish_delivery(notice.key, name, "sent", detail)
        self._tell(notice.event, name, "sent")

    def _tell(self, event: str, target: str, result: str) -> None:
        for listener in self.listeners:
            listener(event, target, result)

    def _retry_failed(self, store: Any) -> None:
        for row in store.deliveries(status="failed"):
            target = self.targets.get(row["target"])
            if target is None:
                store.finish_delivery(row["key"], row["target"], "gave_up", "target removed")
                continue
            notice = Notice.from_body(row["body"], row["key"], row["incident"])
            self._deliver(store, row["target"], target, notice)

    def _incident(self, store: Any, service: str) -> str:
        """The open incident of ``service``, opened now when there is none."""
        open_ = store.deliveries(service=service, event="incident", status="open")
        if open_:
            return str(open_[0]["key"])
        key = f"{service}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        store.claim_delivery(
            key, "-", event="incident", service=service, body={}, incident=key, retry_rounds=0
        )
        store.finish_delivery(key, "-", "open", "")
        return key

    def _resolve(self, store: Any, services: set[str]) -> None:
        """These services are healthy again: resolve their incidents where they paged
        (one read of the open incidents per round, whatever the number of services)."""
        for incident in store.deliveries(event="incident", status="open"):
            service, key = str(incident["service"]), str(incident["key"])
            if service not in services:
                continue
            paged = {
                row["target"]
                for row in store.deliveries(service=service, status="sent")
                if row["incident"] == key and row["event"] != "resolve"
            }
            notice = Notice(
                "resolve",
                service,
                "resolved",
                f"{service} is healthy again",
                now_iso(),
                key=f"resolve:{key}",
                incident=key,
                action="resolve",
            )
            for name in sorted(paged):
                target = self.targets.get(name)
                if isinstance(target, PagerDutyTarget):
                    self._deliver(store, name, target, notice)
            store.finish_delivery(key, "-", "resolved", notice.at)


def _credentials(target: NotifyTarget) -> list[str]:
    """What must never be printed: a Slack or webhook URL is itself the credential."""
    values = [getattr(target, k, None) for k in ("secret", "routing_key", "password")]
    if target.type in ("slack", "webhook"):
        values.append(getattr(target, "url", None))
    return [v for v in values if isinstance(v, str)]
