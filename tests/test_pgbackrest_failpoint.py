"""Engine pgbackrest when the watcher dies in the middle of a restore: a move's process
is killed (SIGKILL) once its new host has restored and been promoted, while the old
host keeps taking writes. The resumed run never uses that host (another run's restore
may still be in flight into it): it restores a fresh one, which must replay the live
database's history, not the abandoned host's (which archived nothing: a host archives
from its cutover on), and start once, whole."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from failover.engine import Engine
from tests.helpers import FAILOVER
from tests.helpers import env_for
from tests.test_pgbackrest import PORT
from tests.test_pgbackrest import deployed
from tests.test_pgbackrest import pg_root  # noqa: F401 - a fixture
from tests.test_pgbackrest import query
from tests.test_pgbackrest import step
from tests.test_pgbackrest import world  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(600)


def the_move(engine: Engine) -> dict[str, Any]:
    return next((e for e in engine.store.events("db", limit=5) if e["kind"] == "move"), {})


def promoted_host(engine: Engine, proc: subprocess.Popen[str]) -> str:
    """The move's new host, once its restore step promoted it (out of recovery)."""
    import psycopg

    for _ in range(2400):
        assert proc.poll() is None, proc.communicate()
        event = the_move(engine)
        host = (event.get("data") or {}).get("host") or {}
        steps = {s["name"]: s["status"] for s in event.get("steps", [])}
        if steps.get("restore") == "in_progress" and host.get("address"):
            conninfo = f"host={host['address']} port={PORT} user=postgres connect_timeout=2"
            with contextlib.suppress(psycopg.Error), psycopg.connect(conninfo) as conn:
                if conn.execute("SELECT NOT pg_is_in_recovery()").fetchall() == [(True,)]:
                    return str(host["host_id"])
        time.sleep(0.05)
    raise AssertionError("the new host was never promoted")


def test_a_move_killed_after_its_host_was_promoted_resumes_on_a_fresh_host_losing_nothing(
    world: Any,  # noqa: F811 - the fixture imported above
    pg_root: Path,  # noqa: F811
    project: Path,
) -> None:
    engine = deployed(world, pg_root)
    query(engine, "INSERT INTO t SELECT FROM generate_series(1, 200)")
    live = engine.store.service("db").active
    move = subprocess.Popen(
        [FAILOVER, "move", "db", "--to", "beta", "--yes", "-c", str(project / "failover.yaml")],
        env=env_for(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    abandoned = promoted_host(engine, move)
    move.send_signal(signal.SIGKILL)
    move.communicate(timeout=30)
    assert engine.store.service("db").active == live  # never cut over
    time.sleep(3)  # the abandoned host, still running, archives what it would
    query(engine, "INSERT INTO t SELECT FROM generate_series(1, 100)")  # the old host serves

    for _ in range(100):  # the next rounds resume the run
        engine.check(["db"])
        if the_move(engine)["status"] != "in_progress":
            break
        time.sleep(1)
    event = the_move(engine)
    assert event["status"] == "succeeded", event
    attempts = [a["result"] for a in event["data"]["attempts"]]
    assert any("left a restore into it in flight" in str(a) for a in attempts), attempts
    active = engine.store.service("db").active
    assert active is not None and active["provider"] == "beta"
    assert active["host_id"] != abandoned
    detail = step(engine, "move")
    assert "restored backup" in detail and "NOT replayed" not in detail, detail
    # Every row the old host acknowledged, none from an empty start; one promotion.
    assert query(engine, "SELECT count(*) FROM t") == [(300,)]
    # The new host archives from its cutover on, never before (the abandoned one never).
    assert f"WAL archiving opened on {active['host_id']}" in step(engine, "move", "cutover")
    ((timeline,),) = query(engine, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")
    assert int(timeline, 16) == 2, timeline
    query(engine, "INSERT INTO t DEFAULT VALUES")


class RestoreKiller(threading.Thread):
    """SIGKILLs the first ``pgbackrest restore`` from repository 1 under ``root``."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root, self.killed, self.stop = str(root).encode(), 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and not self.killed:
            for proc in Path("/proc").iterdir():
                with contextlib.suppress(OSError):
                    args = (proc / "cmdline").read_bytes().split(b"\0")
                    if b"restore" in args and b"--repo=1" in args and self.root in b" ".join(args):
                        os.kill(int(proc.name), signal.SIGKILL)
                        self.killed += 1
                        break
            time.sleep(0.01)


def test_a_restore_killed_on_the_new_host_goes_on_from_the_next_store_never_empty(
    world: Any,  # noqa: F811
    pg_root: Path,  # noqa: F811
) -> None:
    engine = deployed(world, pg_root)
    query(engine, "INSERT INTO t SELECT FROM generate_series(1, 200)")
    killer = RestoreKiller(pg_root)
    killer.start()
    moved = engine.run("db", "move", reason="test", to="beta")
    killer.stop.set()
    killer.join(10)
    assert moved.ok, moved.message
    assert killer.killed == 1
    detail = step(engine, "move")
    assert "from store two (repository 2)" in detail, detail
    assert "failed first: repo1: exit 137" in detail, detail  # the journal says why
    assert query(engine, "SELECT count(*) FROM t") == [(200,)]
