"""The state of one machine's watchers: a SQLite file in WAL mode.

Every write is one ``BEGIN IMMEDIATE`` transaction, so concurrent cron runs queue up
instead of interleaving. A lease row is the lock: it expires, so a killed process never
blocks the next one, and its token grows with every holder, so a writer that was paused
past its lease is refused (the token is the fencing token of DESIGN.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from failover.redact import redact
from failover.redact import redact_doc
from failover.state.deliveries import SCHEMA as DELIVERIES_SCHEMA
from failover.state.deliveries import SqliteDeliveries
from failover.state.rows import RoundRecord
from failover.state.rows import RoundsOfOne
from failover.state.rows import ServiceRow
from failover.state.rows import counters_after
from failover.state.rows import now_iso
from failover.state.rows import service_row
from providers.util import open_private
from providers.util import pid_alive
from providers.util import private_dir

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS services (
  service TEXT PRIMARY KEY,
  generation INTEGER NOT NULL DEFAULT 0,
  active TEXT,
  active_since TEXT,
  health_state TEXT NOT NULL DEFAULT 'unknown',
  failures INTEGER NOT NULL DEFAULT 0,
  successes INTEGER NOT NULL DEFAULT 0,
  last_check TEXT,
  latency REAL
);
CREATE TABLE IF NOT EXISTS leases (
  name TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  token INTEGER NOT NULL,
  expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  service TEXT NOT NULL,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT,
  origin TEXT,
  target TEXT,
  data TEXT NOT NULL DEFAULT '{}',
  started_at TEXT NOT NULL,
  finished_at TEXT,
  started REAL NOT NULL,
  finished REAL
);
CREATE INDEX IF NOT EXISTS events_service ON events (service, id);
CREATE INDEX IF NOT EXISTS events_open ON events (status) WHERE status='in_progress';
CREATE TABLE IF NOT EXISTS steps (
  event_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '',
  started_at TEXT,
  finished_at TEXT,
  started REAL,
  finished REAL,
  PRIMARY KEY (event_id, name)
);
CREATE TABLE IF NOT EXISTS providers (
  name TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS data (
  service TEXT PRIMARY KEY, doc TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hosts (
  provider TEXT NOT NULL,
  host_id TEXT NOT NULL,
  service TEXT NOT NULL,
  generation INTEGER NOT NULL,
  role TEXT NOT NULL,
  address TEXT,
  note TEXT,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (provider, host_id)
);
"""


class StateError(Exception):
    """The state cannot be read or written. The message says how to recover."""


class LeaseLost(StateError):
    """Another watcher holds the lock now: this one must stop writing at once."""


def place(host: dict[str, Any] | None) -> dict[str, Any] | None:
    """An event's ``from`` or ``to`` as every document shows both: the same keys (the
    journal keeps the live row, with its ``name``, as ``from``)."""
    if not host:
        return None
    return {
        "provider": host.get("provider"),
        "host_id": host.get("host_id"),
        "address": host.get("address"),
    }


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    token: int
    ttl: float


