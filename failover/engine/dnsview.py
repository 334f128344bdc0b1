"""What ``status`` and ``doctor`` show of the DNS providers (contract section 12).

``status``: each domain of a service as every provider of its zone serves it, with that
provider's state (``in_sync`` when it holds the active host's address, ``blocked`` when
it refuses us, ``lagging`` otherwise). ``doctor``: each zone's apex NS set as each of its
providers serves it, and the shared fate of the companies behind them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from typing import Any

from failover.engine.fanout import BLOCKED
from failover.engine.fanout import IN_SYNC
from failover.engine.fanout import LAGGING
from failover.engine.fanout import block_key
from failover.probes import ProbeFailed
from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import Check
from providers.base import DnsSettings
from providers.base import ProviderError
from providers.base import Record
from providers.base import dns_class
from providers.base import provider_class

if TYPE_CHECKING:
    from failover.engine import Engine

Doc = dict[str, Any]
Answer = tuple[list[str], int] | None


def records(engine: Engine, services: list[str]) -> dict[str, tuple[Doc | None, list[Doc | None]]]:
    """Each service's first domain (``status``'s ``dns``) and every domain, read from
    every provider, services side by side (bounded): one after another, 200 services
    behind a cloud DNS API make `status` wait for 200 round trips (issue 16)."""
    if len(services) <= 1:
        return {name: _service(engine, name) for name in services}
    width = min(engine.config.watcher.lookups, len(services))
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="failover-dns") as pool:
        return dict(zip(services, pool.map(lambda n: _service(engine, n), services), strict=True))


def _service(engine: Engine, service: str) -> tuple[Doc | None, list[Doc | None]]:
    svc = engine.config.services[service]
    row = engine.store.service(service)
    active = row.active["address"] if row.active else None
    docs = [_domain(engine, d, svc.record_type, active) for d in svc.domains]
    return docs[0], docs


def _domain(engine: Engine, domain: str, rtype: str, active: str | None) -> Doc | None:
    fan = engine.fanout()
    states = engine.store.provider_states()
    first: Record | None = None
    error = ""
    providers: dict[str, Doc] = {}
    for name in fan.zones.providers_of(domain):
        try:
            found = fan.backend(name).get_record(domain, rtype)
        except ProviderError as exc:
            state = BLOCKED if isinstance(exc, AccountBlocked) else LAGGING
            providers[name] = {"values": None, "state": state, "error": str(exc)}
            error = error or str(exc)
            continue
        values = sorted(found.values) if found else []
        first = first or found
        if states.get(block_key(name), {}).get("state") == BLOCKED:
            state = BLOCKED  # it answers reads but refused our last write
        elif active is None or values == [active]:
            state = IN_SYNC
        else:
            state = LAGGING
        providers[name] = {"values": values, "state": state}
    if first is None and not error:
        return (
            None if len(providers) <= 1 else {"name": domain, "type": rtype, "providers": providers}
        )
    doc: Doc = first.to_dict() if first else {"name": domain, "type": rtype, "error": error}
    doc["name"] = domain
    doc["providers"] = providers
    return doc


def resolver(engine: Engine, service: str, address: str) -> Callable[[], Answer]:
    """What ``health.dns`` asks when it names no server: every provider of every domain
    of ``service``, each through its own read (an RFC 2136 server directly, an API
    backend through its API). It fails when a domain has no provider answering
    ``address`` (nobody reaches the service by that name); a provider serving another
    address is named in the message then, and repaired by the rounds otherwise."""
    svc, fan = engine.config.services[service], engine.fanout()

    def resolve() -> Answer:
        found: Answer = None
        for domain in svc.domains:
            answers: dict[str, list[str] | ProviderError] = {
                name: fan.read(name, domain, svc.record_type)
                for name in fan.zones.providers_of(domain)
            }
            if not any(a == [address] for a in answers.values()):
                shown = "; ".join(
                    f"{n}: {', '.join(a) or 'no record' if isinstance(a, list) else a}"
                    for n, a in answers.items()
                )
                raise ProbeFailed(f"{domain}: no DNS provider answers {address} ({shown})")
            found = found or ([address], fan.zones.settings[fan.zones.providers_of(domain)[0]].ttl)
        return found

    return resolve


# --------------------------------------------------------------------------- doctor


def doctor(engine: Engine) -> tuple[AccountReport, list[Doc]]:
    """Every DNS provider checked now: the worst report (the one ``doctor``'s ``dns``
    shows), and one entry per provider."""
    entries: list[Doc] = []
    worst: AccountReport | None = None
    rank = {"available": 0, "unknown": 1, "blocked": 2}
    for name, settings in engine.fanout().zones.settings.items():
        try:
            report = engine.fanout().backend(name).check()
        except ProviderError as exc:
            report = AccountReport("unknown", [Check("api", False, str(exc))], str(exc))
        if worst is None or rank.get(report.state, 1) > rank.get(worst.state, 1):
            worst = report
        entries.append(
            {
                "name": name,
                "type": settings.type,
                "zone": settings.zone,
                "vendor": vendor(settings),
                "state": report.state,
                "reason": report.reason,
                "checks": [c.__dict__ for c in report.checks],
                "ns": _apex_ns(engine, name, settings),
            }
        )
    assert worst is not None
    return worst, entries


def _apex_ns(engine: Engine, name: str, settings: DnsSettings) -> list[str] | None:
    try:
        found = engine.fanout().backend(name).get_record(settings.zone, "NS")
    except ProviderError:
        return None
    return sorted(v.rstrip(".").lower() for v in found.values) if found else []


def vendor(settings: DnsSettings) -> str:
    """The company that runs a DNS provider: its ``vendor``, or the backend's own."""
    return str(settings.vendor or dns_class(settings.type).vendor or settings.name)


