"""The message side of the RFC 2136 backend: absolute names, values in the server's own
text form, and the UPDATE message that carries many changes. No I/O here: sending,
answers and errors live in :mod:`providers.dns.rfc2136`, kept under the size limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

from providers.base import ProviderError
from providers.base import Record


def absolute(name: str, zone: str) -> str:
    """``www`` / ``www.example.test`` / ``www.example.test.`` -> ``www.example.test.``"""
    name = name.strip()
    zone = zone.strip().rstrip(".")
    if name.endswith("."):
        return name
    if name in ("@", ""):
        return zone + "."
    lowered = name.lower()
    if lowered == zone.lower() or lowered.endswith("." + zone.lower()):
        return name + "."
    return f"{name}.{zone}."


def rdata_values(rrset: Any) -> list[str]:
    return sorted(rdata.to_text() for rdata in rrset)


def canonical(rtype: str, values: Sequence[str], provider: str = "") -> list[str]:
    """Values in the server's text form, so ``expect`` compares like with like."""
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    out = []
    for value in values:
        try:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), value)
        except Exception as exc:  # dnspython raises several syntax errors
            raise ProviderError(
                f"{value!r} is not a valid {rtype} value: {exc}", provider=provider
            ) from None
        out.append(rdata.to_text())
    return sorted(out)


class Change(NamedTuple):
    """A :class:`RecordChange` in the server's terms: absolute name, canonical values."""

    fqdn: str
    rtype: str
    wanted: list[str]
    ttl: int
    expected: list[str] | None

    @property
    def label(self) -> str:
        return f"{self.fqdn.rstrip('.')} {self.rtype}"

    def record(self, found: Record | None) -> Record:
        return found or Record(self.fqdn.rstrip("."), self.rtype, [], 0)


def update_message(zone: str, key: tuple[Any, Any, Any], batch: Sequence[Change]) -> Any:
    """One signed UPDATE for every change of ``batch``. The server checks all the
    prerequisites before it changes anything, and then applies the whole message as a
    unit: resolvers never see a name without its address, and one failed condition
    changes nothing at all."""
    import dns.rdataset
    import dns.update

    keyring, keyname, algorithm = key
    update = dns.update.UpdateMessage(
        zone, keyring=keyring, keyname=keyname, keyalgorithm=algorithm
    )
    for change in batch:
        if change.expected:
            # "RRset exists (value dependent)": the whole set must be exactly this.
            rdataset = dns.rdataset.from_text("IN", change.rtype, 0, *change.expected)
            update.present(change.fqdn, rdataset)
        elif change.expected is not None:
            update.absent(change.fqdn, change.rtype)
        update.delete(change.fqdn, change.rtype)
        if change.wanted:
            rdataset = dns.rdataset.from_text("IN", change.rtype, change.ttl, *change.wanted)
            update.add(change.fqdn, rdataset)
    return update
