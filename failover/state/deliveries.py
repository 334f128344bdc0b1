"""The notification journal of the SQLite store: one row per (event key, target).

Kept out of :mod:`failover.state.sqlite` so that module stays one room; the store class
mixes these methods in. Another backend (etcd) offers the same three methods.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from failover.redact import redact
from failover.redact import redact_doc

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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SqliteDeliveries:
    """Mixed into :class:`failover.state.sqlite.SqliteStore`."""

    db: sqlite3.Connection
    tx: Callable[[], AbstractContextManager[sqlite3.Connection]]  # the store's transaction

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
                    " rounds, created_at, updated_at) VALUES (?,?,?,?,?,?, 'sending', 1, ?, ?)",
                    (key, target, event, service, incident, json.dumps(redact_doc(body)), now, now),
                )
            elif row["status"] == "failed" and row["rounds"] <= retry_rounds:
                db.execute(
                    "UPDATE deliveries SET status='sending', rounds=rounds+1, updated_at=?"
                    " WHERE key=? AND target=?",
                    (now, key, target),
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
