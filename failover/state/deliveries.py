"""The notification journal of the SQLite store: one row per (event key, target).

Kept out of :mod:`failover.state.sqlite` so that module stays one room; the store class
mixes these methods in. Another backend (etcd) offers the same methods.

Besides the deliveries proper, two kinds of bookkeeping row live here (target ``-``):
an ``incident`` (see :mod:`failover.delivery`) and an ``outbox`` row, written in the
transaction that journals the end of a run the operators are told about, so that a
crash right after it cannot lose the notice: the next run's notifier sends it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from failover.redact import redact
from failover.redact import redact_doc
from failover.state.delivery_prune import FINISHED
from failover.state.delivery_prune import prunable

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
  key TEXT NOT NULL,
  target TEXT NOT NULL,
  event TEXT NOT NULL,
  service TEXT NOT NULL,
  incident TEXT,
  body TEXT NOT NULL,
  status TEXT NOT NULL,
  rounds INTEGER NOT NULL DEFAULT 0,
  detail TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (key, target)
);
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (status, service);
"""


# The kinds of run whose end is a notice (failover, failover_failed, move).
RUN_KINDS = ("failover", "move")
OUTBOX = "outbox"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def claimer() -> str:
    """Who is sending a claimed delivery (kept in its ``detail`` while it is
    ``sending``): a later run tells a crashed sender from a live one by it."""
    return f"sending: {socket.gethostname()}:{os.getpid()}"


def interrupted(sender: str) -> str:
    return f"interrupted: {sender.removeprefix('sending: ')} ended mid-send"


def outbox_row(event_id: int, service: str) -> dict[str, Any]:
    """The record that stands for "tell the operators how run ``event_id`` ended"."""
    return {
        "key": f"run:{event_id}",
        "target": "-",
        "event": OUTBOX,
        "service": service,
        "incident": None,
        "body": {"event_id": event_id},
        "status": "queued",
        "rounds": 0,
        "detail": "",
    }


class SqliteDeliveries:
    """Mixed into :class:`failover.state.sqlite.SqliteStore`."""

    db: sqlite3.Connection
    tx: Callable[[], AbstractContextManager[sqlite3.Connection]]  # the store's transaction
    outbox_kinds: tuple[str, ...] = ()  # set by open_store when `notify:` has targets

    def _outbox(self, db: sqlite3.Connection, event_id: int) -> None:
        """Inside the transaction that ends ``event_id``: queue its notice."""
        row = db.execute("SELECT service, kind FROM events WHERE id=?", (event_id,)).fetchone()
        if row is None or row["kind"] not in self.outbox_kinds:
            return
        out = outbox_row(event_id, row["service"])
        now = _now()
        db.execute(
            "INSERT OR IGNORE INTO deliveries (key, target, event, service, incident, body,"
            " status, rounds, detail, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (*(out[k] for k in ("key", "target", "event", "service", "incident")),
             json.dumps(out["body"]), out["status"], 0, "", now, now),
        )  # fmt: skip

    def claim_delivery(
        self,
        key: str,
        target: str,
        *,
        event: str,
        service: str,
        body: dict[str, Any],
        incident: str | None,
        retry_rounds: int,
    ) -> dict[str, Any] | None:
        """Claim the sending of notice ``key`` to ``target``, in one transaction: a new
        one, or a ``failed`` one with rounds left (``rounds`` counts the tries). None
        when it was sent, is being sent or was given up: a notice never goes twice."""
        now = _now()
        with self.tx() as db:
            row = db.execute(
                "SELECT * FROM deliveries WHERE key=? AND target=?", (key, target)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO deliveries (key, target, event, service, incident, body, status,"
                    " rounds, detail, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?, 'sending', 1, ?, ?, ?)",
                    (key, target, event, service, incident, json.dumps(redact_doc(body)),
                     claimer(), now, now),
                )  # fmt: skip
            elif row["status"] == "failed" and row["rounds"] <= retry_rounds:
                db.execute(
                    "UPDATE deliveries SET status='sending', rounds=rounds+1, detail=?,"
                    " updated_at=? WHERE key=? AND target=?",
                    (claimer(), now, key, target),
                )
            else:
                return None
            claimed = db.execute(
                "SELECT * FROM deliveries WHERE key=? AND target=?", (key, target)
            ).fetchone()
        return _delivery(claimed)

    def finish_delivery(self, key: str, target: str, status: str, detail: str) -> None:
        """Journal how a claimed delivery ended: ``sent``, ``failed`` or ``gave_up``
        (or an incident's ``open`` / ``resolved``), and why."""
        with self.tx() as db:
            db.execute(
                "UPDATE deliveries SET status=?, detail=?, updated_at=? WHERE key=? AND target=?",
                (status, redact(detail)[:2000], _now(), key, target),
            )

    def requeue_delivery(self, key: str, target: str, sender: str, retry_rounds: int) -> bool:
        """A delivery left ``sending`` by ``sender``, a process that ended before it
        finished: ``failed`` again (retried like any failed one), or ``gave_up`` when it
        has no rounds left. False when it is no longer that sender's (someone else
        requeued or finished it)."""
        with self.tx() as db:
            row = db.execute(
                "SELECT rounds FROM deliveries WHERE key=? AND target=? AND status='sending'"
                " AND detail=?",
                (key, target, sender),
            ).fetchone()
            if row is None:
                return False
            status = "failed" if row["rounds"] <= retry_rounds else "gave_up"
            db.execute(
                "UPDATE deliveries SET status=?, detail=?, updated_at=? WHERE key=? AND target=?",
                (status, interrupted(sender), _now(), key, target),
            )
        return True

    def prune_deliveries(self, now: float | None = None) -> int:
        """Forget the finished deliveries :func:`prunable` names; how many."""
        with self.tx() as db:
            rows = db.execute(
                "SELECT key, target, event, status, incident, updated_at FROM deliveries"
            ).fetchall()
            gone = prunable([dict(r) for r in rows], now)
            marks = ",".join("?" * len(FINISHED))
            db.executemany(
                f"DELETE FROM deliveries WHERE key=? AND target=? AND status IN ({marks})",
                [(key, target, *FINISHED) for key, target in gone],
            )
        return len(gone)

    def deliveries(
        self,
        *,
        service: str | None = None,
        status: str | None = None,
        event: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Journaled deliveries, newest first, filtered by what is given."""
        where, args = _filters(service=service, status=status, event=event)
        sql = f"SELECT * FROM deliveries {where} ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return [_delivery(r) for r in self.db.execute(sql, (*args, limit)).fetchall()]


def _filters(**given: str | None) -> tuple[str, list[str]]:
    parts = [(f"{name}=?", value) for name, value in given.items() if value is not None]
    if not parts:
        return "", []
    return "WHERE " + " AND ".join(p for p, _ in parts), [v for _, v in parts if v is not None]


def _delivery(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["body"] = json.loads(out.get("body") or "{}")
    return out
