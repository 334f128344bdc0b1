"""Finishing what earlier runs left: interrupted events, hosts still to be fenced,
drill hosts of a crashed drill, candidates nobody owns, and after the state was lost,
the hosts the providers still run for a service (found by their tags)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any

from failover.engine.health import WARNING
from failover.engine.health import Verdict
from failover.engine.journal import CANDIDATE_STEPS
from failover.engine.journal import STEPS
from failover.engine.journal import Event
from failover.engine.journal import Outcome
from failover.engine.journal import Role
from providers.base import Host
from providers.base import HostState
from providers.base import ProviderError
from providers.util import pid_alive

if TYPE_CHECKING:
    from failover.engine import Engine
    from failover.engine.runner import Run

_LEFTOVER = (Role.FENCE, Role.CANDIDATE, Role.DRILL)
_BEFORE_CUTOVER = STEPS[: STEPS.index("cutover")]


def settle(engine: Engine, service: str) -> list[str]:
    """Finish an interrupted event of ``service`` and remove the hosts it left."""
    notes: list[str] = []
    event = engine.store.open_event(service)
    if event is not None:
        outcome = engine.run(service, event["kind"], reason=event["reason"] or "resume")
        # A finished move or failover moved the service in this run (WARNING, contract
        # section 3); a finished deploy only put it where it was meant to be.
        if event["kind"] != "deploy" or not outcome.ok:
            notes.append(outcome.message)
    for host in engine.store.hosts(service):
        if host["role"] not in _LEFTOVER:
            continue
        if host["role"] in (Role.CANDIDATE, Role.DRILL) and owned(engine, host):
            continue
        note = remove_leftover(engine, service, host)
        if note:
            notes.append(note)
    return notes


def next_generation(engine: Engine, service: str, generation: int) -> int | None:
    """The generation a deploy after ``destroy`` cuts over to: past every one the
    journal holds (the state forgot the service, the journal did not), so the number
    keeps growing and stays a fencing token. None: the usual next one."""
    made = [
        int(e["data"]["generation"])
        for e in engine.store.events(service, limit=50)
        if (e.get("data") or {}).get("generation")
    ]
    top = max(made, default=0)
    return top + 1 if top > generation else None


def hand_over(run: Run, step: str, why: str) -> str | None:
    """A failover's candidate failed as this watcher sees it while a quorum of other
    locations sees it healthy: the run is left open (the host kept, a fresh
    ``ready_timeout``) for a watcher that can see, and this one gives up the lead."""
    host = run.data.host
    if run.kind != "failover" or host is None or step not in CANDIDATE_STEPS:
        return None
    said = run.e.watchers.hand_over(run.service, host.host_id)
    if said is None:
        return None
    run.data.deadline = time.time() + run.svc.policy.ready_timeout
    run.save()
    why = why.removesuffix("; host destroyed")
    run.journal(step, "failed", f"{why}; host kept: {said}")
    return f"{run.service}: {step} failed as seen from here ({why}); {said}"


def recovered(run: Run, step: str) -> str | None:
    """A failover picked up again and not cut over yet: when a quorum of locations now
    sees the old host up, finishing it would move a healthy service on the word of an
    outage that is over (fault lab seed 637: decided under a real isolation, left open by
    a silent store, resumed after the isolation healed). Asked before each step up to
    the cutover: one read of the votes each, and only for a resumed run."""
    if run.kind != "failover" or not run.resumed or step not in _BEFORE_CUTOVER:
        return None
    seen = run.e.watchers.recovered(run.service, run.store.service(run.service).generation)
    return f"abandoned: {seen}; the service stays where it is" if seen else None


def same_run(event: dict[str, Any], kind: str, to: str | None) -> bool:
    """Is the open ``event`` the run that was asked for (``kind`` to ``to``), so that
    resuming it is doing what was asked?"""
    return bool(event["kind"] == kind and (to is None or event["data"].get("to") == to))


def after_earlier(earlier: Outcome | None, outcome: Outcome) -> Outcome:
    """The outcome of a run that first finished another, interrupted one: both said,
    and the status is the asked run's own (a move that finished someone else's move to
    beta has not reached gamma)."""
    if earlier is None:
        return outcome
    first = f"first finished an interrupted {earlier.kind} ({earlier.status}: {earlier.message})"
    return replace(outcome, message=f"{first}; then: {outcome.message}")


def with_notes(verdict: Verdict, notes: list[str] | None) -> Verdict:
    """A round that first finished an earlier run (or removed what one left) says so,
    and is at least a WARNING: something changed that nobody asked this check for."""
    if not notes:
        return verdict
    code = max(verdict.exit_code, WARNING)
    said = "; ".join(notes)
    return replace(verdict, exit_code=code, message=f"{verdict.message} (first: {said})")


def remove_leftover(engine: Engine, service: str, host: dict[str, Any]) -> str | None:
    """Stop or destroy one leftover host; its row says what happened (or why not)."""
    fence_by_stop = engine.config.services[service].policy.fence == "stop"
    stop_only = host["role"] == Role.FENCE and fence_by_stop
    try:
        engine.destroy(host["provider"], host["host_id"], stop_only=stop_only)
    except ProviderError as exc:
        engine.store.set_host(
            host["provider"],
            host["host_id"],
            service=service,
            generation=host["generation"],
            role=host["role"],
            note=str(exc),
        )
        # Said every round (the check is a WARNING meanwhile): an old host that may
        # still serve stale data is not something to be quiet about.
        how = "fenced" if host["role"] == Role.FENCE else "removed"
        return f"{host['role']} host {host['host_id']} on {host['provider']} NOT {how} yet: {exc}"
    engine.store.set_host(
        host["provider"],
        host["host_id"],
        service=service,
        generation=host["generation"],
        role=Role.STOPPED if stop_only else Role.DESTROYED,
        note=f"cleaned up after {host['role']}",
    )
    return None


def owned(engine: Engine, host: dict[str, Any]) -> bool:
    """Is a candidate/drill host still being worked on by a live run?"""
    for raw in engine.store.events(host["service"], limit=20):
        event = Event.from_dict(raw)
        current = event.data.host
        if event.status == "in_progress" and current and current.host_id == host["host_id"]:
            return event.kind != "drill" or pid_alive(event.data.pid)
    return False


def settle_drills(engine: Engine, service: str) -> None:
    """Tear down the hosts of drills whose process died, and close their events."""
    for raw in engine.store.events(service, limit=50, kinds=("drill",)):
        event = Event.from_dict(raw)
        if event.status != "in_progress" or pid_alive(event.data.pid):
            continue
        host = event.data.host
        if host:
            try:
                engine.destroy(host.provider, host.host_id)
                engine.store.set_host(
                    host.provider,
                    host.host_id,
                    service=service,
                    generation=0,
                    role=Role.DESTROYED,
                    note="drill interrupted",
                )
            except ProviderError:
                pass
        engine.store.update_event(
            event.id,
            None,
            status="failed",
            reason=f"{event.reason} (interrupted; host torn down)",
        )


def adoptable(engine: Engine, service: str, generation: int) -> Host | None:
    """After the state was lost: the host the providers still run for ``service`` (found
    by its tags) that should go on serving. The host DNS points at comes first when it
    is healthy, since it is the one taking writes; otherwise the newest healthy one.
    Every other host of the service that is found is queued to be fenced, so nothing
    the toolkit made is left orphaned."""
    found: list[Host] = []
    for name in engine.config.service_providers(service):
        try:
            found += engine.provider(name).list_hosts(service)
        except ProviderError:
            continue
    usable = [
        h
        for h in found
        if h.purpose == "serve"
        and h.generation > generation
        and h.state == HostState.RUNNING
        and h.address
    ]
    in_dns = set(_dns_values(engine, service))
    usable.sort(key=lambda h: (h.address in in_dns, h.generation), reverse=True)
    best = next((h for h in usable if h.address and engine.healthy(service, h.address)), None)
    for host in found:
        if host is not best:
            engine.store.set_host(
                host.provider,
                host.id,
                service=service,
                generation=host.generation,
                role=Role.FENCE,
                address=host.address,
                note="found by its tags after state loss",
            )
    return best


def _dns_values(engine: Engine, service: str) -> list[str]:
    """Every address any provider holds for any domain of ``service``."""
    svc, fan = engine.config.services[service], engine.fanout()
    found: list[str] = []
    for domain in svc.domains:
        for name in fan.zones.providers_of(domain):
            values = fan.read(name, domain, svc.record_type)
            if isinstance(values, list):
                found += values
    return found