def warnings(engine: Engine, entries: list[Doc]) -> list[str]:
    """A delegation that leaves out a provider of the zone, a zone held by one company,
    a DNS provider run by the company of a compute provider or store of the zone."""
    zones = engine.fanout().zones
    out: list[str] = []
    for zone, names in zones.names.items():
        mine = [e for e in entries if e["name"] in names]
        out.extend(_delegation(zone, mine))
        companies = {e["vendor"] for e in mine}
        if len(companies) == 1 and companies != {"local"}:
            out.append(
                f"every DNS provider of {zone} is run by {next(iter(companies))}: when that "
                "account is closed nobody can resolve the zone; delegate it to a second company"
            )
    for sname, svc in engine.config.services.items():
        used = {n for d in svc.domains for n in zones.providers_of(d)}
        fates = _fates(engine, sname)
        for name in sorted(used):
            company = vendor(zones.settings[name])
            for what in fates.get(company, []):
                out.append(
                    f"{sname}: the zone {zones.settings[name].zone} is hosted by {company} "
                    f"(DNS provider {name}), like {what}: if that account is closed, {name} "
                    f"goes with it and no failover can repoint {svc.domain} there; keep the "
                    "zone with another company too"
                )
    return out


def _delegation(zone: str, entries: list[Doc]) -> list[str]:
    if len(entries) < 2:
        return []
    out = []
    for e in entries:
        if e["ns"] is None:
            continue
        others = [o for o in entries if o is not e and o["ns"]]
        for other in others:
            if not set(e["ns"]) & set(other["ns"]):
                out.append(
                    f"{zone}: the NS set {e['name']} serves ({', '.join(e['ns']) or 'none'}) "
                    f"names no server of {other['name']} ({', '.join(other['ns'])}): resolvers "
                    f"never ask a provider that is not delegated to; list the name servers of "
                    "every provider at the registrar and in the zone"
                )
    return out


def _fates(engine: Engine, service: str) -> dict[str, list[str]]:
    """The companies a service's hosts and stores depend on, with what they run."""
    config = engine.config
    out: dict[str, list[str]] = {}
    for pname in config.service_providers(service):
        company = provider_class(config.provider_settings()[pname].type).vendor
        if company and company != "local":
            out.setdefault(company, []).append(f"compute provider {pname}")
    for store in config.stores:
        company = {"s3": "aws", "gcs": "google", "azureblob": "microsoft"}.get(store.type, "")
        if company:
            out.setdefault(company, []).append(f"store {store.name}")
    return out
