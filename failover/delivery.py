"""When notices are sent: after the step, in a background thread, journaled, bounded.

The engine hands the :class:`Notifier` what happened (a run's outcome, a round's
verdicts, an event another room announces) and goes on at once: nothing here runs on
the thread of a move. The worker thread owns its own store connection and journals each
delivery (``sending``, then ``sent`` or ``failed`` and why) before the next; a delivery is
claimed in a transaction before it is sent, so one event is never sent twice to one
target, by this process or a later one. A failed delivery is tried again in each later
round, up to the target's ``retry_rounds``, then marked ``gave_up``; one left ``sending``
by a process that ended mid-send is tried again too (at least once beats never).

The end of a run (failover, move) is queued by the store in the transaction that
journals it (an ``outbox`` record, see :mod:`failover.state.deliveries`): whoever runs
next, this process or the next ``check`` after a crash, turns it into deliveries.

An incident groups the events of one outage of a service (PagerDuty's ``dedup_key``):
the first paging event opens it, a healthy round (OK) resolves it. Incidents are kept
as delivery rows of their own (event ``incident``), so the store needs no other table.
"""

from __future__ import annotations

import calendar
import queue
import socket
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
from failover.notify_config import target_name
from failover.redact import redact
from failover.redact import register_secret
from failover.redact import url_secrets
from failover.state import now_iso
from failover.state import open_store
from failover.state.deliveries import OUTBOX
from failover.state.deliveries import RUN_KINDS
from failover.state.delivery_prune import EVERY
from providers.util import pid_alive

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
    targets = getattr(config, "notify", None) or []
    return {target_name(target, index): target for index, target in enumerate(targets)}


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
        self._prune_at = 0.0  # the journal's finished rows are pruned at most hourly

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
        """A run ended: a failover (or its failure) and a move are events. The store
        queued its notice with the run's end (the outbox); send what is queued now."""
        ended = outcome.kind in RUN_KINDS and outcome.status in ("succeeded", "failed")
        if ended and self.targets:
            self._submit(self._flush_outbox)

    def verdicts(self, verdicts: Iterable[Verdict], held: Iterable[str] = ()) -> None:
        """A round's final verdicts: an open circuit breaker and a provider that refuses
        us are events; a healthy service resolves its incident, unless it is ``held``
        (a condition of the round, a lost quorum, say, is still on)."""
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
        healthy -= set(held)
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
        """Queue what an earlier run left: notices of runs that ended (a crash right
        after may have kept them from being sent), deliveries whose sender died, and
        another try of every failed delivery that has rounds left; and forget the
        deliveries finished long ago (:mod:`failover.state.delivery_prune`)."""
        if self.targets:
            self._submit(self._flush_outbox)
            self._submit(self._requeue_interrupted)
            self._submit(self._retry_failed)
            if time.monotonic() >= self._prune_at:
                self._prune_at = time.monotonic() + EVERY
                self._submit(lambda store: store.prune_deliveries())

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
                self._deliver_one(store, name, target, notice)

    def _deliver_one(self, store: Any, name: str, target: NotifyTarget, notice: Notice) -> None:
        """:meth:`_deliver`, and whatever goes wrong with it stays with this target:
        the next target is sent to all the same."""
        try:
            self._deliver(store, name, target, notice)
        except Exception as exc:
            self.log(redact(f"notify: {name}: {notice.event}: {type(exc).__name__}: {exc}"))

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
            self._deliver_one(store, row["target"], target, notice)

    def _flush_outbox(self, store: Any) -> None:
        """Turn each queued run end (oldest first) into its deliveries. Sending twice is
        prevented per target by the claim, so a flush cut short is simply done again."""
        for row in reversed(store.deliveries(event=OUTBOX, status="queued")):
            event = store.event(int(row["body"].get("event_id") or 0))
            if event is not None and event.get("status") in ("succeeded", "failed"):
                notice = run_notice(event)
                self._deliver_new(store, notice, notice.key or None)
            store.finish_delivery(row["key"], "-", "done", "")

    def _requeue_interrupted(self, store: Any) -> None:
        """Deliveries left ``sending`` by a process that is gone: tried again."""
        for row in store.deliveries(status="sending"):
            target = self.targets.get(row["target"])
            sender = str(row.get("detail") or "")
            if sender_gone(sender, str(row["updated_at"]), target):
                retry_rounds = target.retry_rounds if target is not None else 0
                if store.requeue_delivery(row["key"], row["target"], sender, retry_rounds):
                    self.log(f"notify: {row['target']}: {row['event']}: {row['key']} was cut "
                             "off mid-send; sending it again")  # fmt: skip

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
        """These services are healthy again: resolve their incidents where they were
        told of them: PagerDuty's incident resolved, ``resolved`` to the targets that
        take it (one read of the open incidents per round, whatever the number of
        services)."""
        for incident in store.deliveries(event="incident", status="open"):
            service, key = str(incident["service"]), str(incident["key"])
            if service not in services:
                continue
            told = {
                row["target"]
                for row in store.deliveries(service=service, status="sent")
                if row["incident"] == key and row["event"] not in ("resolve", "resolved")
            }
            notice = Notice(
                "resolved",
                service,
                "up",
                f"{service} is healthy again",
                now_iso(),
                key=f"resolve:{key}",
                incident=key,
                action="resolve",
            )
            for name in sorted(told):
                target = self.targets.get(name)
                if target is not None and wants(target, notice):
                    self._deliver_one(store, name, target, notice)
            store.finish_delivery(key, "-", "resolved", notice.at)


def run_notice(event: dict[str, Any]) -> Notice:
    """The notice of a run that ended (``event`` as the journal returns it): a
    failover, a failover that failed, or a move. Each run is its own notice, but for
    failed failovers: one per incident, as a failover is tried again every round while
    the service stays down (no usable provider, say)."""
    service, kind, status = str(event["service"]), str(event["kind"]), str(event["status"])
    name = "failover_failed" if kind == "failover" and status == "failed" else kind
    key = "" if name == "failover_failed" else f"{name}:{service}:run-{event['id']}"
    data = event.get("data") or {}
    return Notice(
        name,
        service,
        status,
        redact(str(event.get("reason") or "")),
        str(event.get("finished_at") or now_iso()),
        data.get("generation") or data.get("expected_generation"),
        event.get("from"),
        event.get("to"),
        key=key,
    )


def sender_gone(sender: str, updated_at: str, target: NotifyTarget | None) -> bool:
    """Did the process that claimed a delivery (``sending: host:pid``) end before it
    finished? Certain for a process of this machine; for another machine's (etcd),
    presumed once the delivery is well past the longest it may take."""
    host, _, pid = sender.removeprefix("sending: ").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not pid_alive(int(pid))
    budget = target.budget() if target is not None else 60.0
    try:
        since = calendar.timegm(time.strptime(updated_at, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return True
    return time.time() - since > 2 * budget + 60.0


def _credentials(target: NotifyTarget) -> list[str]:
    """What must never be printed: a Slack or webhook URL is itself the credential, and
    the password of a URL's ``user:password@`` (PagerDuty's included) one too."""
    values = [getattr(target, k, None) for k in ("secret", "routing_key", "password")]
    url = getattr(target, "url", None)
    if target.type in ("slack", "webhook"):
        values.append(url)
    if isinstance(url, str):
        values += url_secrets(url)
    return [v for v in values if isinstance(v, str)]
