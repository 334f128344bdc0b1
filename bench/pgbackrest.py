"""Engine pgbackrest: the recovery point against ``archive_timeout``, and the restore
time against ``pg_basebackup`` of the same database.

    .venv/bin/python bench/pgbackrest.py [--cutoffs 20] [--timeouts 1,5] [--size-mb 1024]

(``--cutoffs 0`` or ``--size-mb 0`` leaves that part out.)

Runs as root (PostgreSQL runs as ``postgres``), with Debian's ``postgresql-15`` and
``pgbackrest``. For the restore, one cluster on 127.0.0.1 with the settings failover
renders for a service (``render_conf``/``postgres_conf``: archiving into a ``dir`` store):

- recovery point (``bench/_pgcut.py``): real failovers of a service on local providers
  under a steady writer, the live host's provider cut off at ``--cutoffs`` random
  instants; per cut-off the rows acknowledged and absent after the failover, the
  measured recovery point's age (the cut-off minus the newest present row's
  acknowledgement) and the one the failover reported (the cut-off minus the arrival of
  the last WAL segment replayed). Printed: median and worst, and their ratio to
  ``archive_timeout``.
- restore: a table of ``--size-mb`` (random text, so compression cannot hide it), one
  full backup, then ``pgbackrest restore`` into an empty folder against
  ``pg_basebackup -X stream`` from the live server on the same machine.

Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _pgcut import Cut  # noqa: E402  (bench/ is on sys.path when a bench runs)
from _pgcut import real_cutoffs  # noqa: E402

from failover.config import parse  # noqa: E402
from failover.data.engines.pgconf import CONF  # noqa: E402
from failover.data.engines.pgconf import DATA  # noqa: E402
from failover.data.engines.pgconf import postgres_conf  # noqa: E402
from failover.data.engines.pgconf import render_conf  # noqa: E402

BIN = "/usr/lib/postgresql/15/bin"
PORT = 55499


def as_pg(*cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    run = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd]
    return subprocess.run(run, check=True, capture_output=True, text=True, **kw)


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root, self.data, self.conf = root, root / "data", root / "data-pgbackrest"
        self.repo = root / "repo"
        for d in (self.conf / "spool", self.conf / "log", self.conf / "lock", self.conf / "run"):
            d.mkdir(parents=True)
        self.repo.mkdir()
        shutil.chown(root, "postgres", "postgres")
        for d in root.rglob("*"):
            shutil.chown(d, "postgres", "postgres")
        doc = {
            "version": 1,
            "dns": {"type": "local", "zone": "bench.test"},
            "providers": [{"name": "alpha", "type": "local"}],
            "stores": [{"name": "one", "type": "dir", "path": str(self.repo)}],
            "services": {
                "db": {
                    "domain": "db.bench.test",
                    "port": PORT,
                    "run": {"command": "true"},
                    "data": {"engine": "pgbackrest", "postgres": {"data_dir": str(self.data)}},
                }
            },
        }
        config = parse(yaml.safe_dump(doc), "bench.yaml")
        self.settings = (config.services["db"].data, config.stores)
        self.proc: subprocess.Popen[bytes] | None = None

    def fill(self, text: str) -> str:
        return text.replace(DATA, str(self.data)).replace(CONF, str(self.conf))

    def start(self) -> None:
        data, stores = self.settings
        as_pg(f"{BIN}/initdb", "-D", str(self.data), "--auth=trust")
        (self.conf / "pgbackrest.conf").write_text(self.fill(render_conf("db", data, stores, PORT)))
        (self.data / "failover.conf").write_text(self.fill(postgres_conf("db", data, "serve")))
        with (self.data / "postgresql.conf").open("a") as f:
            f.write("include_if_exists = 'failover.conf'\n")
        (self.conf / "archiving").touch()  # as after a cutover
        for path in (self.conf / "pgbackrest.conf", self.data / "failover.conf"):
            shutil.chown(path, "postgres", "postgres")
        postgres = [f"{BIN}/postgres", "-D", str(self.data), "-p", str(PORT)]
        postgres += ["-c", "listen_addresses=127.0.0.1"]
        self.proc = subprocess.Popen(
            ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *postgres],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(300):
            with contextlib.suppress(Exception):
                self.sql("SELECT 1")
                break
            time.sleep(0.1)
        self.pgbackrest("stanza-create")

    def pgbackrest(self, *args: str) -> str:
        conf = f"--config={self.conf}/pgbackrest.conf"
        return as_pg("pgbackrest", conf, "--stanza=db", *args).stdout

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            f"host=127.0.0.1 port={PORT} user=postgres dbname=postgres", autocommit=True
        )

    def sql(self, text: str) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cursor = conn.execute(text)
            return cursor.fetchall() if cursor.description else []

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: no wait for the archiver
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def recovery_points(root: Path, timeout: int, cutoffs: int) -> list[Cut]:
    """Real failovers under a steady writer, one per cut-off (see :mod:`_pgcut`)."""
    return real_cutoffs(root / f"cutoffs-{timeout}s", timeout, cutoffs)


def timed(fn: Any) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def restore_times(cluster: Cluster, size_mb: int) -> tuple[float, float, float]:
    """(backup, pgbackrest restore, pg_basebackup) seconds for a ``size_mb`` database."""
    rows = size_mb * 1024 * 1024 // 260
    cluster.sql("CREATE TABLE big (id bigint, pad text)")
    for start in range(0, rows, 200_000):
        cluster.sql(
            f"INSERT INTO big SELECT g, repeat(md5(random()::text) || md5(random()::text), 4) "
            f"FROM generate_series({start}, {min(rows, start + 200_000) - 1}) g"
        )
    cluster.sql("CHECKPOINT")
    # The backup waits for its last segment in the archive, behind the fill's WAL.
    full = ("--repo=1", "--archive-timeout=1800", "backup", "--type=full")
    backup = timed(lambda: cluster.pgbackrest(*full))
    target, copy = cluster.root / "restored", cluster.root / "basebackup"
    for d in (target, copy):
        d.mkdir(mode=0o700)
        shutil.chown(d, "postgres", "postgres")
    restore = timed(lambda: cluster.pgbackrest("--repo=1", "restore", f"--pg1-path={target}"))
    base = timed(
        lambda: as_pg(
            f"{BIN}/pg_basebackup", "-D", str(copy), "-X", "stream", "-h", "127.0.0.1",
            "-p", str(PORT), "-U", "postgres", "-c", "fast",
        )
    )  # fmt: skip
    return backup, restore, base


def show_cutoffs(timeout: int, cuts: list[Cut]) -> None:
    def line(name: str, ages: list[float]) -> str:
        median, worst = statistics.median(ages), max(ages)
        return (
            f"{name} median {median:.2f}s ({median / timeout:.2f}x), "
            f"worst {worst:.2f}s ({worst / timeout:.2f}x)"
        )

    lost = [c.lost for c in cuts]
    print(f"  archive_timeout {timeout}s: {line('measured age', [c.measured_s for c in cuts])}")
    reported = [c.reported_s for c in cuts if c.reported_s is not None]
    if reported:
        print(f"    {line('reported age', reported)} ({len(reported)} of {len(cuts)} reported)")
        gaps = [c.measured_s - c.reported_s for c in cuts if c.reported_s is not None]
        print(f"    measured minus reported: min {min(gaps):.2f}s, max {max(gaps):.2f}s")
    print(
        f"    rows lost median {statistics.median(lost):g}, worst {max(lost)} "
        f"(of {statistics.median(c.acked for c in cuts):g} acknowledged per round)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cutoffs", type=int, default=20)
    parser.add_argument("--timeouts", default="1,5", help="archive_timeout values, seconds")
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    root = Path(f"/tmp/bench-pgbackrest-{os.urandom(4).hex()}")
    root.mkdir(mode=0o755)
    try:
        if args.cutoffs:
            print(f"recovery point over {args.cutoffs} real cut-offs under steady writes:")
            for timeout in (int(t) for t in args.timeouts.split(",")):
                show_cutoffs(timeout, recovery_points(root, timeout, args.cutoffs))
        if args.size_mb:
            restore_part(root, args.size_mb)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def restore_part(root: Path, size_mb: int) -> None:
    cluster = Cluster(root / "restore")
    try:
        cluster.start()
        backup, restore, base = restore_times(cluster, size_mb)
        size = int(cluster.sql("SELECT pg_database_size('postgres')")[0][0]) / 1024**2
        print(f"a {size:.0f} MB database:")
        print(
            f"  pgbackrest restore {restore:.1f}s, pg_basebackup {base:.1f}s "
            f"({restore / base:.2f}x); the full backup took {backup:.1f}s"
        )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
