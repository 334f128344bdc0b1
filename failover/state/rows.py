"""The rows both stores keep per service, and the counter rule every backend applies."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace
from typing import Any


def now_iso(ts: float | None = None) -> str:
    t = time.gmtime(ts if ts is not None else time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", t)


@dataclass
class ServiceRow:
    service: str
    generation: int
    active: dict[str, Any] | None
    active_since: str | None
    health_state: str
    failures: int
    successes: int
    last_check: str | None
    latency: float | None


@dataclass(frozen=True)
class RoundRecord:
    """One service's part of a probe round, for :meth:`SqliteStore.record_rounds`."""

    service: str
    generation: int
    ok: bool | None  # None: the round could not be trusted; only the time is kept
    latency: float | None
    fall: int
    rise: int
    down_now: bool = False


def counters_after(
    failures: int, successes: int, state: str, rec: RoundRecord
) -> tuple[int, int, str]:
    """The health counters once ``rec`` is added: the one rule every backend applies."""
    if rec.ok is True:
        failures, successes = 0, successes + 1
        if successes >= rec.rise or state == "unknown":
            state = "up"
    elif rec.ok is False:
        failures, successes = failures + 1, 0
        if failures >= rec.fall or rec.down_now:
            state = "down"
    return failures, successes, state


def row_after(row: ServiceRow, rec: RoundRecord) -> ServiceRow:
    """``row`` as :meth:`SqliteStore.record_rounds` will leave it, computed in memory so
    a round decides on every service before it writes them all in one transaction."""
    if row.generation != rec.generation or row.active is None:
        return row
    failures, successes, state = counters_after(row.failures, row.successes, row.health_state, rec)
    return replace(
        row,
        failures=failures,
        successes=successes,
        health_state=state,
        last_check=now_iso(),
        latency=rec.latency,
    )


class RoundsOfOne:
    """``record_round`` for every store, over its own ``record_rounds``."""

    record_rounds: Callable[[list[RoundRecord]], dict[str, ServiceRow]]

    def record_round(
        self,
        name: str,
        generation: int,
        ok: bool | None,
        latency: float | None,
        fall: int,
        rise: int,
        *,
        down_now: bool = False,
    ) -> ServiceRow:
        """Add one probe round to the counters, only if the service is still at
        ``generation`` (a round about a host that was replaced meanwhile is dropped).
        ``ok=None`` means the round could not be trusted: only the time is recorded."""
        rec = RoundRecord(name, generation, ok, latency, fall, rise, down_now)
        return self.record_rounds([rec])[name]


def service_row(name: str, row: sqlite3.Row | dict[str, Any] | None) -> ServiceRow:
    if row is None:
        return ServiceRow(name, 0, None, None, "unknown", 0, 0, None, None)
    active = json.loads(row["active"]) if row["active"] else None
    fields = ("active_since", "health_state", "failures", "successes", "last_check", "latency")
    return ServiceRow(name, row["generation"], active, *(row[f] for f in fields))
