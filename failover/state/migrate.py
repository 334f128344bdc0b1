"""``failover state migrate``: one machine's SQLite state into etcd, whole, and back.

``--to etcd``: services (with their generations), the journal (ids, steps and timings
kept, so ``history`` reads the same and an interrupted run resumes), providers, hosts,
the notification journal and the data documents. All or nothing: the first transaction
puts a ``meta/migration`` mark, every later one writes only while that mark is still
the one it put, and the last removes it. Until then no command acts on the prefix (the
etcd store refuses to write under the mark, see :meth:`EtcdStore._schema`), and a
migration that died leaves the mark, which names itself; ``--force`` replaces it.

What commands wrote into the prefix before the migration ran (health counters of a
``check``, provider states, deliveries: nothing deployed, no journal) is replaced
without asking. A journal, hosts, a deployed service or a run in progress there are
another history: refused, unless ``--force``, which replaces them (two histories are
never merged). ``--to sqlite`` is the way back (:mod:`failover.state.migrate_back`).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from typing import TYPE_CHECKING
from typing import Any

from failover.state.etcd import EtcdStore
from failover.state.etcd import etcd_store
from failover.state.etcd_side import _part
from failover.state.gateway import b64
from failover.state.gateway import created_at
from failover.state.gateway import delete
from failover.state.gateway import modified_at
from failover.state.gateway import prefix_end
from failover.state.gateway import put
from failover.state.rows import now_iso
from failover.state.sqlite import SCHEMA_VERSION
from failover.state.sqlite import SqliteStore
from failover.state.sqlite import StateError

if TYPE_CHECKING:
    from failover.config import Config

# The key families of the state (failover.state.etcd); `watch/` (the watchers' lease-bound
# votes) and `meta/schema` are not state to migrate and are left alone.
PARTS = ("svc", "gen", "ev", "evid", "open", "host", "prov", "dlv", "data", "counter", "lock")
# etcd refuses a transaction of more than 128 operations (--max-txn-ops) or 1.5 MiB.
_OPS, _BYTES = 100, 512 * 1024


class Refused(Exception):
    """The migration cannot start; ``usage``: the command or the config is wrong."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def migrate_config(config: Config, to: str, *, force: bool = False) -> dict[str, Any]:
    """``failover state migrate --to TO [--force]``: the document it prints."""
    if to == "sqlite":
        from failover.state.migrate_back import to_sqlite

        return to_sqlite(config, force=force)
    if to != "etcd":
        raise Refused(f"--to {to}: migrate to etcd, or back to sqlite", usage=True)
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
        counts, replaced = migrate(source, target, origin=str(path), force=force)
    finally:
        source.close()
        target.close()
    where = f"{', '.join(config.state.endpoints)} under {config.state.prefix}"
    copied = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return {
        "copied": counts,
        "from": str(path),
        "to": where,
        "replaced": replaced,
        "message": f"copied {copied} from {path} to etcd at {where}"
        + (f" (replaced: {'; '.join(replaced)})" if replaced else ""),
    }


def occupied(target: EtcdStore) -> list[str]:
    """What in the prefix is another history (or a migration that did not finish)."""
    gw, found = target.gw, []
    mark = gw.get(target.k("meta", "migration"))
    if mark is not None:
        info = mark.json() or {}
        found.append(
            f"a migration that did not finish (from {info.get('from', '?')}, started "
            f"{info.get('started_at', '?')} by {info.get('by', '?')})"
        )
    events = gw.range(target.k("ev", ""), prefix=True, limit=1)
    if events:
        found.append("a journal")
    if gw.range(target.k("host", ""), prefix=True, limit=1):
        found.append("hosts")
    deployed = [
        kv.key.rsplit("/", 1)[1]
        for kv in gw.range(target.k("svc", ""), prefix=True)
        if (kv.json() or {}).get("active") or int((kv.json() or {}).get("generation", 0))
    ]
    if deployed:
        found.append(f"deployed services ({', '.join(deployed)})")
    if gw.range(target.k("lock", ""), prefix=True, limit=1):
        found.append("a run in progress (a lock is held)")
    return found


def clear_ops(target: EtcdStore) -> list[dict[str, Any]]:
    """Delete every state key family of the prefix: one operation each."""
    return [
        {"request_delete_range": {"key": b64(k), "range_end": prefix_end(k)}}
        for k in (target.k(part, "") for part in PARTS)
    ]


