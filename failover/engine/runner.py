"""The steps of one run, executed from wherever the journal says they stopped.

A failover, move or deploy is::

    lock -> select -> provision -> wait_ready -> restore -> verify -> cutover -> fence -> release

and a drill ``select .. verify`` then ``teardown``. ``provision`` .. ``verify`` are tried
per candidate provider: a candidate that cannot take the service (blocked, no capacity,
not healthy within ``ready_timeout``) is destroyed and the next one is tried. Every step
is idempotent and journaled before the next begins, so a run interrupted anywhere is
finished by the next command. The generation number (a fencing token) is checked on
every write: a watcher that was paused or partitioned can never move the service back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from failover import certs_install
from failover.config import ServiceConfig
from failover.engine import dnsmove
from failover.engine import settle as _settle
from failover.engine import standby
from failover.engine.interrupts import deferred_signals
from failover.engine.interrupts import failpoint
from failover.engine.interrupts import signals_held
from failover.engine.journal import CANDIDATE_STEPS
from failover.engine.journal import DRILL_STEPS
from failover.engine.journal import STANDBY_STEPS
from failover.engine.journal import STEPS
from failover.engine.journal import Attempt
from failover.engine.journal import CandidateFailed
from failover.engine.journal import Event
from failover.engine.journal import HostRecord
from failover.engine.journal import Outcome
from failover.engine.journal import Role
from failover.engine.journal import StepFailed
from failover.probes import probe_target
from failover.probes import reach
from failover.redact import redact
from failover.render import TemplateError
from failover.render import host_spec
from failover.state import Lease
from failover.state import LeaseLost
from failover.state.gateway import StoreUnreachable
from providers.base import AccountBlocked
from providers.base import CapacityError
from providers.base import ComputeProvider
from providers.base import Host
from providers.base import HostSpec
from providers.base import HostState
from providers.base import NotFound
from providers.base import ProviderError
from providers.base import QuotaError
from providers.base import TransientError

if TYPE_CHECKING:
    from failover.engine import Engine


def _phase_failed(reason: str) -> bool:
    return "setup failed" in reason or "restore failed" in reason


def poll_interval(svc: ServiceConfig) -> float:
    return min(max(svc.health.interval / 4, 0.05), 1.0)


class Run:
    """One event's steps. The engine hands it the event, the lease and a way to learn
    that the lease was lost; everything else it asks of the engine's public methods."""

    def __init__(
        self,
        engine: Engine,
        event: Event,
        lease: Lease | None,
        lease_lost: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.e = engine
        self.store = engine.store
        self.event = event
        self.service = event.service
        self.svc = engine.config.services[event.service]
        self.kind = event.kind
        self.data = event.data
        self.lease = lease
        self.lease_lost = lease_lost
        self.steps = {"drill": DRILL_STEPS, "standby": STANDBY_STEPS}.get(self.kind, STEPS)
        self.origin = event.origin
        self._deadline: tuple[float, float] | None = None
        # A step that did what it could and left the rest to later rounds (a fence that
        # could not reach the old host): journaled "deferred", never "succeeded".
        self.deferred: dict[str, str] = {}
        self.destroyed: list[str] = []  # the hosts this process cleaned up
        self.resumed = bool(event.steps)  # picked up after a crash, a silent store, a hand-over
        if self.data.deadline:
            self.deadline()  # a resumed run: what is left of its budget, from now on

    # --------------------------------------------------------------- machinery

    def save(self, target: HostRecord | None = None) -> None:
        self.store.update_event(
            self.event.id,
            self.lease,
            data=self.data.to_dict(),
            target=target.ref().to_dict() if target else None,
        )

    def journal(self, step: str, status: str, detail: str = "") -> None:
        self.store.step(self.event.id, self.steps.index(step), step, status, detail, self.lease)
        self.e.on_step(step, status, redact(detail))
        self.e.publisher.request()  # the status page, after the step and never during
        self.e.log(f"{self.service} {self.kind} {step}: {status}{': ' + detail if detail else ''}")

    def execute(self) -> Outcome:
        index = next(
            (i for i, s in enumerate(self.steps) if self.event.steps.get(s) != "succeeded"),
            len(self.steps),
        )
        try:
            if self.restore_left_in_flight(index):
                index = self.steps.index("provision")
            while index < len(self.steps):
                step = self.steps[index]
                lost = self.lease_lost()
                if lost:
                    raise LeaseLost(lost)
                back = _settle.recovered(self, step)
                if back:
                    return self.fail(step, back)
                if self.e.should_stop() and self.kind != "drill":
                    # Left in_progress on purpose: the next command resumes right here.
                    return self.outcome(
                        "interrupted",
                        f"stopped before {step}; the next `failover check` finishes the run",
                    )
                self.journal(step, "in_progress")
                try:
                    detail = self.call(step)
                except CandidateFailed as exc:
                    handed = _settle.hand_over(self, step, str(exc))
                    if handed:
                        return self.outcome("interrupted", handed)
                    self.journal(step, "failed", str(exc))
                    self.next_candidate(step, str(exc))
                    index = self.steps.index("provision")
                    continue
                self.journal(step, self.deferred.pop(step, "succeeded"), detail)
                if step == self.steps[-1]:
                    self.finish("succeeded", None)
                failpoint(step)
                index += 1
        except (StepFailed, ProviderError) as exc:
            return self.fail(self.steps[index], str(exc))
        except KeyboardInterrupt:
            self.interrupted(self.steps[index])
            raise
        return self.outcome("succeeded", self.summary())

    def call(self, step: str) -> str:
        """Run one step. An error nobody foresaw fails the step (the candidate, for the
        candidate steps) instead of ending the process with the run half done."""
        try:
            detail: str = getattr(self, f"step_{step}")()
        except (CandidateFailed, StepFailed, ProviderError, LeaseLost, KeyboardInterrupt):
            raise
        except StoreUnreachable:
            # What the store holds is unknown (a write may have landed) and DNS may name
            # the new host already: undo nothing on that guess. The run stays open, as
            # after a crash, and resumes at this idempotent step (fault lab seed 258).
            raise
        except Exception as exc:
            message = f"{step} failed unexpectedly: {type(exc).__name__}: {exc}"
            self.e.log(message)
            if step in CANDIDATE_STEPS:
                raise CandidateFailed(message) from exc
            raise StepFailed(message) from exc
        return detail

    def fail(self, step: str, message: str) -> Outcome:
        self.journal(step, "failed", message)
        self.rollback()
        if self.kind == "drill" and self.destroyed:
            # The drill's host went with the failure: its teardown did run (issue 21).
            self.journal("teardown", "succeeded", ", ".join(self.destroyed) + " destroyed")
        self.finish("failed", message)
        return self.outcome("failed", message)

    def interrupted(self, step: str) -> None:
        """Ctrl-C or SIGTERM in the middle of ``step``. Before cutover the new host is
        rolled back; from cutover on the move is finished, since the record may already
        point at the new host. Signals are held off meanwhile; the caller exits 130."""
        with signals_held():
            if "cutover" in self.steps and self.steps.index(step) >= self.steps.index("cutover"):
                index = self.steps.index(step)
                try:
                    for rest in self.steps[index:]:
                        self.journal(rest, "in_progress")
                        self.journal(rest, "succeeded", self.call(rest))
                    self.finish("succeeded", None)
                    return
                except (StepFailed, ProviderError, CandidateFailed) as exc:
                    self.fail(rest, str(exc))
                    return
            self.fail(step, "interrupted (SIGINT/SIGTERM); rolled back")

    def finish(self, status: str, message: str | None) -> None:
        reason = None
        if message:
            reason = f"{self.event.reason}: {message}" if self.event.reason else message
        self.store.update_event(
            self.event.id, self.lease, data=self.data.to_dict(), status=status, reason=reason
        )
        self.e.publisher.request()  # the page's last word on this run is its outcome

    def outcome(self, status: str, message: str) -> Outcome:
        event = self.store.event(self.event.id)
        return Outcome(self.service, self.kind, status, redact(message), self.event.id, event)

    def summary(self) -> str:
        host = self.data.host or self.data.torn_down
        provider = host.provider if host else None
        if self.kind == "drill" and self.data.extra.get("warm"):
            return f"drill onto the warm standby on {provider} succeeded; standby kept"
        if self.kind == "drill":
            return f"drill to {provider} succeeded; host torn down"
        if self.kind == "standby":
            where = f"{provider} ({host.address if host else None}:{self.svc.port})"
            return f"warm standby of {self.service} ready on {where}, out of DNS"
        origin = f" from {self.origin.provider}" if self.origin else ""
        unfenced = ""
        if self.status_of("fence") == "deferred" and self.origin:
            unfenced = (
                f"; the old host {self.origin.host_id} on {self.origin.provider} is NOT "
                "fenced yet (out of DNS; every check retries)"
            )
        return (
            f"{self.service} now lives on {provider} ({host.address if host else None}:"
            f"{self.svc.port}){origin}, generation {self.data.generation}{unfenced}"
        )

    # --------------------------------------------------------------- candidates

    def candidate(self) -> str:
        if self.data.attempt >= len(self.data.candidates):
            raise StepFailed(self.no_candidates())
        return self.data.candidates[self.data.attempt]

    def no_candidates(self) -> str:
        tried = [f"{a.provider}: {a.result}" for a in self.data.attempts]
        skipped = [f"{p}: {why}" for p, why in (self.data.skipped or {}).items()]
        parts = tried + skipped
        return "no provider could take the service (" + ("; ".join(parts) or "no candidates") + ")"

    def next_candidate(self, step: str, why: str) -> None:
        host = self.data.host
        provider = host.provider if host else self.candidate()
        if host:
            self.cleanup(host, why)
        self.data.attempts.append(Attempt(provider, step, why))
        self.data.host = None
        self.data.attempt += 1
        self.save()
        if self.data.attempt >= len(self.data.candidates):
            # The steps stay as they ran, the failed one marked failed, for the report.
            raise StepFailed(self.no_candidates())
        self.store.reset_steps(self.event.id, CANDIDATE_STEPS, self.lease)

    def restore_left_in_flight(self, index: int) -> bool:
        """A restore another run started and never finished: that run may still be alive
        (paused, cut off from etcd) and finish streaming its backup into the host after
        this run cut over to it, replacing the writes the host acknowledged since (the
        fault lab's seed 1029). Never restore into that host: destroy it and provision a
        fresh one on the same provider."""
        host = self.data.host
        if index >= len(self.steps) or self.steps[index] != "restore" or host is None:
            return False
        if self.svc.data is None or self.event.steps.get("restore") != "in_progress":
            return False
        why = "another run left a restore into it in flight; provisioning a fresh host"
        self.journal("restore", "failed", why)
        self.cleanup(host, why)
        self.data.attempts.append(Attempt(host.provider, "restore", why))
        self.data.host = None
        self.save()
        self.store.reset_steps(self.event.id, CANDIDATE_STEPS, self.lease)
        return True

    def remember(
        self, host: HostRecord, role: Role, *, generation: int | None = None, note: str = ""
    ) -> None:
        self.store.set_host(
            host.provider,
            host.host_id,
            service=self.service,
            generation=host.generation if generation is None else generation,
            role=role,
            address=host.address,
            note=note or None,
        )

    def cleanup(self, host: HostRecord, why: str) -> None:
        """Destroy a candidate that did not make it. If that fails, stop: a silent leak
        is worse than a failed failover."""
        try:
            self.e.destroy(host.provider, host.host_id)
        except ProviderError as exc:
            self.remember(host, Role.CANDIDATE, note=f"cleanup failed: {exc}")
            raise StepFailed(
                f"{host.provider}: {why}; and its host {host.host_id} could not be "
                f"destroyed ({exc}): it is left on {host.provider} — destroy it there, "
                "the next `failover check` will also retry"
            ) from None
        self.remember(host, Role.DESTROYED, note=why)
        self.destroyed.append(f"{host.host_id} on {host.provider}")

    def rollback(self) -> None:
        host = self.data.host
        if host is None:
            host = self.half_made()
        if host and self.status_of("cutover") != "succeeded":
            try:
                self.cleanup(host, "run failed")
            except StepFailed as exc:
                self.e.log(str(exc))
            self.data.host = None

    def half_made(self) -> HostRecord | None:
        """The host a create that was cut short may have left, found by its name."""
        creating = self.data.extra.pop("creating", None)
        if not creating:
            return None
        try:
            hosts = self.e.provider(creating["provider"]).list_hosts(self.service)
        except ProviderError:
            return None
        for h in hosts:
            if h.name == creating["name"] and not h.state.gone:
                return HostRecord(h.provider, h.id, h.name, h.address, h.generation, h.zone)
        return None

    def status_of(self, step: str) -> str | None:
        event = self.store.event(self.event.id) or {"steps": []}
        return {s["name"]: s["status"] for s in event["steps"]}.get(step)

    def deadline(self) -> float:
        """``ready_timeout`` as a monotonic deadline. The journal keeps it on the wall
        clock, so a resumed run keeps the budget it had; within one process a step of
        the wall clock cannot stretch or cut it."""
        wall = self.data.deadline or (time.time() + self.svc.policy.ready_timeout)
        if self._deadline is None or self._deadline[0] != wall:
            self._deadline = (wall, time.monotonic() + (wall - time.time()))
        return self._deadline[1]

    def host(self) -> HostRecord:
        if self.data.host is None:
            raise CandidateFailed("the candidate host is not recorded")
        return self.data.host

    def poll_host(self) -> Host:
        host = self.host()
        provider: ComputeProvider = self.e.provider(host.provider)
        try:
            found = provider.get_host(host.host_id)
        except AccountBlocked as exc:
            self.e.mark_blocked(host.provider, exc)
            raise CandidateFailed(f"blocked: {exc}") from None
        except NotFound:
            found = None
        except TransientError:
            return Host(host.host_id, host.provider, host.name, self.service, 0, HostState.UNKNOWN)
        if found is None:
            raise CandidateFailed(f"host {host.host_id} vanished on {host.provider}")
        if found.state.gone:
            reason = f": {found.reason}" if found.reason else ""
            raise CandidateFailed(f"host {host.host_id} {found.state.value}{reason}")
        return found

    def timed_out(self, what: str) -> CandidateFailed:
        return CandidateFailed(
            f"{what} within ready_timeout ({self.svc.policy.ready_timeout:g}s); host destroyed"
        )

    # --------------------------------------------------------------- the steps

    def step_lock(self) -> str:
        assert self.lease is not None
        return f"held by {self.lease.owner} (token {self.lease.token})"

    def step_select(self) -> str:
        current = self.origin.provider if self.origin else None
        selection = self.e.select(self.service, self.kind, self.data.to, current)
        if not self.data.candidates:
            self.data.candidates = selection.usable
            self.data.skipped = {c.provider: c.reason for c in selection.candidates if not c.usable}
            self.save()
        if not self.data.candidates:
            raise StepFailed(f"no provider can take {self.service}: {selection.why_none()}")
        detail = "candidates: " + ", ".join(self.data.candidates)
        if self.data.skipped:
            detail += "; skipped: " + "; ".join(f"{p} ({w})" for p, w in self.data.skipped.items())
        return detail

    def step_provision(self) -> str:
        provider_name = self.candidate()
        purpose = self.kind if self.kind in ("drill", "standby") else "serve"
        generation = self.data.target()
        if self.may_take_standby():
            warm = standby.adopt(self.e, self.service, provider_name, generation)
            if warm is not None:
                return self.take_standby(warm)
        name = {
            "drill": f"{self.service}-drill{self.event.id}-{provider_name}",
            "standby": f"{self.service}-standby-g{generation}-{provider_name}",
        }.get(purpose)
        try:
            svc, tls_note = certs_install.prepare(self.e, self.service, self.svc, self.kind)
        except certs_install.CertificateUnavailable as exc:
            raise StepFailed(str(exc)) from None
        try:
            spec = host_spec(
                self.service,
                svc,
                generation=generation,
                provider=provider_name,
                purpose=purpose,
                name=name,
                stores=self.e.config.stores,
                blocked={
                    p
                    for p, st in self.e.store.provider_states().items()
                    if st.get("state") == "blocked"
                },
            )
        except TemplateError as exc:
            raise StepFailed(str(exc)) from None
        if not self.data.deadline or self.data.host is None:
            self.data.deadline = time.time() + self.svc.policy.ready_timeout
            self._deadline = (self.data.deadline, time.monotonic() + self.svc.policy.ready_timeout)
            self.save()
        unusable = self.e.blocklist.get(provider_name)
        if unusable is not None and self.kind != "drill":
            raise CandidateFailed(f"skipped: another move of this round found it {unusable}")
        # Journaled before it is sent: a run that dies while the provider makes the host
        # still knows its name, so rollback and the next run find it (issue 11).
        self.data.extra["creating"] = {"provider": provider_name, "name": spec.name}
        self.save()
        with deferred_signals():
            return self.create(provider_name, spec, generation, purpose) + tls_note

    def create(self, provider_name: str, spec: HostSpec, generation: int, purpose: str) -> str:
        """Ask for the host and journal what came back, as one piece: Ctrl-C in between
        would leave a host the journal does not know."""
        try:
            host = self.e.provider(provider_name).create_host(spec)
        except AccountBlocked as exc:
            self.e.mark_blocked(provider_name, exc)
            raise CandidateFailed(f"blocked: {exc}") from None
        except (CapacityError, QuotaError) as exc:
            if not self.e.provider(provider_name).capacity_per_service:
                self.e.blocklist.add(provider_name, f"out of {exc.kind} ({exc})")
            raise CandidateFailed(f"{exc.kind}: {exc}") from None
        except ProviderError as exc:
            raise CandidateFailed(f"{exc.kind}: {exc}") from None
        record = HostRecord(provider_name, host.id, host.name, host.address, generation, host.zone)
        self.data.host = record
        self.data.extra.pop("creating", None)
        self.save()
        self.remember(record, Role.DRILL if purpose == "drill" else Role.CANDIDATE)
        zone = f" in {host.zone}" if host.zone and host.zone != "loopback" else ""
        return f"{host.id} ({host.name}) on {provider_name}{zone}"

    def may_take_standby(self) -> bool:
        if not standby.wanted(self.e, self.service):
            return False
        if self.kind == "drill":
            return not self.data.extra.get("cold")
        return self.kind in ("failover", "move")

    def take_standby(self, warm: HostRecord) -> str:
        """The warm standby becomes this run's candidate: nothing to provision. A drill
        rehearses on it and leaves it a standby."""
        self.data.host = warm
        self.data.extra["warm"] = warm.host_id
        self.data.deadline = time.time() + self.svc.policy.ready_timeout
        self._deadline = (self.data.deadline, time.monotonic() + self.svc.policy.ready_timeout)
        self.save()
        if self.kind != "drill":
            self.remember(warm, Role.CANDIDATE, note=f"warm standby taken by a {self.kind}")
        return f"warm standby {warm.host_id} ({warm.name}) on {warm.provider}: nothing to provision"

    def step_wait_ready(self) -> str:
        if self.data.extra.get("warm") and self.data.host is not None:
            host = self.poll_host()
            return f"warm standby: {host.raw_state or host.state.value} at {host.address}"
        started = time.monotonic()
        while True:
            try:
                host = self.poll_host()
            except CandidateFailed as exc:
                if _phase_failed(str(exc)):
                    # The host came up and its setup or restore failed before this step
                    # saw it running: the restore step reports that, not this one.
                    return f"booted; {exc}"
                raise
            if (
                host.state in (HostState.RUNNING, HostState.PENDING)
                and host.address
                and (host.state == HostState.RUNNING or host.raw_state in ("setup", "restore"))
            ):
                record = self.host()
                if host.address != record.address:
                    record.address = host.address
                    self.save()
                # The host's state, never the name of the phase it is in (issue 21).
                booted = "running" if host.state == HostState.RUNNING else "booted"
                return f"{booted} at {host.address} after {time.monotonic() - started:.1f}s"
            if time.monotonic() > self.deadline():
                raise self.timed_out(f"not running ({host.state.value})")
            time.sleep(poll_interval(self.svc))

    def step_restore(self) -> str:
        host = self.host()
        svc = self.svc
        started = time.monotonic()
        while True:
            self.poll_host()
            ok, _ = asyncio.run(reach(f"{host.address}:{svc.port}", min(svc.health.timeout, 1.0)))
            if ok:
                return (
                    f"setup ({len(svc.run.setup)}) and restore ({len(svc.run.restore)}) "
                    f"done; port {svc.port} answers after {time.monotonic() - started:.1f}s"
                ) + self.restore_data()
            if time.monotonic() > self.deadline():
                raise self.timed_out(f"port {svc.port} on {host.address} not answering")
            time.sleep(poll_interval(svc))

    def restore_data(self) -> str:
        """The newest good backup streamed into ``data.restore`` on the new host. Data
        that exists but cannot be restored fails the run: a service brought up empty
        while its data sits in a store is worse than one that did not move."""
        if self.svc.data is None:
            return ""
        from failover.data.plane import DataUnavailable
        from failover.data.recover import restore

        host = self.host()
        try:
            detail, record = restore(
                self.e,
                self.service,
                host.provider,
                host.host_id,
                kind=self.kind,
                origin=self.origin,
            )
        except DataUnavailable as exc:
            raise StepFailed(f"{self.service}: {exc}") from None
        except ProviderError as exc:
            # The host could not take it (cannot run commands, died): the next candidate.
            raise CandidateFailed(f"restoring the data on {host.host_id}: {exc}") from None
        if record:
            self.data.extra["restore"] = record
            self.save()
        return "; " + detail

    def step_verify(self) -> str:
        host = self.host()
        assert host.address is not None
        # The dns probe checks the record, which points at the old host until cutover.
        target = standby.verify_target(self.e, self.service, host.address)
        good, last = 0, ""
        while True:
            probes = asyncio.run(probe_target(target))
            if all(p.ok for p in probes):
                good += 1
                if good >= self.svc.health.rise:
                    latency = max((p.latency_s or 0) for p in probes)
                    return f"{good} good rounds; latency {latency:.3f}s"
            else:
                good = 0
                last = "; ".join(f"{p.kind}: {p.error}" for p in probes if not p.ok)
                self.poll_host()
            if time.monotonic() > self.deadline():
                raise self.timed_out(f"probes not passing ({last})")
            time.sleep(min(self.svc.health.interval, 0.25))

    def step_cutover(self) -> str:
        host = self.host()
        assert host.address is not None
        moved = dnsmove.cutover(self, host.address)
        generation = self.store.cutover(
            self.service,
            self.data.expected_generation,
            host.ref().active(),
            self.lease,
            generation=self.data.target(),
        )
        self.data.generation = generation
        self.save(target=host)
        self.remember(host, Role.ACTIVE, generation=generation)
        if self.origin:
            self.remember_origin(Role.FENCE, address=self.origin.address)
        from failover.data.engines.pgbackrest import open_archiving

        archiving = open_archiving(self.e, self.service, (host.provider, host.host_id))
        return f"{moved}; generation {generation}{archiving}"

    def remember_origin(self, role: Role, *, address: str | None = None, note: str = "") -> None:
        assert self.origin is not None
        self.store.set_host(
            self.origin.provider,
            self.origin.host_id,
            service=self.service,
            generation=self.data.expected_generation,
            role=role,
            address=address,
            note=note or None,
        )

    def step_fence(self) -> str:
        if not self.origin:
            return "no previous host"
        origin, how = self.origin, self.svc.policy.fence
        where = f"{origin.host_id} on {origin.provider}"
        try:
            self.e.destroy(origin.provider, origin.host_id, stop_only=how == "stop")
        except AccountBlocked as exc:
            self.remember_origin(Role.FENCE, note=str(exc))
            self.deferred["fence"] = "deferred"
            return (
                f"{where} NOT {how}ed: the provider refuses us ({exc.message}); out of DNS, "
                f"will be {how}ed when it answers again"
            )
        except ProviderError as exc:
            self.remember_origin(Role.FENCE, note=str(exc))
            self.deferred["fence"] = "deferred"
            return f"{where} NOT {how}ed: {exc}; out of DNS, retried by every check"
        self.remember_origin(Role.DESTROYED if how == "destroy" else Role.STOPPED)
        if self.e.config.provider_settings()[origin.provider].type == "static":
            # A static machine is never stopped by us: the record of it is released.
            return f"{where} released (static: the service there keeps running); out of DNS"
        return f"{where} {how}ed; out of DNS"

    def step_park(self) -> str:
        host = self.host()
        self.remember(host, Role.STANDBY, note="warm standby, out of DNS")
        return f"{host.host_id} on {host.provider} kept running out of DNS for the next failover"

    def step_release(self) -> str:
        return "lock released"

    def step_teardown(self) -> str:
        host = self.data.host
        if not host:
            return "no host"
        if self.data.extra.get("warm"):
            self.data.host = None
            self.save(target=host)
            return f"{host.host_id} on {host.provider} kept: it is the warm standby"
        self.cleanup(host, "drill finished")
        self.data.host = None
        self.data.torn_down = host
        self.save(target=host)
        return f"{host.host_id} on {host.provider} destroyed"


def run_event(engine: Engine, event: dict[str, Any], lease: Lease | None, **kw: Any) -> Outcome:
    """Execute (or resume) the journal event ``event`` as the store returned it."""
    return Run(engine, Event.from_dict(event), lease, **kw).execute()
