"""Which rows of the notification journal are old enough to forget.

A watcher (or a cron ``check`` every minute) journals every delivery; without pruning
the journal grows for as long as the service lives. Both backends (SQLite's
``deliveries`` table, etcd's ``dlv/`` records) drop the same rows, chosen here:

- only finished rows: ``sent``, ``gave_up``, an outbox row ``done``, an incident
  ``resolved``. A row ``queued``, ``sending`` or ``failed`` (still being retried) and an
  ``open`` incident are never dropped;
- never a row of an incident still open: its rows are what keeps a condition seen
  every round from being sent again, and tell who gets the ``resolved``;
- of the rest, those last changed more than :data:`KEEP_DAYS` days ago, and those past
  the newest :data:`KEEP_PER_TARGET` of their target (a chatty event cannot fill the
  journal within the days either).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

KEEP_DAYS = 30
KEEP_PER_TARGET = 1000
FINISHED = ("sent", "gave_up", "done", "resolved")
EVERY = 3600.0  # a long-running watcher prunes at most once an hour


def _epoch(stamp: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return 0.0  # unreadable: as old as can be (it is finished, or it is kept anyway)


def prunable(rows: Iterable[Mapping[str, Any]], now: float | None = None) -> list[tuple[str, str]]:
    """The (key, target) of each row of ``rows`` to drop (each row has ``key``,
    ``target``, ``event``, ``status``, ``incident`` and ``updated_at``)."""
    rows = list(rows)
    cutoff = (time.time() if now is None else now) - KEEP_DAYS * 86400
    still_open = {r["key"] for r in rows if r["event"] == "incident" and r["status"] == "open"}
    finished = [r for r in rows if r["status"] in FINISHED and r.get("incident") not in still_open]
    finished.sort(key=lambda r: str(r["updated_at"]), reverse=True)
    seen: dict[str, int] = {}
    out = []
    for row in finished:
        seen[row["target"]] = seen.get(row["target"], 0) + 1
        if seen[row["target"]] > KEEP_PER_TARGET or _epoch(str(row["updated_at"])) < cutoff:
            out.append((str(row["key"]), str(row["target"])))
    return out
