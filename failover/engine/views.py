"""The documents the engine shows: plan, status, doctor, history. They read; they never
move anything. Rendering them for people is :mod:`failover.output`'s job."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from failover.data import plane as data_plane
from failover.engine import dnsview
from failover.probes import reach
from failover.render import host_name
from failover.state import StateError
from failover.state.sqlite import place
from providers.base import AccountReport
from providers.base import Check
from providers.base import ProviderError
from providers.base import provider_class

if TYPE_CHECKING:
    from failover.engine import Engine


def plan(engine: Engine, service: str, kind: str, to: str | None = None) -> dict[str, Any]:
    """What a run of ``kind`` would do now, step by step, without doing it."""
    row = engine.store.service(service)
    current = row.active["provider"] if row.active else None
    selection = engine.select(service, kind, to, current)
    target = selection.usable[0] if selection.usable else None
    svc = engine.config.services[service]
    gen = row.generation + 1
    restore = _restore_preview(engine, service) if target else None
    candidates = ", ".join(f"{c.provider} ({c.reason})" for c in selection.candidates)
    steps = [
        ("lock", f"take the lock on {service}"),
        ("select", "candidates: " + (candidates or "none")),
        (
            "provision",
            f"create host {host_name(service, gen, target)} on {target}"
            if target
            else "nothing: no usable provider",
        ),
        (
            "wait_ready",
            f"until the provider reports it running (ready_timeout "
            f"{svc.policy.ready_timeout:g}s, then the next candidate)",
        ),
        ("restore", _restore_step(svc.run.setup, svc.run.restore, restore)),
        ("verify", f"{svc.health.rise} good probe rounds against the new host"),
        (
            "cutover",
            f"{svc.domain} {svc.record_type} -> the new address (ttl "
            f"{engine.config.dns_settings().ttl}); generation {row.generation} -> {gen}",
        ),
        (
            "fence",
            f"{svc.policy.fence} {row.active['host_id']} on {current}; out of DNS"
            if row.active
            else "nothing to fence",
        ),
        ("release", "release the lock"),
    ]
    return {
        "service": service,
        "kind": kind,
        "from": place(row.active),
        "to": target,
        "possible": target is not None,
        "candidates": [c.to_dict() for c in selection.candidates],
        "steps": [{"name": n, "does": d} for n, d in steps],
        "generation": row.generation,
        **({"restore": restore} if svc.data is not None else {}),
    }


def _restore_preview(engine: Engine, service: str) -> dict[str, Any] | None:
    """The backup a move would restore now: the newest complete one, from the first of
    the service's stores that holds it (as the restore step picks it); None without
    ``data:``."""
    if engine.config.services[service].data is None:
        return None
    try:
        backups = data_plane.catalog(engine, service)
    except ProviderError as exc:
        return {"backup": None, "error": str(exc)}
    if not backups:
        return {"backup": None}
    newest = backups[0]
    taken = datetime.fromisoformat(newest["taken_at"]).timestamp()
    return {
        "backup": newest["id"],
        "store": newest["stores"][0],
        "taken_at": newest["taken_at"],
        "age_s": round(max(0.0, time.time() - taken), 1),
        "bytes": newest["bytes"],
    }


def _restore_step(setup: list[str], commands: list[str], restore: dict[str, Any] | None) -> str:
    does = f"setup ({len(setup)} commands) and restore ({len(commands)} commands)"
    if restore is not None:
        if restore.get("error"):
            does = f"{does}; data: {restore['error']}"
        elif restore["backup"] is None:
            does = f"{does}; data: no backup yet, the service starts empty"
        else:
            does = (
                f"{does}; data: backup {restore['backup']} from store {restore['store']} "
                f"(taken {restore['taken_at']}, {restore['age_s']:.0f}s old, "
                f"{restore['bytes']} bytes)"
            )
    return f"{does}; the service port answers"


def status(engine: Engine, services: list[str], *, refresh: bool = True) -> list[dict[str, Any]]:
    """Where each service lives, its health, DNS, providers and last run."""
    names = {n for s in services for n in engine.config.service_providers(s)}
    if refresh:
        for name in names:
            engine.account(name, fresh=True)
    states = engine.store.provider_states()
    records = dnsview.records(engine, services)
    return [_service_status(engine, name, states, *records[name]) for name in services]


def _service_status(
    engine: Engine,
    name: str,
    states: dict[str, dict[str, Any]],
    record: dict[str, Any] | None,
    domains: list[dict[str, Any] | None],
) -> dict[str, Any]:
    svc = engine.config.services[name]
    row = engine.store.service(name)
    last = engine.store.events(name, limit=1, kinds=("deploy", "failover", "move"))
    active = None
    if row.active:
        active = {
            "provider": row.active["provider"],
            "host_id": row.active["host_id"],
            "address": row.active["address"],
            "port": svc.port,
            "since": row.active_since,
        }
    return {
        "service": name,
        "domain": svc.domain,
        "active": active,
        "health": {
            # Never probed since it went live: nobody has seen it up yet (issue 21).
            "state": row.health_state if row.active and row.last_check else "unknown",
            "consecutive_failures": row.failures,
            "consecutive_successes": row.successes,
            "last_check": row.last_check,
            "latency_s": None if row.latency is None else round(row.latency, 4),
        },
        "dns": record,
        "domains": domains,
        "generation": row.generation,
        "standby": _standby(engine, name),
        "last_event": {
            "kind": last[0]["kind"],
            "status": last[0]["status"],
            "finished_at": last[0]["finished_at"],
        }
        if last
        else None,
        "providers": [
            _provider_state(engine, p, states) for p in engine.config.service_providers(name)
        ],
        **({"data": data} if (data := data_plane.status(engine, name)) is not None else {}),
    }


def _standby(engine: Engine, name: str) -> dict[str, Any] | None:
    """The warm standby (policy.standby: warm) as the state records it."""
    from failover.engine import standby

    host = standby.current(engine, name) if standby.wanted(engine, name) else None
    if host is None:
        return None
    keys = ("provider", "host_id", "address", "generation", "updated_at")
    return {k: host.get(k) for k in keys}


def _provider_state(engine: Engine, name: str, states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    state = states.get(name, {})
    out = {
        "name": name,
        "type": engine.config.provider_settings()[name].type,
        "state": state.get("state", "unknown"),
    }
    if state.get("reason"):
        out["reason"] = state["reason"]
    return out


def doctor(engine: Engine) -> dict[str, Any]:
    """Each provider's account, the DNS zone, the state store and each backup store,
    checked now, each on its own; warnings on shared fate."""
    from failover.engine import doctor_checks

    state = doctor_checks.state_store(engine)
    providers = []
    reports: list[AccountReport] = []
    for name, settings in engine.config.provider_settings().items():
        report = _account(engine, name)
        reports.append(report)
        providers.append(
            {
                "name": name,
                "type": settings.type,
                "state": report.state,
                "reason": report.reason,
                "checks": [c.__dict__ for c in report.checks],
            }
        )
    dns_report, dns_providers = dnsview.doctor(engine)
    failed_checks = [
        c
        for report in (*reports, dns_report)
        for c in report.checks
        if not c.ok and c.level == "error"
    ]
    canaries = _canaries(engine)
    stores = doctor_checks.backup_stores(engine)
    ok = (
        all(p["state"] == "available" for p in providers)
        and dns_report.state == "available"
        and not failed_checks
        and all(c["ok"] for c in canaries)
        and all(part["state"] == "available" for part in (state, *stores))
    )
    dns_settings = engine.config.dns_settings()
    return {
        "ok": ok,
        "state": state,
        "providers": providers,
        "dns": {
            "type": dns_settings.type,
            "zone": dns_settings.zone,
            "state": dns_report.state,
            "reason": dns_report.reason,
            "checks": [c.__dict__ for c in dns_report.checks],
            "providers": dns_providers,
        },
        "stores": stores,
        "canaries": canaries,
        "warnings": warnings(engine)
        + dnsview.warnings(engine, dns_providers)
        + [f"{c['service']}: {c['detail']}" for c in canaries if not c["ok"]],
    }


def _account(engine: Engine, name: str) -> AccountReport:
    """The provider asked now; recorded in the state when the state answers (doctor
    reports a state store that does not on its own line)."""
    try:
        return engine.account(name, fresh=True)
    except StateError:
        try:
            return engine.provider(name).check_account()
        except ProviderError as exc:
            return AccountReport("unknown", [Check("api", False, str(exc))], str(exc))


def _canaries(engine: Engine) -> list[dict[str, Any]]:
    """Each service's ``health.canary``, reached now: one that does not answer leaves the
    watcher unable to tell its own cut-off from an outage (issue 11)."""
    out = []
    for name, svc in engine.config.services.items():
        if svc.health.canary:
            ok, detail = asyncio.run(reach(svc.health.canary, svc.health.timeout))
            out.append({"service": name, "canary": svc.health.canary, "ok": ok, "detail": detail})
    return out


def warnings(engine: Engine) -> list[str]:
    """What the config risks: a watcher or a zone that shares fate with a provider, and
    a TTL longer than the time it takes to notice a failure."""
    config = engine.config
    out: list[str] = []
    here = watcher_vendor()
    for name in config.services:
        for pname in config.service_providers(name):
            vendor = provider_class(config.provider_settings()[pname].type).vendor
            if here and vendor == here:
                out.append(
                    f"{name}: this watcher runs on {here}'s infrastructure, like provider "
                    f"{pname}: if that account is closed the watcher goes with it; run it "
                    "elsewhere too"
                )
    dns_settings = config.dns_settings()
    for name, svc in config.services.items():
        detect = svc.health.interval * svc.health.fall
        if dns_settings.ttl > detect:
            out.append(
                f"{name}: the record's TTL ({dns_settings.ttl}s) is longer than the "
                f"{detect:g}s it takes to detect a failure (interval x fall): clients may "
                f"keep the old address up to {dns_settings.ttl}s after a cutover; lower "
                "dns.ttl"
            )
    from failover.engine.doctor_checks import tolerant

    unread: list[str] = []
    out.extend(tolerant(engine.watchers.warnings, unread))  # several watchers, etcd size
    out.extend(tolerant(lambda: data_plane.warnings(engine), unread))  # one company
    return out + unread


def history(engine: Engine, service: str | None, limit: int) -> list[dict[str, Any]]:
    """The journal, newest first, as ``history --json`` shows it."""
    events = engine.store.events(service, limit=limit)
    for event in events:
        # Candidates that were tried and destroyed before the one that took the service.
        event["attempts"] = event.pop("data", {}).get("attempts", [])
        if event["status"] == "in_progress":
            event["duration_s"] = None
    return events


def watcher_vendor() -> str | None:
    """Which cloud this machine runs on, read from the DMI tables (no network call)."""
    root = Path(os.environ.get("FAILOVER_DMI_DIR", "/sys/class/dmi/id"))
    parts = []
    for name in ("sys_vendor", "bios_vendor", "product_name", "chassis_asset_tag"):
        try:
            parts.append((root / name).read_text(errors="replace").strip().lower())
        except OSError:
            continue
    text = " ".join(parts)
    if "amazon" in text or "ec2" in text:
        return "aws"
    if "google" in text:
        return "google"
    # Azure VMs carry this chassis asset tag; Hyper-V alone is not Azure.
    if "7783-7084-3265-9085-8269-3286-77" in text:
        return "microsoft"
    return None