class Batches:
    """Writes under the migration mark: each transaction holds only while the mark is
    still the one this migration put (``token``: the revision it was put at)."""

    def __init__(self, target: EtcdStore, mark: str, token: int) -> None:
        self.target, self.mark, self.token = target, mark, token
        self.ops: list[dict[str, Any]] = []
        self.size = 0

    def put(self, key: str, value: Any) -> None:
        op = put(key, value)
        self.ops.append(op)
        self.size += len(json.dumps(op))
        if len(self.ops) >= _OPS or self.size >= _BYTES:
            self.flush()

    def flush(self, last: list[dict[str, Any]] | None = None) -> None:
        ops = self.ops + (last or [])
        self.ops, self.size = [], 0
        if not ops:
            return
        ok, _, _ = self.target.gw.txn([modified_at(self.mark, self.token)], ops)
        if not ok:
            raise StateError(
                f"etcd: the migration mark {self.mark} was replaced (another migration "
                "with --force?): this one stopped; run it again"
            )


def begin(target: EtcdStore, origin: str, force: bool) -> tuple[Batches, list[str]]:
    """The first transaction: the prefix's state cleared and the mark put, at once."""
    found = occupied(target)
    if found and not force:
        raise StateError(
            f"etcd already holds state under {target.prefix}: {'; '.join(found)}. Nothing "
            "was copied: two histories are never merged. `failover state migrate --to "
            "etcd --force` replaces it with this machine's state; or choose another "
            "state.prefix"
        )
    mark = target.k("meta", "migration")
    current = target.gw.get(mark)
    info = {"from": origin, "started_at": now_iso(), "by": f"{socket.gethostname()}:{os.getpid()}"}
    ok, _, revision = target.gw.txn(
        [created_at(mark, current.create_revision if current else 0)],
        [*clear_ops(target), put(mark, info)],
    )
    if not ok:
        raise StateError(f"etcd: another migration into {target.prefix} started meanwhile")
    return Batches(target, mark, revision), found


def migrate(
    source: SqliteStore, target: EtcdStore, *, origin: str = "", force: bool = False
) -> tuple[dict[str, int], list[str]]:
    """Copy everything; how many of each kind were copied, and what was replaced."""
    batches, replaced = begin(target, origin, force)
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
        batches.put(target.k("svc", row["service"]), value)
        batches.put(target.k("gen", row["service"]), row["generation"])
        counts["services"] += 1
    if os.environ.get("FAILOVER_FAILPOINT") == "after:migrate-services":
        batches.flush()
        os._exit(137)  # a migration that dies half way (tests/test_holes_cli.py)
    last = 0
    for row in db.execute("SELECT * FROM events ORDER BY id").fetchall():
        _copy_event(target, batches, db, row)
        last = max(last, int(row["id"]))
        counts["events"] += 1
    for row in db.execute("SELECT * FROM hosts").fetchall():
        batches.put(target.k("host", row["provider"], row["host_id"]), dict(row))
        counts["hosts"] += 1
    for row in db.execute("SELECT * FROM providers").fetchall():
        value = {"state": row["state"], "reason": row["reason"], "updated_at": row["updated_at"]}
        batches.put(target.k("prov", row["name"]), value)
        counts["providers"] += 1
    counts["deliveries"] = _copy_side(source, target, batches)
    final = [put(target.k("meta", "schema"), SCHEMA_VERSION), delete(batches.mark)]
    if last:
        final.append(put(target.k("counter", "event"), last))
    batches.flush(final)
    return counts, replaced


def _copy_event(
    target: EtcdStore, batches: Batches, db: sqlite3.Connection, row: sqlite3.Row
) -> None:
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
    batches.put(target._event_key(service, event_id), event)
    batches.put(target.k("evid", f"{event_id:012d}"), service)
    if row["status"] == "in_progress" and row["kind"] != "drill":
        batches.put(target.k("open", service, f"{event_id:012d}"), event_id)


def _copy_side(source: SqliteStore, target: EtcdStore, batches: Batches) -> int:
    """The notification journal and the data documents, where this SQLite file has them."""
    tables = {r[0] for r in source.db.execute("SELECT name FROM sqlite_master")}
    copied = 0
    if "deliveries" in tables:
        for seq, row in enumerate(source.db.execute("SELECT * FROM deliveries ORDER BY rowid")):
            value = {**dict(row), "body": json.loads(row["body"] or "{}"), "seq": seq}
            batches.put(target.k("dlv", _part(row["key"]), _part(row["target"])), value)
            copied += 1
    if "data" in tables:
        for row in source.db.execute("SELECT * FROM data"):
            batches.put(target.k("data", row[0]), json.loads(row[1]))
    return copied
