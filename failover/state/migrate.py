"""``failover state migrate --to etcd``: one machine's SQLite state into etcd, whole.

Services (with their generations), the journal (ids, steps and timings kept, so
``history`` reads the same and an interrupted run resumes), providers, hosts, the
notification journal and the data documents. Refused when the etcd prefix already holds
a journal or a service: two histories are never merged. Every write is a transaction
that creates its key only if absent, so two migrations at once cannot interleave.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING
from typing import Any

from failover.state.etcd import EtcdStore
from failover.state.etcd import etcd_store
from failover.state.etcd_side import _part
from failover.state.gateway import created_at
from failover.state.gateway import put
from failover.state.sqlite import SqliteStore
from failover.state.sqlite import StateError

if TYPE_CHECKING:
    from failover.config import Config


class Refused(Exception):
    """The migration cannot start; ``usage``: the command or the config is wrong."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def migrate_config(config: Config, to: str) -> dict[str, Any]:
    """``failover state migrate --to TO``: the document it prints."""
    if to != "etcd":
        raise Refused(f"--to {to}: the one backend to migrate to is etcd", usage=True)
    if config.state.backend != "etcd":
        raise Refused(
            "state.backend: set it to etcd (with state.endpoints) first; the SQLite file in "
            "the state directory is what gets copied",
            usage=True,
        )
    assert config.state_dir is not None
    path = config.state_dir / "state.db"
    if not path.exists():
        raise Refused(f"no SQLite state at {path}: nothing to migrate")
    source, target = SqliteStore(config.state_dir), etcd_store(config.state)
    try:
        counts = migrate(source, target)
    finally:
        source.close()
        target.close()
    where = f"{', '.join(config.state.endpoints)} under {config.state.prefix}"
    copied = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return {
        "copied": counts,
        "from": str(path),
        "to": where,
        "message": f"copied {copied} from {path} to etcd at {where}",
    }


def migrate(source: SqliteStore, target: EtcdStore) -> dict[str, int]:
    """Copy everything; how many of each kind were copied."""
    for part in ("svc", "ev", "host"):
        if target.gw.range(target.k(part, ""), prefix=True, limit=1):
            raise StateError(
                f"etcd already holds state under {target.prefix} ({part}/...): nothing was "
                "copied; choose another state.prefix, or remove that state first"
            )
    target._schema()
    db = source.db
    counts = {"services": 0, "events": 0, "hosts": 0, "providers": 0, "deliveries": 0}
    for row in db.execute("SELECT * FROM services").fetchall():
        value = {
            "generation": row["generation"],
            "active": json.loads(row["active"]) if row["active"] else None,
            "active_since": row["active_since"],
            "health_state": row["health_state"],
            "failures": row["failures"],
            "successes": row["successes"],
            "last_check": row["last_check"],
            "latency": row["latency"],
        }
        _create(target, target.k("svc", row["service"]), value)
        _create(target, target.k("gen", row["service"]), row["generation"])
        counts["services"] += 1
    last = 0
    for row in db.execute("SELECT * FROM events ORDER BY id").fetchall():
        _copy_event(target, db, row)
        last = max(last, int(row["id"]))
        counts["events"] += 1
    if last:
        target._commit(None, [], [put(target.k("counter", "event"), last)])
    for row in db.execute("SELECT * FROM hosts").fetchall():
        _create(target, target.k("host", row["provider"], row["host_id"]), dict(row))
        counts["hosts"] += 1
    for row in db.execute("SELECT * FROM providers").fetchall():
        value = {"state": row["state"], "reason": row["reason"], "updated_at": row["updated_at"]}
        _create(target, target.k("prov", row["name"]), value)
        counts["providers"] += 1
    counts["deliveries"] = _copy_side(source, target)
    return counts


def _create(target: EtcdStore, key: str, value: Any) -> None:
    if not target._commit(None, [created_at(key, 0)], [put(key, value)]):
        raise StateError(f"etcd: {key} appeared during the migration; run it again")


def _copy_event(target: EtcdStore, db: sqlite3.Connection, row: sqlite3.Row) -> None:
    event_id, service = int(row["id"]), row["service"]
    steps = [
        {
            "seq": s["seq"],
            "name": s["name"],
            "status": s["status"],
            "detail": s["detail"],
            "started_at": s["started_at"],
            "finished_at": s["finished_at"],
            "started": s["started"],
            "finished": s["finished"],
        }
        for s in db.execute("SELECT * FROM steps WHERE event_id=? ORDER BY seq", (event_id,))
    ]
    event = {
        "id": event_id,
        "service": service,
        "kind": row["kind"],
        "status": row["status"],
        "reason": row["reason"],
        "origin": json.loads(row["origin"]) if row["origin"] else None,
        "target": json.loads(row["target"]) if row["target"] else None,
        "data": json.loads(row["data"] or "{}"),
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "started": row["started"],
        "finished": row["finished"],
        "steps": steps,
    }
    _create(target, target._event_key(service, event_id), event)
    _create(target, target.k("evid", f"{event_id:012d}"), service)
    if row["status"] == "in_progress" and row["kind"] != "drill":
        _create(target, target.k("open", service, f"{event_id:012d}"), event_id)


def _copy_side(source: SqliteStore, target: EtcdStore) -> int:
    """The notification journal and the data documents, where this SQLite file has them."""
    tables = {r[0] for r in source.db.execute("SELECT name FROM sqlite_master")}
    copied = 0
    if "deliveries" in tables:
        for seq, row in enumerate(source.db.execute("SELECT * FROM deliveries ORDER BY rowid")):
            value = {**dict(row), "body": json.loads(row["body"] or "{}"), "seq": seq}
            _create(target, target.k("dlv", _part(row["key"]), _part(row["target"])), value)
            copied += 1
    if "data" in tables:
        for row in source.db.execute("SELECT * FROM data"):
            _create(target, target.k("data", row[0]), json.loads(row[1]))
    return copied
