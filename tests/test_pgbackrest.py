"""Engine pgbackrest against real PostgreSQL 15 and pgBackRest: WAL archived
continuously to two ``dir`` stores (two repositories); a client writes rows and records
each acknowledged commit; the provider is cut off mid-write and the new host holds every
row acknowledged more than ``archive_timeout`` plus one push before the cut-off."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.data.plane import catalog
from failover.data.plane import status
from failover.data.plane import take_backup
from failover.engine import Engine
from tests.conftest import need
from tests.conftest import need_binary
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import wait_for
from tests.helpers import write_config
from tests.test_data_e2e import cut_off

pytestmark = pytest.mark.timeout(600)

BIN = "/usr/lib/postgresql/15/bin"
PORT = 55432
ARCHIVE_TIMEOUT = 1.0
# One segment's push (async archive-push, compression) on a loaded 2-core machine.
PUSH = 10.0


@pytest.fixture
def pg_root() -> Iterator[Path]:
    """A folder the postgres user can reach (pytest's tmp_path is root's alone)."""
    need_binary("pgbackrest")
    need(Path(BIN, "postgres").exists(), "PostgreSQL 15 is not installed (postgresql-15)")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        need(False, "no postgres user")
        raise
    need(os.geteuid() == 0, "PostgreSQL runs as postgres: the test needs root")
    root = Path(f"/tmp/failover-pg-{os.urandom(4).hex()}")
    root.mkdir(mode=0o755)
    for repo in ("r1", "r2"):
        (root / repo).mkdir()
        os.chown(root / repo, user.pw_uid, user.pw_gid)
    yield root
    stragglers(root)
    shutil.rmtree(root, ignore_errors=True)


def stragglers(root: Path) -> None:
    """PostgreSQL's children leave the host's process group (setsid), so killing a host
    leaves an archiver inside ``archive_command`` for up to pgBackRest's archive-timeout:
    end the test's own pgBackRest processes by pid; the archiver then sees its
    postmaster gone and exits."""
    for _ in range(50):
        found = []
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if proc.name.isdigit() and str(root).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def pg_config(root: Path, **data: Any) -> dict[str, Any]:
    run = (
        f"exec setpriv --reuid=postgres --regid=postgres --init-groups {BIN}/postgres "
        f"-D {root}/{{host_id}} -p {{port}} -c listen_addresses={{address}}"
    )
    conf = base_config(
        port=PORT,
        run={"command": run},
        health={"tcp": {"port": PORT}, "interval": "500ms", "timeout": "400ms", "fall": 2},
        policy={"ready_timeout": "240s", "max_moves_per_hour": 10},
        data={
            "engine": "pgbackrest",
            "postgres": {
                "data_dir": f"{root}/{{host_id}}",
                "bin_dir": BIN,
                "initdb": "--auth-local=peer --auth-host=trust",
                "hba": ["host all all 127.0.0.0/8 trust"],
            },
            "archive_timeout": f"{ARCHIVE_TIMEOUT:g}s",
            "every": "1h",
            "timeout": "300s",
            **data,
        },
    )
    conf["services"] = {"db": conf["services"].pop("web") | {"domain": "db.example.test"}}
    conf["stores"] = [
        {"name": "one", "type": "dir", "path": str(root / "r1")},
        {"name": "two", "type": "dir", "path": str(root / "r2")},
    ]
    return conf


@pytest.fixture
def world(project: Path) -> Iterator[Any]:
    engines: list[Engine] = []

    def make(conf: dict[str, Any]) -> Engine:
        engine = Engine(cfg.load(write_config(project, conf), project / ".failover"))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
    for config in project.glob("*.yaml"):
        cleanup(config)


def dsn(engine: Engine) -> str:
    active = engine.store.service("db").active
    assert active is not None
    return f"host={active['address']} port={PORT} user=postgres dbname=postgres connect_timeout=3"


class Writer(threading.Thread):
    """Inserts rows one commit at a time and records each acknowledged one."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.acked: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.conninfo, autocommit=True) as conn,
        ):
            while not self.stop.is_set():
                (row,) = conn.execute("INSERT INTO t DEFAULT VALUES RETURNING id").fetchall()
                self.acked.append((int(row[0]), time.time()))
                time.sleep(0.02)


def query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn(engine), autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def step(engine: Engine, kind: str, name: str = "restore") -> str:
    event = next(e for e in engine.store.events("db", limit=5) if e["kind"] == kind)
    detail: str = next(s["detail"] for s in event["steps"] if s["name"] == name)
    return detail


