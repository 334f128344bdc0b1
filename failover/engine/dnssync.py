"""Drift repair: every DNS provider brought back to the journal (contract section 12).

The journal is the truth: the active host's address is what every provider of every
domain of a live service should hold. A provider that lags (a cutover it missed) or
was blocked, or that someone changed by hand, is read and set to that address, each
write conditional on the value just read. Two things are never overwritten: a record a
newer move of this service wrote (its address is a host of a newer generation; only
``--force`` does, after naming it), and anything while a run of the service is in
progress (the run owns DNS then).

``check``/``watch`` call :func:`dns_round` every round: the providers recorded
``lagging`` or ``blocked`` are retried, and every ``dns_audit`` every provider is read.
A round that finds nothing due costs one read of the provider states.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from failover.engine.fanout import BLOCKED
from failover.engine.fanout import IN_SYNC
from failover.engine.fanout import LAGGING
from failover.engine.fanout import UPDATED
from failover.engine.fanout import block_key
from failover.engine.health import OK
from failover.engine.health import WARNING
from failover.engine.health import Verdict
from providers.base import AccountBlocked
from providers.base import ProviderError
from providers.base import RecordChange

if TYPE_CHECKING:
    from failover.engine import Engine

Confirm = Callable[[list[str]], bool]


@dataclass
class Action:
    """What one provider holds for one domain, and what is to be done about it."""

    service: str
    domain: str
    provider: str
    current: list[str] | None  # None: it could not be read
    state: str  # in_sync | repair | newer | blocked | lagging
    error: str = ""


@dataclass
class ServiceSync:
    service: str
    domains: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    repaired: int = 0

    def put(self, domain: str, provider: str, state: str, error: str = "") -> None:
        self.domains.setdefault(domain, {})[provider] = state
        if error:
            self.errors.setdefault(domain, {})[provider] = error

    def ok(self) -> bool:
        return all(s in (IN_SYNC, UPDATED) for d in self.domains.values() for s in d.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "domains": [
                {"name": d, "providers": p, "errors": self.errors.get(d, {})}
                for d, p in self.domains.items()
            ],
        }


def sync(
    engine: Engine,
    services: list[str],
    *,
    providers: set[str] | None = None,
    force: bool = False,
    confirm: Confirm | None = None,
) -> list[ServiceSync]:
    """Every provider (or ``providers``) of every domain of the live ``services`` set to
    the active host. ``force``: a record a newer move wrote is overwritten too, once
    ``confirm`` accepted the list of what would be."""
    plans = _plans(engine, services, providers)
    newer = [a for actions in plans.values() for a in actions if a.state == "newer"]
    overwrite = force and bool(newer)
    if overwrite and confirm is not None:
        overwrite = confirm([f"{a.provider} {a.domain} {a.current} ({a.error})" for a in newer])
    out = [_execute(engine, s, actions, overwrite) for s, actions in plans.items()]
    _record_states(engine, [a for actions in plans.values() for a in actions], out)
    return out


def _plans(
    engine: Engine, services: list[str], providers: set[str] | None
) -> dict[str, list[Action]]:
    """What every provider holds for every domain of the live ``services``: the state
    read here (a store connection belongs to its thread), the providers read side by
    side, bounded by ``watcher.lookups`` (an audit of 200 services behind a cloud API
    must not cost 200 round trips one after another)."""
    fan = engine.fanout()
    wanted: dict[str, tuple[str, set[str]]] = {}
    reads: list[tuple[str, str, str]] = []
    # One read of the rows and one of the hosts for an audit of every service, not one
    # each per service (issue 28).
    rows = engine.store.services(services)
    every: dict[str, list[dict[str, Any]]] = {}
    for host in engine.store.hosts(services[0] if len(services) == 1 else None):
        every.setdefault(str(host["service"]), []).append(host)
    for service in services:
        row = rows[service]
        if not row.active or engine.store.open_event(service) is not None:
            continue  # not live, or a run owns its DNS right now
        hosts = every.get(service, [])
        newer = {
            str(h["address"])
            for h in hosts
            if h.get("address") and int(h["generation"]) > row.generation
        }
        wanted[service] = (str(row.active["address"]), newer)
        for domain in engine.config.services[service].domains:
            for name in fan.zones.providers_of(domain):
                if providers is None or name in providers:
                    reads.append((service, domain, name))

    def read(item: tuple[str, str, str]) -> list[str] | ProviderError:
        service, domain, name = item
        return fan.read(name, domain, engine.config.services[service].record_type)

    width = max(1, min(engine.config.watcher.lookups, len(reads)))
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="failover-dns") as pool:
        answers = list(pool.map(read, reads))
    out: dict[str, list[Action]] = {s: [] for s in services}
    for (service, domain, name), current in zip(reads, answers, strict=True):
        address, newer = wanted[service]
        out[service].append(_judge(service, domain, name, current, address, newer))
    return out


def _judge(
    service: str,
    domain: str,
    name: str,
    current: list[str] | ProviderError,
    address: str,
    newer: set[str],
) -> Action:
    if isinstance(current, ProviderError):
        state = BLOCKED if isinstance(current, AccountBlocked) else LAGGING
        return Action(service, domain, name, None, state, str(current))
    if sorted(current) == [address]:
        return Action(service, domain, name, current, IN_SYNC)
    if set(current) & newer:
        why = "written by a newer move of the service; `dns sync --force` overwrites it"
        return Action(service, domain, name, current, "newer", why)
    return Action(service, domain, name, current, "repair")


def _execute(engine: Engine, service: str, actions: list[Action], overwrite: bool) -> ServiceSync:
    result = ServiceSync(service)
    svc, fan = engine.config.services[service], engine.fanout()
    row = None  # read when a record is to be written: an audit in sync reads no row
    for a in actions:
        if a.state in (IN_SYNC, BLOCKED, LAGGING) or (a.state == "newer" and not overwrite):
            result.put(a.domain, a.provider, LAGGING if a.state == "newer" else a.state, a.error)
            continue
        row = row or engine.store.service(service)
        # A move committed since the read wins: its own cutover writes these records.
        if row.active is None or engine.store.service(service).generation != row.generation:
            result.put(a.domain, a.provider, LAGGING, "the service moved meanwhile")
            continue
        ttl = fan.zones.settings[a.provider].ttl
        change = RecordChange(
            a.domain, svc.record_type.upper(), [row.active["address"]], ttl, a.current
        )
        write, _ = fan._one(a.provider, change)
        result.put(a.domain, a.provider, write.state, write.error)
        if write.state == UPDATED:
            result.repaired += 1
            fan.count_repair(a.provider)
            held = a.current or "no record"
            engine.log(f"{service}: {a.provider} held {held} for {a.domain}; set to the host")
    if result.repaired:
        engine.announce(
            "dns_drift",
            service,
            reason=f"{result.repaired} DNS record(s) set back to the active host",
        )
    return result


def _record_states(engine: Engine, actions: list[Action], results: list[ServiceSync]) -> None:
    """Each provider read: ``blocked`` when it refused us, ``lagging`` when a record of
    it is still wrong, ``in_sync`` otherwise. A newly blocked one is announced."""
    before = engine.store.provider_states()
    fan = engine.fanout()
    read = {a.provider for a in actions}
    for name in read:
        states = [
            (s, r.errors.get(d, {}).get(name, ""))
            for r in results
            for d, p in r.domains.items()
            for n, s in p.items()
            if n == name
        ]
        blocked = [e for s, e in states if s == BLOCKED]
        lagging = [e for s, e in states if s == LAGGING]
        if blocked:
            state, reason = BLOCKED, blocked[0]
        elif lagging:
            state, reason = LAGGING, lagging[0]
        else:
            state, reason = IN_SYNC, ""
        was = before.get(block_key(name), {}).get("state")
        fan.mark(name, state, reason)
        if state == BLOCKED and was != BLOCKED:
            for r in results:
                engine.announce("dns_provider_blocked", r.service, reason=f"{name}: {reason}")
                break


# --------------------------------------------------------------------------- rounds


def _age(info: dict[str, Any] | None) -> float:
    if not info or not info.get("updated_at"):
        return float("inf")
    try:
        stamp = datetime.fromisoformat(str(info["updated_at"]).replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return time.time() - stamp.timestamp()


def due(engine: Engine) -> set[str]:
    """The DNS providers this round reads: the lagging and blocked ones, and every one
    whose last read is older than ``dns_audit``."""
    states = engine.store.provider_states()
    out = set()
    for name in engine.fanout().names:
        info = states.get(block_key(name))
        if (info or {}).get("state") in (BLOCKED, LAGGING) or _age(info) >= engine.config.dns_audit:
            out.add(name)
    return out


def dns_round(
    engine: Engine, verdicts: dict[str, Verdict], *, dry_run: bool = False
) -> dict[str, Verdict]:
    """``check``/``watch``: the due providers repaired for the services that are up,
    and the verdicts of live services with a blocked or lagging provider turned WARNING."""
    if not dry_run:
        providers = due(engine)
        up = [s for s, v in verdicts.items() if v.state == "up"]
        if providers and up:
            sync(engine, up, providers=providers)
    states = engine.store.provider_states()
    out = {}
    for service, verdict in verdicts.items():
        problem = provider_problem(engine, service, states)
        if problem and verdict.exit_code == OK and engine.store.service(service).active:
            out[service] = replace(
                verdict, exit_code=WARNING, message=f"{verdict.message}; dns: {problem}"
            )
    return out


def provider_problem(engine: Engine, service: str, states: dict[str, dict[str, Any]]) -> str | None:
    """What the operator must know about the DNS providers of ``service``'s zones."""
    zones = engine.fanout().zones
    for domain in engine.config.services[service].domains:
        zone = zones.zone_of(domain)
        for name in zones.providers_of(domain):
            info = states.get(block_key(name)) or {}
            if info.get("state") == BLOCKED:
                return (
                    f"{name} refuses us ({info.get('reason') or 'blocked'}): remove its name "
                    f"servers from {zone}'s delegation at the registrar"
                )
            if info.get("state") == LAGGING:
                return (
                    f"{name} lags ({info.get('reason') or 'not in sync'}): the next rounds "
                    "retry it; `failover dns sync` does now"
                )
    return None
