"""Real cut-offs for ``bench/pgbackrest.py``: engine pgbackrest on local providers, a
steady writer, the live host's provider cut off, a real failover, rows counted.

One project per ``archive_timeout``: ``db`` on local providers ``p0``..``pN`` (one per
cut-off and one more), one ``dir`` store. Each round: a client commits one row at a time
on the live host and records each acknowledgement; after a random while the live host's
provider is cut off as the tests do (``SUSPENDED``, SIGKILL of the host's process group
and of its pgBackRest processes, which leave that group); ``Engine.check`` fails it over
to the next provider (the cut ones stay blocked); the new host's rows are counted.

Per cut-off: the rows lost (acknowledged, absent), the measured recovery point's age (the
cut-off minus the acknowledgement of the newest row present) and the reported one (the
cut-off minus the arrival in the repository of the last WAL segment replayed, from the
failover's restore record).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from _local import kill_all

from failover import config as cfg
from failover.data.plane import take_backup
from failover.engine import Engine

BIN = "/usr/lib/postgresql/15/bin"
PORT = 55498


@dataclass
class Cut:
    lost: int  # rows acknowledged and absent after the failover
    measured_s: float  # cut-off minus the newest present row's acknowledgement
    reported_s: float | None  # cut-off minus the replayed WAL's arrival, as reported
    acked: int


def project(root: Path, timeout: int, providers: int) -> Path:
    run = (
        f"exec setpriv --reuid=postgres --regid=postgres --init-groups {BIN}/postgres "
        f"-D {root}/{{host_id}} -p {{port}} -c listen_addresses={{address}}"
    )
    doc = {
        "version": 1,
        "dns": {"type": "local", "zone": "bench.test", "ttl": 5},
        "providers": [{"name": f"p{i}", "type": "local"} for i in range(providers)],
        "stores": [{"name": "one", "type": "dir", "path": str(root / "repo")}],
        "services": {
            "db": {
                "domain": "db.bench.test",
                "port": PORT,
                "run": {"command": run},
                "health": {"tcp": {"port": PORT}, "interval": "500ms", "timeout": "400ms"},
                "policy": {"ready_timeout": "240s", "max_moves_per_hour": 1000},
                "data": {
                    "engine": "pgbackrest",
                    "postgres": {
                        "data_dir": f"{root}/{{host_id}}",
                        "bin_dir": BIN,
                        "initdb": "--auth-local=peer --auth-host=trust",
                        "hba": ["host all all 127.0.0.0/8 trust"],
                    },
                    "archive_timeout": f"{timeout}s",
                    "every": "1h",
                    "timeout": "600s",
                },
            }
        },
    }
    path = root / "failover.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Writer(threading.Thread):
    """Commits one row at a time and records (id, acknowledgement time) until an error."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.conninfo = f"host={address} port={PORT} user=postgres dbname=postgres"
        self.acked: list[tuple[int, float]] = []

    def run(self) -> None:
        import psycopg

        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn,
        ):
            while True:
                (row,) = conn.execute("INSERT INTO t DEFAULT VALUES RETURNING id").fetchall()
                self.acked.append((int(row[0]), time.time()))
                time.sleep(0.01)


def sql(engine: Engine, text: str) -> list[tuple[Any, ...]]:
    import psycopg

    active = engine.store.service("db").active
    assert active is not None
    conninfo = f"host={active['address']} port={PORT} user=postgres dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        cursor = conn.execute(text)
        return cursor.fetchall() if cursor.description else []


def cut_off(engine: Engine, root: Path) -> None:
    """The live host's company suspends the account and the machine dies with all its
    processes: pgBackRest's async pushers too, which leave the host's process group."""
    active = engine.store.service("db").active
    assert active is not None and engine.config.state_dir is not None
    provider = Path(engine.config.state_dir) / "local" / active["provider"]
    (provider / "SUSPENDED").write_text("closed\n")
    meta = json.loads((provider / "hosts" / active["host_id"] / "host.json").read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(meta["pid"]), signal.SIGKILL)
    kill_matching(f"{root}/{active['host_id']}-pgbackrest")


def kill_matching(mark: str) -> None:
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and mark.encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)


def reported_point(engine: Engine) -> float | None:
    """When the last replayed segment reached the repository, from the failover's event
    (its restore record, else the step's words, whole seconds)."""
    event = next(e for e in engine.store.events("db", limit=5) if e["kind"] == "failover")
    record = event.get("restore") or {}
    if record.get("recovery_point"):
        return float(record["recovery_point"])
    detail = next((s["detail"] for s in event["steps"] if s["name"] == "restore"), "")
    found = re.search(r"\(archived (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\)", detail)
    if not found:
        return None
    return time.mktime(time.strptime(found.group(1), "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


def one(engine: Engine, root: Path, timeout: int) -> Cut:
    active = engine.store.service("db").active
    assert active is not None
    writer = Writer(active["address"])
    writer.start()
    # Steady writes past several segment switches, then a cut-off at a random phase.
    time.sleep(timeout * 3 + 2 + random.uniform(0, 2.0 * timeout + 1))
    cut = time.time()
    cut_off(engine, root)
    writer.join(30)
    for _ in range(400):
        (verdict,) = engine.check(["db"])
        if verdict.action == "failover":
            break
        time.sleep(0.3)
    else:
        raise RuntimeError(f"no failover: {verdict.message}")
    acked = dict(writer.acked)
    present = {int(r[0]) for r in sql(engine, "SELECT id FROM t")}
    kept = [at for i, at in acked.items() if i in present]
    point = reported_point(engine)
    return Cut(
        lost=len(set(acked) - present),
        measured_s=cut - max(kept, default=cut),
        reported_s=None if point is None else cut - point,
        acked=len(acked),
    )


def real_cutoffs(root: Path, timeout: int, cutoffs: int) -> list[Cut]:
    root.mkdir(parents=True, mode=0o755)
    (root / "repo").mkdir()
    shutil.chown(root / "repo", "postgres", "postgres")
    engine = Engine(cfg.load(project(root, timeout, cutoffs + 1), root / ".failover"))
    try:
        outcome = engine.run("db", "deploy", reason="bench", to="p0")
        assert outcome.ok, outcome.message
        sql(engine, "CREATE TABLE t (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
        take_backup(engine, "db")
        return [one(engine, root, timeout) for _ in range(cutoffs)]
    finally:
        engine.close()
        kill_all(root / ".failover")
        kill_matching(str(root))  # the hosts' pgBackRest processes too