class SqliteStore(SqliteDeliveries, RoundsOfOne):
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "state.db"
        try:
            private_dir(state_dir)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {state_dir}: {exc}") from None
        existed = self.path.exists() and self.path.stat().st_size > 0
        # Made 0600 before SQLite opens it: its -wal and -shm files copy its mode. Only
        # when it does not exist yet: closing any descriptor of a database this process
        # has open drops that connection's POSIX locks and corrupts it (SQLite's FAQ).
        if not self.path.exists():
            with contextlib.suppress(OSError):
                os.close(open_private(self.path, os.O_RDWR | os.O_CREAT))
        try:
            self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA busy_timeout = 30000")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            if existed:
                self._check_integrity()
            self.db.executescript(_SCHEMA + DELIVERIES_SCHEMA)
            with self.tx():
                row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise StateError(
                        f"{self.path} was written by a newer failover (schema {row[0]}); "
                        "upgrade failover to read it"
                    )
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None

    def _corrupt(self, exc: Exception) -> StateError:
        """What went wrong with the state file, said as it is: a read-only or full disk
        is not a corrupt journal, and moving a healthy journal aside would lose it."""
        text = str(exc).lower()
        if "readonly" in text or "read-only" in text or "permission" in text:
            return StateError(
                f"the state file {self.path} cannot be written ({exc}): the directory or "
                "the file is read-only for this user. Nothing was changed and the journal is "
                f"intact; make {self.state_dir} writable (or run as its owner)"
            )
        if "full" in text or "disk i/o" in text or "no space" in text:
            return StateError(
                f"the state file {self.path} cannot be written ({exc}): the disk is full or "
                "failing. Nothing was changed and the journal is intact; free space on "
                f"{self.state_dir}'s file system and run the command again"
            )
        return StateError(
            f"the state file {self.path} is unreadable ({exc}). Nothing was changed. "
            f"Move it aside (mv {self.path} {self.path}.broken) and run `failover deploy`: "
            "it adopts the live host the providers still run (found by its tags) instead "
            "of creating one, and the journal starts anew"
        )

    def _check_integrity(self) -> None:
        try:
            row = self.db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        if row is None or row[0] != "ok":
            raise self._corrupt(Exception(f"integrity check: {row[0] if row else 'no answer'}"))
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
        if not {"meta", "services", "events", "steps", "leases"} <= tables:
            raise self._corrupt(Exception("tables are missing"))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        if self.db.in_transaction:
            # A signal (SIGINT/SIGTERM as KeyboardInterrupt) landed between a BEGIN and
            # its try below: that transaction wrote nothing; the rollback must not fail.
            self.db.execute("ROLLBACK")
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        try:
            yield self.db
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(sqlite3.DatabaseError):
                self.db.execute("ROLLBACK")
            raise self._corrupt(exc) from None
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(sqlite3.DatabaseError):
                self.db.execute("ROLLBACK")
            raise self._corrupt(exc) from None

    # ----------------------------------------------------------------- lease (lock)

    def acquire(self, name: str, ttl: float) -> Lease | dict[str, Any]:
        """Take the lease, or return who holds it."""
        host = socket.gethostname()
        pid = os.getpid()
        owner = f"{host}:{pid}:{uuid.uuid4().hex[:8]}"
        now = time.time()
        with self.tx() as db:
            row = db.execute("SELECT * FROM leases WHERE name=?", (name,)).fetchone()
            held = row is not None and row["expires"] > now
            if held and not (row["host"] == host and not pid_alive(row["pid"])):
                return {
                    "owner": row["owner"],
                    "pid": row["pid"],
                    "host": row["host"],
                    "expires_in": round(row["expires"] - now, 1),
                }
            token = self._next(db, "lease_token")
            db.execute(
                "INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?,?)",
                (name, owner, host, pid, token, now + ttl),
            )
        return Lease(name, owner, token, ttl)

    def renew(self, lease: Lease) -> None:
        with self.tx() as db:
            self._assert_lease(db, lease)
            db.execute(
                "UPDATE leases SET expires=? WHERE name=?", (time.time() + lease.ttl, lease.name)
            )

    def release(self, lease: Lease) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM leases WHERE name=? AND owner=?", (lease.name, lease.owner))

    def _assert_lease(self, db: sqlite3.Connection, lease: Lease | None) -> None:
        if lease is None:
            return
        row = db.execute("SELECT owner, token FROM leases WHERE name=?", (lease.name,)).fetchone()
        if row is None or row["owner"] != lease.owner or row["token"] != lease.token:
            raise LeaseLost(
                f"the lock on {lease.name} was taken over by another watcher; "
                "this run stops without writing"
            )

    def _next(self, db: sqlite3.Connection, counter: str) -> int:
        db.execute(
            "INSERT INTO counters VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value=value+1",
            (counter,),
        )
        return int(db.execute("SELECT value FROM counters WHERE name=?", (counter,)).fetchone()[0])

    # ----------------------------------------------------------------- services

    def service(self, name: str) -> ServiceRow:
        return self.services([name])[name]

    def record_rounds(self, records: list[RoundRecord]) -> dict[str, ServiceRow]:
        """A whole round's counters in one transaction (one fsync, not one per service),
        each only if its service is still at the generation the round probed; the rows
        as they are afterwards, by service."""
        names = list(dict.fromkeys(rec.service for rec in records))
        with self.tx() as db:
            rows = {n: dict(r) for n, r in self._rows(db, names).items()}
            for rec in records:
                row = rows.get(rec.service)
                if row is None or row["generation"] != rec.generation:
                    continue
                row["failures"], row["successes"], row["health_state"] = counters_after(
                    row["failures"], row["successes"], row["health_state"], rec
                )
                row["last_check"], row["latency"], row["changed"] = now_iso(), rec.latency, 1
            db.executemany(
                "UPDATE services SET failures=:failures, successes=:successes, "
                "health_state=:health_state, last_check=:last_check, latency=:latency "
                "WHERE service=:service",
                [row for row in rows.values() if row.get("changed")],
            )
        return {name: service_row(name, rows.get(name)) for name in names}

    def forget_service(self, name: str) -> None:
        """Drop the service's record (``failover destroy``); its journal is kept."""
        with self.tx() as db:
            db.execute("DELETE FROM services WHERE service=?", (name,))

    def services(self, names: list[str]) -> dict[str, ServiceRow]:
        """Several rows in one read (a query per 500 names, not one per service)."""
        found = self._rows(self.db, names)
        return {name: service_row(name, found.get(name)) for name in names}

    def _rows(self, db: sqlite3.Connection, names: list[str]) -> dict[str, sqlite3.Row]:
        found: dict[str, sqlite3.Row] = {}
        for at in range(0, len(names), 500):
            chunk = names[at : at + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT * FROM services WHERE service IN ({marks})"
            found.update((row["service"], row) for row in db.execute(sql, chunk))
        return found

    def unsettled(self) -> set[str]:
        """The services with a run to finish or a host left over (fence, candidate,
        drill): what a round's settling looks at, found in two reads."""
        sql = (
            "SELECT service FROM events WHERE status='in_progress' AND kind!='drill' UNION "
            "SELECT service FROM hosts WHERE role IN ('fence', 'candidate', 'drill')"
        )
        return {row[0] for row in self.db.execute(sql)}

    def cutover(
        self,
        name: str,
        expected_generation: int,
        active: dict[str, Any],
        lease: Lease | None,
        generation: int | None = None,
    ) -> int:
        """Point the service at ``active`` as generation ``expected_generation + 1`` (or
        ``generation``, higher, when a host found on a provider is adopted).

        Refused unless the service is still at ``expected_generation`` and the lease is
        still ours: a paused or partitioned watcher cannot move the service back."""
        new = generation if generation is not None else expected_generation + 1
        with self.tx() as db:
            self._assert_lease(db, lease)
            row = db.execute(
                "SELECT generation, active FROM services WHERE service=?", (name,)
            ).fetchone()
            current = row["generation"] if row else 0
            done = json.loads(row["active"]) if row and row["active"] else {}
            if current == new and done.get("host_id") == active.get("host_id"):
                return current  # already done: a resumed run repeats this step
            # The same generation pointing at another host is a stale writer's cutover,
            # not ours: refused below rather than reported as done (issue 3).
            if current != expected_generation or new <= current:
                raise LeaseLost(
                    f"{name} is at generation {current}, this run expected "
                    f"{expected_generation}: a newer move won; nothing written"
                )
            generation = new
            db.execute(
                "INSERT INTO services (service, generation, active, active_since, health_state,"
                " failures, successes) VALUES (?,?,?,?, 'up', 0, 0)"
                " ON CONFLICT(service) DO UPDATE SET generation=excluded.generation,"
                " active=excluded.active, active_since=excluded.active_since,"
                " health_state='up', failures=0, successes=0",
                (name, generation, json.dumps(active), now_iso()),
            )
            return generation

    # ----------------------------------------------------------------- journal

    def start_event(
        self,
        service: str,
        kind: str,
        reason: str,
        origin: dict[str, Any] | None,
        data: dict[str, Any],
        lease: Lease | None,
    ) -> int:
        now = time.time()
        with self.tx() as db:
            self._assert_lease(db, lease)
            cur = db.execute(
                "INSERT INTO events (service, kind, status, reason, origin, data, started_at,"
                " started) VALUES (?,?,?,?,?,?,?,?)",
                (
                    service,
                    kind,
                    "in_progress",
                    redact(reason),
                    json.dumps(origin),
                    json.dumps(redact_doc(data)),
                    now_iso(now),
                    now,
                ),
            )
            return int(cur.lastrowid or 0)

    def update_event(
        self,
        event_id: int,
        lease: Lease | None,
        *,
        data: dict[str, Any] | None = None,
        target: dict[str, Any] | None = None,
        status: str | None = None,
        reason: str | None = None,
    ) -> None:
        now = time.time()
        with self.tx() as db:
            self._assert_lease(db, lease)
            if data is not None:
                db.execute(
                    "UPDATE events SET data=? WHERE id=?", (json.dumps(redact_doc(data)), event_id)
                )
            if target is not None:
                db.execute("UPDATE events SET target=? WHERE id=?", (json.dumps(target), event_id))
            if reason is not None:
                db.execute("UPDATE events SET reason=? WHERE id=?", (redact(reason), event_id))
            if status is not None:
                db.execute(
                    "UPDATE events SET status=?, finished_at=?, finished=? WHERE id=?",
                    (status, now_iso(now), now, event_id),
                )
                if status != "in_progress":
                    self._outbox(db, event_id)  # its notice, in the same transaction

    def step(
        self,
        event_id: int,
        seq: int,
        name: str,
        status: str,
        detail: str | None,
        lease: Lease | None,
    ) -> None:
        """Journal a step's start (``in_progress``) or end, in one transaction."""
        now = time.time()
        with self.tx() as db:
            self._assert_lease(db, lease)
            row = db.execute(
                "SELECT status FROM steps WHERE event_id=? AND name=?", (event_id, name)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO steps (event_id, seq, name, status, detail, started_at, started)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (event_id, seq, name, status, redact(detail or ""), now_iso(now), now),
                )
            elif status == "in_progress":
                db.execute(
                    "UPDATE steps SET status=?, detail=CASE WHEN ?='' THEN detail ELSE ? END"
                    " WHERE event_id=? AND name=?",
                    (status, detail or "", redact(detail or ""), event_id, name),
                )
            else:
                db.execute(
                    "UPDATE steps SET status=?, detail=?, finished_at=?, finished=?"
                    " WHERE event_id=? AND name=?",
                    (status, redact(detail or ""), now_iso(now), now, event_id, name),
                )

    def reset_steps(self, event_id: int, names: tuple[str, ...], lease: Lease | None) -> None:
        """Mark steps to be run again (the next candidate provider starts over)."""
        with self.tx() as db:
            self._assert_lease(db, lease)
            db.execute(
                f"UPDATE steps SET status='pending' WHERE event_id=? AND name IN "
                f"({','.join('?' * len(names))})",
                (event_id, *names),
            )

    def open_event(self, service: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM events WHERE service=? AND status='in_progress' AND kind!='drill'"
            " ORDER BY id LIMIT 1",
            (service,),
        ).fetchone()
        return self._event(row) if row else None

    def event(self, event_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM events WHERE id=?", (event_id,)).fetchone()
        return self._event(row) if row else None

    def events(
        self, service: str | None = None, limit: int = 20, kinds: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events"
        args: list[Any] = []
        where = []
        if service:
            where.append("service=?")
            args.append(service)
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [self._event(r) for r in self.db.execute(sql, args).fetchall()]

    def moves_since(self, service: str, since: float) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM events WHERE service=? AND kind='failover'"
            " AND status='succeeded' AND started>=?",
            (service, since),
        ).fetchone()
        return int(row[0])

    def _event(self, row: sqlite3.Row) -> dict[str, Any]:
        steps = [
            {
                "name": s["name"],
                "status": s["status"],
                "started_at": s["started_at"],
                "finished_at": s["finished_at"],
                "duration_s": round(s["finished"] - s["started"], 3)
                if s["finished"] and s["started"]
                else None,
                "detail": s["detail"],
            }
            for s in self.db.execute(
                "SELECT * FROM steps WHERE event_id=? ORDER BY seq", (row["id"],)
            ).fetchall()
        ]
        return {
            "id": row["id"],
            "service": row["service"],
            "kind": row["kind"],
            "status": row["status"],
            "reason": row["reason"],
            "from": place(json.loads(row["origin"]) if row["origin"] else None),
            "to": place(json.loads(row["target"]) if row["target"] else None),
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "duration_s": round(row["finished"] - row["started"], 3) if row["finished"] else None,
            "steps": steps,
            "data": json.loads(row["data"] or "{}"),
        }

    # ----------------------------------------------------------------- providers and hosts

    def set_provider_state(self, name: str, state: str, reason: str | None) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO providers VALUES (?,?,?,?)",
                (name, state, redact(reason or "") or None, now_iso()),
            )

    def provider_states(self) -> dict[str, dict[str, Any]]:
        return {
            r["name"]: {"state": r["state"], "reason": r["reason"], "updated_at": r["updated_at"]}
            for r in self.db.execute("SELECT * FROM providers").fetchall()
        }

    def set_host(
        self,
        provider: str,
        host_id: str,
        *,
        service: str,
        generation: int,
        role: str,
        address: str | None = None,
        note: str | None = None,
    ) -> None:
        """Remember a host the toolkit made and what it is for, so none is ever orphaned.
        Roles: ``candidate``, ``active``, ``fence`` (to stop/destroy once its provider
        answers), ``drill``, ``destroyed``."""
        with self.tx() as db:
            db.execute(
                "INSERT INTO hosts VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(provider, host_id) DO"
                " UPDATE SET role=excluded.role, note=excluded.note,"
                " updated_at=excluded.updated_at,"
                " address=COALESCE(excluded.address, hosts.address)",
                (
                    provider,
                    host_id,
                    service,
                    generation,
                    str(role),
                    address,
                    redact(note or ""),
                    now_iso(),
                ),
            )

    # ----------------------------------------------------------------- data (backups)

    def set_data_state(self, service: str, doc: dict[str, Any]) -> None:
        """The data plane's document for ``service``: its last backup and each store's
        standing (see :mod:`failover.data.plane`)."""
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO data VALUES (?,?,?)",
                (service, json.dumps(redact_doc(doc), sort_keys=True), now_iso()),
            )

    def data_state(self, service: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT doc FROM data WHERE service=?", (service,)).fetchone()
        return dict(json.loads(row[0])) if row else None

    def hosts(self, service: str | None = None, role: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM hosts WHERE 1=1", []
        if service:
            sql += " AND service=?"
            args.append(service)
        if role:
            sql += " AND role=?"
            args.append(role)
        return [dict(r) for r in self.db.execute(sql, args).fetchall()]
