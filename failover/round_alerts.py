"""What a round finds that nobody would be told of otherwise.

- ``service_down``: the service is down and nothing will move it (``auto_failover:
  false``). A failover that could not be made says so itself (``failover_failed``), an
  open circuit breaker too (``circuit_breaker``).
- ``backup_stale``: the newest backup is older than ``data.max_age`` (or there is none
  though the service has run longer than that).
- ``quorum_lost``: the live watchers are in fewer locations than ``watchers.quorum``
  needs, so a service that goes down moves only on its provider's word.

Each is announced once per incident (:meth:`failover.delivery.Notifier.announce`), and
a service under one of them does not count as healthy for closing its incident, so a
condition that lasts is not announced again every round.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from failover.engine import Engine
    from failover.engine.health import Verdict


def announce_round(engine: Engine, verdicts: Mapping[str, Verdict]) -> None:
    """The round's conditions announced, then its verdicts handed to the notifier."""
    held: set[str] = set()
    if engine.notifier.targets:
        lost = quorum_lost(engine)
        rows = engine.store.services([n for n, v in verdicts.items() if v.state != "unknown"])
        for name, row in rows.items():
            if not row.active:
                continue
            found = conditions(engine, verdicts[name], lost)
            for event, status, reason in found:
                engine.announce(
                    event,
                    name,
                    status=status,
                    reason=reason,
                    origin=row.active,
                    generation=row.generation,
                )
            if found:
                held.add(name)
    engine.notifier.verdicts(verdicts.values(), held)


def conditions(engine: Engine, verdict: Verdict, lost: str | None) -> list[tuple[str, str, str]]:
    """(event, status, reason) of each condition ``verdict``'s service is under."""
    svc = engine.config.services[verdict.service]
    out = []
    if verdict.state == "down" and verdict.action == "none" and not svc.policy.auto_failover:
        out.append(("service_down", "down", verdict.message))
    stale = backup_stale(engine, verdict.service)
    if stale:
        out.append(("backup_stale", "warning", stale))
    if lost:
        out.append(("quorum_lost", "warning", lost))
    return out


def backup_stale(engine: Engine, service: str) -> str | None:
    """Why the service's newest backup is too old to trust, from the state alone."""
    data = engine.config.services[service].data
    if data is None:
        return None
    limit = data.oldest_ok()
    last = (engine.store.data_state(service) or {}).get("last_backup")
    now = time.time()
    if last:
        age = now - float(last["taken"])
        if age <= limit:
            return None
        return f"the newest backup ({last['id']}) is {age:.0f}s old (max_age {limit:g}s)"
    since = engine.store.service(service).active_since
    try:
        live = now - calendar.timegm(time.strptime(since or "", "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None
    if live <= limit:
        return None
    return f"no backup yet, though it has run for {live:.0f}s (max_age {limit:g}s)"


def quorum_lost(engine: Engine) -> str | None:
    """The live watchers cannot make the quorum any more (None with one watcher)."""
    from failover.watchers import EtcdWatchers

    watchers = engine.watchers
    if not isinstance(watchers, EtcdWatchers) or watchers.snap is None:
        return None
    need = watchers.needed(watchers.snap)
    places = sorted(watchers.locations(watchers.snap))
    if need <= len(places):
        return None
    return (
        f"watchers run in {len(places)} location(s) ({', '.join(places)}) but the quorum "
        f"is {need}: a service that goes down moves only on its provider's word; start "
        "watchers elsewhere or lower watchers.quorum"
    )
