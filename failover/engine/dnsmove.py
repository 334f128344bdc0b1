"""The cutover step's DNS: every domain of the service on every provider of its zone,
decided by section 12's rules.

- Each write is conditional on the record still pointing at the old host: a provider
  where someone else moved it is ``lagging`` with the conflict, never overwritten.
- The step goes on when every domain has at least one provider holding the new address
  (the ones that lag or refuse us are named, journaled and repaired by the next rounds).
- Otherwise the providers that took the new address are set back, conditionally, and
  the step fails: the run rolls back as it always did, the old host still in DNS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from failover.engine.fanout import BLOCKED
from failover.engine.fanout import LAGGING
from failover.engine.fanout import Write
from failover.engine.journal import StepFailed
from failover.state import LeaseLost
from providers.base import RecordChange

if TYPE_CHECKING:
    from failover.engine.runner import Run


def cutover(run: Run, address: str) -> str:
    """Point every domain of the run's service at ``address``: the step's detail, or
    StepFailed (after setting back what was changed), or LeaseLost when a newer move
    won meanwhile."""
    svc, fan = run.svc, run.e.fanout()
    old = [run.origin.address] if run.origin and run.origin.address else None
    rtype = svc.record_type.upper()
    changes = [RecordChange(d, rtype, [address], 0, old) for d in svc.domains]
    writes, together = fan.apply(changes)
    run.data.extra["dns"] = outcomes(writes)
    run.save()
    for w in writes:
        if w.state == LAGGING:
            fan.mark(w.provider, LAGGING, f"{w.domain}: {w.error}")
    for name in sorted({w.provider for w in writes if w.refused}):
        why = next(w.error for w in writes if w.refused and w.provider == name)
        run.e.announce("dns_provider_blocked", run.service, reason=f"{name}: {why}")
    missing = [d for d in svc.domains if not any(w.holds_new for w in writes if w.domain == d)]
    if missing:
        if any(w.conflict for w in writes):
            row = run.store.service(run.service)
            if row.generation != run.data.expected_generation:
                raise LeaseLost(
                    f"{run.service} moved meanwhile (generation {row.generation}); this run stops"
                )
        set_back = _set_back(run, writes, address, old)
        if all(w.state == BLOCKED for w in writes if w.domain in missing):
            # Refused us, maybe for our own clock (TSIG's time) or path: another watcher
            # may be let in, and a leader that keeps the lead keeps the service down.
            run.e.watchers.resign(hold=True)
        raise StepFailed(_failure(run, writes, missing, address, old) + set_back)
    batch = f"; one DNS change with {together - 1} other cutovers" if together > 1 else ""
    names = ", ".join(svc.domains)
    return f"{names} {svc.record_type} -> {address} ({detail(writes)}{batch})"


def outcomes(writes: list[Write]) -> dict[str, dict[str, str]]:
    """``{domain: {provider: "updated|in_sync|blocked|lagging: <error>"}}``: the journal's
    record of a fan-out."""
    out: dict[str, dict[str, str]] = {}
    for w in writes:
        out.setdefault(w.domain, {})[w.provider] = w.label()
    return out


def detail(writes: list[Write]) -> str:
    """Each provider's outcome, once per provider when every domain went alike."""
    by_provider: dict[str, set[str]] = {}
    for w in writes:
        by_provider.setdefault(w.provider, set()).add(w.label(why=True))
    parts = []
    for provider, labels in by_provider.items():
        if len(labels) == 1:
            parts.append(f"{provider} {next(iter(labels))}")
        else:
            parts.extend(
                f"{provider} {w.domain} {w.label()}" for w in writes if w.provider == provider
            )
    return "; ".join(parts)


def _failure(
    run: Run, writes: list[Write], missing: list[str], address: str, old: list[str] | None
) -> str:
    svc = run.svc
    conflicts = [w for w in writes if w.conflict and w.domain in missing]
    if conflicts and len(conflicts) == len([w for w in writes if w.domain in missing]):
        w = conflicts[0]
        values = w.values if w.values else "no record"
        return (
            f"{w.domain} {svc.record_type} now answers {values} on {w.provider}, neither the "
            f"old host ({', '.join(old or ['none'])}) nor the new one ({address}): another "
            "writer changed it; DNS left alone. Find out who (another watcher with its own "
            "state?) and run `failover status`"
        )
    blocked = all(w.state == BLOCKED for w in writes if w.domain in missing)
    why = "every DNS provider refuses us" if blocked else "DNS update failed"
    return f"{why}: no provider of {', '.join(missing)} holds {address} ({detail(writes)})"


def _set_back(run: Run, writes: list[Write], address: str, old: list[str] | None) -> str:
    """Providers that took ``address`` pointed back at ``old``, each conditional on
    still holding ``address``."""
    took = [w for w in writes if w.holds_new]
    if not took:
        return ""
    if old is None:
        return "; no earlier address to set back: " + ", ".join(f"{w.provider}" for w in took)
    rtype = run.svc.record_type.upper()
    plan: dict[str, list[RecordChange]] = {}
    for w in took:
        plan.setdefault(w.provider, []).append(RecordChange(w.domain, rtype, old, 0, [address]))
    back, _ = run.e.fanout().apply_plan(plan)
    return "; set back: " + ", ".join(f"{w.provider} {w.domain} {w.label()}" for w in back)
