"""What the watchers look like to an operator: ``status``'s roster and the shared-fate
warnings of ``doctor`` and ``status`` (contract section 7)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from failover.config import Config
    from failover.watchers import EtcdWatchers


def document(w: EtcdWatchers) -> list[dict[str, Any]]:
    """Every watcher as the others see it: name, location, lead, liveness, views."""
    snap = w.read()
    leader = (snap.leader.json() or {}) if snap.leader else {}
    out = []
    for name in sorted(set(snap.roster) | set(snap.members)):
        seen = snap.roster.get(name, {})
        live = snap.members.get(name)
        member = (live.json() or {}) if live else seen
        sees = {svc: (v[name].json() or {}).get("sees", "unknown")
                for svc, v in snap.votes.items() if name in v}  # fmt: skip
        out.append(
            {
                "name": name,
                "location": member.get("location") or seen.get("location"),
                "alive": live is not None,
                "leader": leader.get("name") == name,
                "last_seen": member.get("last_seen") or seen.get("last_seen"),
                "sees": {
                    s: sees.get(s) or seen.get("sees", {}).get(s, "unknown")
                    for s in w.config.services
                },
            }
        )
    return out


def _at(config: Config, location: str, provider: str) -> bool:
    """Is ``location`` the provider's own place (its name, or its company's)?"""
    from providers.base import provider_class

    settings = config.provider_settings().get(provider)
    vendor = getattr(provider_class(settings.type), "vendor", None) if settings else None
    place = location.lower()
    if place == provider or place.startswith(provider + "-"):
        return True
    return bool(vendor) and vendor != "local" and place.split("-")[0] == vendor


def warnings(w: EtcdWatchers) -> list[str]:
    """Shared fate: one location for every watcher, a watcher where the service
    lives, an etcd with fewer than three members."""
    out: list[str] = []
    doc = document(w)
    locations = {str(x["location"]) for x in doc if x["alive"]} or {w.me.location}
    if len(locations) == 1:
        out.append(
            f"every watcher runs in one location ({next(iter(locations))}): one outage "
            "there blinds them all and their votes are one vantage point; run watchers "
            "in at least three places (FAILOVER_LOCATION)"
        )
    for name, row in w.store.services(list(w.config.services)).items():
        provider = (row.active or {}).get("provider")
        shared = [loc for loc in sorted(locations) if provider and _at(w.config, loc, provider)]
        if shared:
            out.append(
                f"{name}: a watcher runs in {shared[0]}, where the service lives "
                f"({provider}): when {provider} fails it loses that vote too; watch "
                "from elsewhere"
            )
    quorum = w.config.watchers.quorum
    if quorum and quorum > len(locations):
        out.append(
            f"watchers.quorum is {quorum} but watchers run in {len(locations)} "
            "location(s): only a provider's own word can move a service; start more "
            "watchers or lower the quorum"
        )
    members = w.store.members()
    if len(members) < 3:
        out.append(
            f"etcd has {len(members)} member(s): losing one stops every watcher from "
            "deciding; run three members in three places"
        )
    return out


def watcher_lines(doc: list[dict[str, Any]] | None) -> list[str]:
    """The watchers as ``status`` prints them for people."""
    if not doc:
        return []
    lines = ["watchers:"]
    for w in doc:
        flags = ("leader, " if w["leader"] else "") + ("alive" if w["alive"] else "gone")
        sees = ", ".join(f"{s} {v}" for s, v in w["sees"].items())
        lines.append(
            f"  {w['name']} in {w['location']} ({flags}, last seen {w['last_seen']}): {sees}"
        )
    return lines
