"""``failover destroy SERVICE``: undo a deploy (the quick start, a test service).

Every host of the service goes: the ones the state knows (live, fenced, candidates,
drills) and the ones its providers still carry its tags on, so nothing billable is
left behind. Only when every one of them is gone is the service's record removed; the
journal is kept (``history`` still tells what happened). DNS is not touched: the record
is the operator's, and a zone may hold it for other reasons.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING
from typing import Any

from failover.engine.journal import Role
from failover.state import Lease
from failover.state import LeaseLost
from providers.base import HostState
from providers.base import ProviderError

if TYPE_CHECKING:
    from failover.engine import Engine


def destroy_service(engine: Engine, service: str, *, unlisted_ok: bool = False) -> dict[str, Any]:
    """Destroy every host of ``service`` and forget it; a document of what was done.

    A provider that cannot list its hosts (its API down, the account closed) may still
    hold one the state never knew of: the service is kept, unless ``unlisted_ok`` (the
    operator said ``--yes``), when it is forgotten with a warning naming the provider."""
    lease = engine.store.acquire(f"service:{service}", engine.config.state.lease_ttl)
    if not isinstance(lease, Lease):
        return _doc(service, False, [], [], f"another run holds the lock (pid {lease['pid']})")
    try:
        if engine.store.open_event(service) is not None:
            why = "a run is in progress: let `failover check` finish it first"
            return _doc(service, False, [], [], why)
        destroyed: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        unlisted: list[dict[str, Any]] = []
        for provider, host_id in sorted(_hosts(engine, service, unlisted)):
            try:
                engine.destroy(provider, host_id)
            except ProviderError as exc:
                failed.append({"provider": provider, "host_id": host_id, "error": str(exc)})
                continue
            row = {"provider": provider, "host_id": host_id}
            destroyed.append(row)
            generation = engine.store.service(service).generation
            engine.store.set_host(
                provider, host_id, service=service, generation=generation, role=Role.DESTROYED
            )
        if failed:
            why = "some hosts could not be destroyed; the record is kept: run it again"
            return _doc(service, False, destroyed, failed + unlisted, why)
        names = ", ".join(u["provider"] for u in unlisted)
        if unlisted and not unlisted_ok:
            why = (
                f"{names} could not list its hosts, and may hold one of {service}: the "
                f"record is kept; run it again when it answers, or with --yes to forget "
                f"{service} anyway"
            )
            return _doc(service, False, destroyed, unlisted, why)
        engine.store.forget_service(service)
        doc = _doc(service, True, destroyed, [], "")
        if unlisted:
            doc["warnings"] = [
                f"{u['provider']} could not list its hosts "
                f"({u['error'].removeprefix('cannot list: ')}): a host of {service} it "
                "holds is not destroyed; check its console"
                for u in unlisted
            ]
            doc["unlisted"] = unlisted
        return doc
    finally:
        with contextlib.suppress(LeaseLost):
            engine.store.release(lease)


def _hosts(engine: Engine, service: str, failed: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """What the state knows of, and what each provider still has tagged for ``service``."""
    known = {
        (h["provider"], h["host_id"])
        for h in engine.store.hosts(service)
        if h["role"] != Role.DESTROYED
    }
    providers = set(engine.config.service_providers(service)) | {p for p, _ in known}
    for name in sorted(providers):
        if name not in engine.config.provider_settings():
            continue
        try:
            hosts = engine.provider(name).list_hosts(service)
        except ProviderError as exc:
            failed.append({"provider": name, "host_id": None, "error": f"cannot list: {exc}"})
            continue
        known |= {(name, h.id) for h in hosts if h.state != HostState.TERMINATED}
    return known


def _doc(
    service: str,
    ok: bool,
    destroyed: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    why: str,
) -> dict[str, Any]:
    return {"service": service, "ok": ok, "destroyed": destroyed, "failed": failed, "why": why}
