"""``failover state migrate --to sqlite``: the way back from etcd to one machine.

The etcd state under ``state.prefix`` (services, journal, hosts, providers, deliveries,
data documents) is written into a new SQLite file beside the state directory's
``state.db``, which then replaces it in one rename: a migration that dies leaves the old
file as it was. A ``state.db`` that already holds a journal or services (the one left
from before the move to etcd, say) is another history: refused, unless ``--force``, which
keeps it as ``state.db.replaced-<time>``. Then set ``state.backend: sqlite``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from failover.state.etcd import EtcdStore
from failover.state.etcd import etcd_store
from failover.state.rows import now_iso
from failover.state.sqlite import SqliteStore
from failover.state.sqlite import StateError

if TYPE_CHECKING:
    from failover.config import Config


def to_sqlite(config: Config, *, force: bool) -> dict[str, Any]:
    """``failover state migrate --to sqlite [--force]``: the document it prints."""
    from failover.state.migrate import Refused

    if config.state.backend != "etcd":
        raise Refused(
            "state.backend: the config must still name the etcd to copy from (backend: "
            "etcd, state.endpoints); set it to sqlite once the state is copied",
            usage=True,
        )
    assert config.state_dir is not None
    path = config.state_dir / "state.db"
    kept = _existing(path, force)
    source = etcd_store(config.state)
    staging = config.state_dir / f".migrate-{os.getpid()}"
    try:
        if source.gw.get(source.k("meta", "migration")) is not None:
            raise StateError(
                f"etcd under {source.prefix} holds a migration that did not finish: "
                "nothing to copy back from"
            )
        shutil.rmtree(staging, ignore_errors=True)
        target = SqliteStore(staging)
        try:
            counts = copy_back(source, target.db)
        finally:
            target.close()
        if kept is not None:
            for suffix in ("", "-wal", "-shm"):
                old = Path(f"{path}{suffix}")
                if old.exists():
                    old.rename(f"{kept}{suffix}")
        os.replace(staging / "state.db", path)
    finally:
        source.close()
        shutil.rmtree(staging, ignore_errors=True)
    where = f"etcd at {', '.join(config.state.endpoints)} under {config.state.prefix}"
    copied = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return {
        "copied": counts,
        "from": where,
        "to": str(path),
        "replaced": [str(kept)] if kept else [],
        "message": f"copied {copied} from {where} to {path}"
        + (f" (the old file is kept as {kept})" if kept else "")
        + "; now set state.backend: sqlite",
    }


def _existing(path: Path, force: bool) -> Path | None:
    """Where an existing ``state.db`` with a history goes (None: nothing to keep)."""
    from failover.state.migrate import Refused

    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            events = db.execute("SELECT count(*) FROM events").fetchone()[0]
            services = db.execute("SELECT count(*) FROM services").fetchone()[0]
        except sqlite3.DatabaseError:
            events = services = "?"
    if (events or services) and not force:
        raise Refused(
            f"{path} already holds state ({events} events, {services} services; the file "
            "from before the move to etcd?): nothing was copied. `failover state migrate "
            "--to sqlite --force` replaces it and keeps it as state.db.replaced-<time>"
        )
    return path.with_name(f"state.db.replaced-{time.strftime('%Y%m%dT%H%M%S')}")


def _insert(db: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    """``row``'s keys that are columns of ``table``; dicts and lists as JSON."""
    columns = [c[1] for c in db.execute(f"PRAGMA table_info({table})")]
    keys = [k for k in columns if k in row]
    values = [json.dumps(row[k]) if isinstance(row[k], dict | list) else row[k] for k in keys]
    db.execute(
        f"INSERT OR REPLACE INTO {table} ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
        values,
    )


def copy_back(source: EtcdStore, db: sqlite3.Connection) -> dict[str, int]:
    """Every state key of the prefix into ``db`` (a fresh store's), in one transaction."""
    counts = {"services": 0, "events": 0, "hosts": 0, "providers": 0, "deliveries": 0}

    def each(part: str) -> list[tuple[str, Any]]:
        base = source.k(part, "")
        return [(kv.key[len(base) :], kv.json()) for kv in source.gw.range(base, prefix=True)]

    db.execute("BEGIN IMMEDIATE")
    for name, value in each("svc"):
        _insert(db, "services", {**value, "service": name})
        counts["services"] += 1
    for _, event in each("ev"):
        row = {**event, "data": event.get("data") or {}}
        _insert(db, "events", row)
        for step in event.get("steps", []):
            _insert(db, "steps", {**step, "event_id": event["id"]})
        counts["events"] += 1
    for _, host in each("host"):
        _insert(db, "hosts", host)
        counts["hosts"] += 1
    for name, value in each("prov"):
        _insert(db, "providers", {**value, "name": name})
        counts["providers"] += 1
    for _, value in each("dlv"):
        _insert(db, "deliveries", value)
        counts["deliveries"] += 1
    for name, doc in each("data"):
        _insert(db, "data", {"service": name, "doc": doc, "updated_at": now_iso()})
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file alone is moved into place
    return counts