def fail_over(engine: Engine) -> Any:
    for _ in range(200):
        (verdict,) = engine.check(["db"])
        if verdict.action == "failover":
            return verdict
        time.sleep(0.3)
    raise AssertionError(f"no failover: {verdict.message}")


def deployed(world: Any, root: Path, conf: dict[str, Any] | None = None, **data: Any) -> Engine:
    conf = conf or pg_config(root, **data)
    names = [s["name"] for s in conf["stores"]]
    engine = world(conf)
    outcome = engine.run("db", "deploy", reason="test", to="alpha")
    assert outcome.ok, outcome.message
    assert "no backup yet: initdb, stanza created" in step(engine, "deploy")
    query(engine, "CREATE TABLE t (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
    assert take_backup(engine, "db")["stores"] == dict.fromkeys(names, "ok")
    rows = catalog(engine, "db")  # `failover backups`: one full backup in each repository
    assert sorted((r["type"], r["stores"][0]) for r in rows) == sorted(("full", n) for n in names)
    return engine


def test_a_failover_loses_seconds_not_the_interval_between_backups(
    world: Any, pg_root: Path
) -> None:
    engine = deployed(world, pg_root)
    writer = Writer(dsn(engine))
    writer.start()
    # Writes well past the backup: only the archived WAL can bring these back.
    began = time.time()
    while len(writer.acked) < 100 or time.time() - began < ARCHIVE_TIMEOUT + PUSH + 10:
        time.sleep(0.2)
    cut = time.time()
    cut_off(engine, "alpha", "db")
    writer.join(30)
    acked = dict(writer.acked)

    fail_over(engine)
    detail = step(engine, "failover")
    found = re.search(r"WAL replayed to (\w+) \(archived (\S+)\)", detail)
    assert found and "restored backup" in detail and "from store one" in detail, detail
    point = time.mktime(time.strptime(found.group(2), "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    present = {int(r[0]) for r in query(engine, "SELECT id FROM t")}
    must = {i for i, at in acked.items() if at < cut - ARCHIVE_TIMEOUT - PUSH}
    assert must, "the writer ran too short a time to judge"
    lost = sorted(must - present)
    assert not lost
    # The recovery point reported is what was really kept: no row acknowledged after
    # the last replayed segment arrived is there (1s: the repository's clock is in
    # whole seconds), and every row acknowledged well before it is.
    assert all(acked[i] <= point + 1 for i in present if i in acked)
    assert {i for i, at in acked.items() if at < point - ARCHIVE_TIMEOUT - PUSH} <= present
    assert len(present - set(acked)) <= 1  # at most the commit in flight at the cut-off


def wait_rows(writer: Writer, more: int) -> None:
    target = len(writer.acked) + more
    for _ in range(600):
        if len(writer.acked) >= target or not writer.is_alive():
            break
        time.sleep(0.1)
    assert len(writer.acked) >= target, "the database stopped committing"


def test_a_dead_store_never_stalls_writes_and_the_failover_uses_the_other(
    world: Any, pg_root: Path
) -> None:
    engine = deployed(world, pg_root)
    writer = Writer(dsn(engine))
    writer.start()
    wait_rows(writer, 20)
    (pg_root / "r1").rename(pg_root / "r1.gone")  # the store is removed mid-write
    wait_rows(writer, 300)  # the database keeps committing
    for _ in range(3):  # a store failing three rounds in a row makes check WARNING
        (verdict,) = engine.check(["db"])
        time.sleep(ARCHIVE_TIMEOUT * 5)
    assert verdict.exit_code == 1 and "data: store one failed 3 rounds" in verdict.message
    doc = status(engine, "db")
    assert doc is not None and doc["stores"]["one"]["ok"] is False, doc
    assert doc["stores"]["two"]["ok"] is True and doc["rpo_s"]["two"] >= 0

    cut = time.time()
    cut_off(engine, "alpha", "db")
    writer.join(30)
    acked = dict(writer.acked)
    fail_over(engine)
    detail = step(engine, "failover")
    assert "from store two (repository 2)" in detail, detail
    present = {int(r[0]) for r in query(engine, "SELECT id FROM t")}
    must = {i for i, at in acked.items() if at < cut - ARCHIVE_TIMEOUT - PUSH}
    assert must and must <= present, sorted(must - present)[:5]


def test_a_drill_restores_into_a_throwaway_host_and_leaves_the_live_database(
    world: Any, pg_root: Path
) -> None:
    from failover.output import drill_doc
    from failover.output import drill_lines
    from failover.output import junit_xml

    engine = deployed(world, pg_root)
    query(engine, "INSERT INTO t SELECT FROM generate_series(1, 50)")
    live = engine.store.service("db").active
    outcome = engine.drill("db", "beta")
    assert outcome.ok, outcome.message
    assert "restored backup" in step(engine, "drill") and "WAL replayed to" in step(engine, "drill")
    restore = drill_doc(outcome)["restore"]
    assert restore["store"] == "one" and restore["restore_s"] >= 0 and restore["rpo_s"] >= 0
    assert "recovery point" in drill_lines(drill_doc(outcome), "beta")[1]
    assert 'name="restore.age_s"' in junit_xml(drill_doc(outcome))
    assert engine.store.service("db").active == live
    query(engine, "INSERT INTO t DEFAULT VALUES")  # the live database still takes writes
    assert query(engine, "SELECT count(*) FROM t") == [(51,)]
    # The drill's host never archived: its promotion (timeline 2) is not in any store.
    assert not list(pg_root.glob("r*/archive/db/*/00000002.history*"))


def test_no_store_gives_the_known_backup_the_run_fails_before_cutover(
    world: Any, pg_root: Path
) -> None:
    engine = deployed(world, pg_root)
    live = engine.store.service("db").active
    for repo in ("r1", "r2"):  # every store emptied: the new host would start empty
        (pg_root / repo).rename(pg_root / f"{repo}.gone")
    outcome = engine.drill("db", "beta")
    assert not outcome.ok
    assert "no repository gives a backup and the newest known is" in outcome.message
    assert engine.store.service("db").active == live


def test_a_move_loses_nothing_the_old_host_acknowledged(world: Any, pg_root: Path) -> None:
    # No segment is switched by time: only the move's final WAL carries these rows.
    engine = deployed(world, pg_root, archive_timeout="1h")
    query(engine, "INSERT INTO t SELECT FROM generate_series(1, 500)")  # after the backup
    moved = engine.run("db", "move", reason="test", to="beta")
    assert moved.ok, moved.message
    assert query(engine, "SELECT count(*) FROM t") == [(500,)]
    detail = step(engine, "move")
    assert re.search(r"final WAL \w+ archived by the old host", detail), detail
    assert "promoted" in detail and "NOT replayed" not in detail, detail
    query(engine, "INSERT INTO t DEFAULT VALUES")  # the new primary takes writes


def switch_and_archive(engine: Engine) -> str:
    """Ends the live host's WAL segment and waits until it is archived; its name."""
    ((segment,),) = query(engine, "SELECT pg_walfile_name(pg_switch_wal())")
    archived = f"SELECT last_archived_wal >= '{segment}' FROM pg_stat_archiver"
    wait_for(lambda: query(engine, archived) == [(True,)], 120, "the rows' WAL archived")
    return str(segment)


def test_a_store_whose_provider_is_blocked_is_restored_from_last(world: Any, pg_root: Path) -> None:
    # Store one shares fate with alpha, the live host's company: once alpha is blocked,
    # the new host restores from store two first, although store one still answers.
    conf = pg_config(pg_root)
    conf["stores"][0]["provider"] = "alpha"
    engine = deployed(world, pg_root, conf)
    query(engine, "INSERT INTO t SELECT FROM generate_series(1, 50)")
    switch_and_archive(engine)
    cut_off(engine, "alpha", "db")
    fail_over(engine)
    assert engine.store.provider_states()["alpha"]["state"] == "blocked"
    detail = step(engine, "failover")
    assert "from store two (repository 2)" in detail, detail
    assert "tried last: store one (repository 1), its provider alpha is blocked" in detail, detail
    assert "failed first" not in detail, detail  # store two was tried first, not after one
    assert query(engine, "SELECT count(*) FROM t") == [(50,)]
    # The replay too: every segment came from store two, none from the blocked store one
    # (pgBackRest's archive-get alone walks repo1 first).
    logs = "".join(p.read_text() for p in pg_root.glob("*-pgbackrest/log/db-archive-get*.log"))
    assert re.search(r"found \w+ in the repo2", logs), logs
    assert not re.search(r"found \w+ in the repo1", logs), logs

    # The failover left its timeline's history in the archive, which the next restore's
    # promotion fetches last: the report still names the last segment and its arrival.
    query(engine, "INSERT INTO t SELECT FROM generate_series(1, 10)")
    segment = switch_and_archive(engine)
    assert segment.startswith("00000002")
    assert engine.drill("db", "beta").ok
    detail = step(engine, "drill")
    replayed = re.search(r"WAL replayed to (\w+) \(archived 20\d\d-", detail)
    assert replayed and replayed.group(1) >= segment, detail
