"""The ``dns:`` section as a list of named backends, and the zones the services' domains
belong to (contract section 12).

``dns:`` is one mapping (one backend, named after its type) or a list of them. Several
backends may serve one zone (the zone delegated to two companies): each domain belongs to
the most specific configured zone that contains it, and every backend of that zone gets
every change of it. :mod:`failover.config` calls :func:`dns_problems` and
:func:`domain_problems`; the rest of the engine asks :class:`Zones`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from failover.checks import NAME as _NAME
from failover.checks import Problem
from failover.checks import dns_name_problem
from providers.base import DnsProvider
from providers.base import DnsSettings
from providers.base import UnknownType
from providers.base import dns_class
from providers.base import known_types


def normal_domain(value: str) -> str:
    """``value`` lowercased without its final dot; ValueError when it is not a DNS name."""
    given = value
    value = value.rstrip(".").lower()
    problem = dns_name_problem(value)
    if problem:
        # Quoted as written: a lowercased secret would slip past redaction (issue 3).
        raise ValueError(f"{given!r} {problem}")
    return value


def service_domains(domain: str, domains: Sequence[str]) -> tuple[str, list[str]]:
    """``domain:`` and ``domains:`` as (the first domain, every domain): either form, or
    both when ``domain`` is the first of ``domains``."""
    if domains and domain and domain != domains[0]:
        raise ValueError("`domain` and `domains` disagree: give `domains` alone")
    every = list(domains) or ([domain] if domain else [])
    if not every:
        raise ValueError("needs `domain` (or `domains`): the name users reach")
    if len(set(every)) != len(every):
        raise ValueError("`domains` lists a name twice")
    return every[0], every


def _entries(raw: Any) -> tuple[list[Any], bool]:
    """The backends as a list, and whether the file gave a list (for the error paths)."""
    if isinstance(raw, list):
        return raw, True
    return [raw], False


def shape_problems(raw: Any) -> list[Problem]:
    """``dns:`` is a mapping or a list of mappings, said at its own path: pydantic would
    name the branches of the field's union (``dns.dict[str,any]: ...``)."""
    settings = "must be a mapping of settings (`type: ...`, `zone: ...`)"
    if isinstance(raw, list):
        return [
            (("dns", i), settings) for i, entry in enumerate(raw) if not isinstance(entry, dict)
        ]
    return [] if isinstance(raw, dict) else [(("dns",), f"{settings}, or a list of them")]


def dns_problems(
    raw: Any, problems: list[Problem], message: Callable[[Any], str]
) -> list[DnsSettings]:
    """Each backend's settings, validated by its own type's model and named (a single
    mapping is named after its type)."""
    entries, listed = _entries(raw)
    if not entries:
        problems.append((("dns",), "no DNS provider: a zone with no provider cannot be moved"))
        return []
    out: list[DnsSettings] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        loc: tuple[Any, ...] = ("dns", index) if listed else ("dns",)
        settings = _one(entry, loc, problems, message)
        if settings is None:
            continue
        if settings.name in seen:
            problems.append(((*loc, "name"), f"duplicate DNS provider name {settings.name!r}"))
            continue
        seen.add(settings.name)
        problems.extend(_zone_problems(settings, loc))
        out.append(settings)
    return out


def _one(
    entry: Any, loc: tuple[Any, ...], problems: list[Problem], message: Callable[[Any], str]
) -> DnsSettings | None:
    kind = entry.get("type") if isinstance(entry, dict) else None
    if not isinstance(kind, str):
        problems.append(((*loc, "type"), f"required, one of: {', '.join(known_types(True))}"))
        return None
    name = entry.get("name", kind)
    if not isinstance(name, str) or not re.fullmatch(_NAME, name):
        why = "lowercase letters, digits and '-', starting with a letter"
        problems.append(((*loc, "name"), why))
        return None
    try:
        dcls: type[DnsProvider] = dns_class(kind)
        return dcls.Settings.model_validate({**entry, "name": name})
    except UnknownType as exc:
        problems.append(((*loc, "type"), str(exc)))
    except ValidationError as exc:
        problems.extend(((*loc, *err["loc"]), message(err)) for err in exc.errors())
    return None


def _zone_problems(dns: DnsSettings, loc: tuple[Any, ...]) -> list[Problem]:
    # The zone names a file in the state directory (`dns: local`) and a zone at the DNS
    # provider: `../../x` wrote outside the state directory (issue 11).
    zone = dns.zone.rstrip(".").lower()
    problem = dns_name_problem(zone) if dns.zone else "is empty"
    if problem or "*" in zone:
        return [((*loc, "zone"), f"{dns.zone!r} {problem or 'is not a DNS name'}")]
    if not 0 <= dns.ttl <= 2**31 - 1:
        return [((*loc, "ttl"), "must be between 0 and 2147483647 seconds")]
    return []


def domain_problems(
    dns: list[DnsSettings], domains: dict[str, list[str]], listed: dict[str, bool]
) -> list[Problem]:
    """A domain that no configured zone contains. ``listed[service]``: the service gave
    ``domains:`` (the path names the entry), else ``domain:``."""
    zones = Zones(dns)
    out: list[Problem] = []
    for sname, names in domains.items():
        for i, domain in enumerate(names):
            if zones.zone_of(domain) is None:
                field = ("domains", i) if listed[sname] else ("domain",)
                where = ("services", sname, *field)
                known = ", ".join(sorted(zones.names)) or "none"
                out.append((where, f"{domain} is in no configured zone ({known})"))
    return out


class Zones:
    """Which backends serve which zone."""

    def __init__(self, dns: list[DnsSettings]) -> None:
        self.settings = {d.name: d for d in dns}
        self.names: dict[str, list[str]] = {}
        for d in dns:
            self.names.setdefault(d.zone.rstrip(".").lower(), []).append(d.name)

    def zone_of(self, domain: str) -> str | None:
        """The most specific configured zone containing ``domain``."""
        found = [z for z in self.names if domain == z or domain.endswith("." + z)]
        return max(found, key=len) if found else None

    def providers_of(self, domain: str) -> list[str]:
        zone = self.zone_of(domain)
        return list(self.names.get(zone, [])) if zone else []
