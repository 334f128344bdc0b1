"""Finishing what earlier runs left: interrupted events, hosts still to be fenced,
drill hosts of a crashed drill, candidates nobody owns, and after the state was lost,
the hosts the providers still run for a service (found by their tags)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from failover.engine.journal import Event
from failover.engine.journal import Role
from providers.base import Host
from providers.base import HostState
from providers.base import ProviderError
from providers.util import pid_alive

if TYPE_CHECKING:
    from failover.engine import Engine

_LEFTOVER = (Role.FENCE, Role.CANDIDATE, Role.DRILL)


def settle(engine: Engine, service: str) -> list[str]:
    """Finish an interrupted event of ``service`` and remove the hosts it left."""
    notes: list[str] = []
    event = engine.store.open_event(service)
    if event is not None:
        outcome = engine.run(service, event["kind"], reason=event["reason"] or "resume")
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
        return None
    engine.store.set_host(
        host["provider"],
        host["host_id"],
        service=service,
        generation=host["generation"],
        role=Role.STOPPED if stop_only else Role.DESTROYED,
        note=f"cleaned up after {host['role']}",
    )
    return f"{host['role']} host {host['host_id']} on {host['provider']} removed"


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
