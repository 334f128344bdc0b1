"""Progress of long work (issue 27, item 5): the steps on a terminal's stderr, the
result alone on stdout, and nothing of it when stdout is not a terminal; backups and
restores with their bytes and rate, on the terminal and on the status page."""

from __future__ import annotations

import itertools
import json
import os
import pty
import random
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

from failover.data.backup import BackupReader
from failover.data.backup import BackupWriter
from failover.data.backup import Sealer
from failover.data.meter import Meter
from failover.data.meter import Transfer
from failover.data.settings import DirStoreSettings
from failover.data.stores import open_store
from tests.helpers import FAILOVER
from tests.helpers import base_config
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import wait_for
from tests.helpers import write_config


class Reader(threading.Thread):
    """Everything a terminal's other side receives, as it comes."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.chunks = fd, list[bytes]()
        self.start()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the terminal's other side closed
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        """What was written, less rich's escape sequences."""
        plain = b"".join(self.chunks).decode(errors="replace")
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", plain)


class Terminal:
    """A failover command whose stdout is a terminal, and its stderr (a terminal too,
    unless ``stderr_tty`` is false: then a pipe, read at the end)."""

    def __init__(self, config: Path, *args: str, stderr_tty: bool = True) -> None:
        out_leader, out_follower = pty.openpty()
        err_leader, err_follower = pty.openpty() if stderr_tty else (-1, subprocess.PIPE)
        self.proc = subprocess.Popen(
            [FAILOVER, *args, "-c", str(config)],
            stdout=out_follower,
            stderr=err_follower,
            stdin=subprocess.DEVNULL,
            env=env_for({"TERM": "xterm", "COLUMNS": "160"}),
        )
        self.leaders = [fd for fd in (out_leader, err_leader) if fd >= 0]
        for fd in (out_follower, err_follower):
            if fd >= 0:
                os.close(fd)
        self.stdout = Reader(out_leader)
        self.stderr = Reader(err_leader) if stderr_tty else None

    def finish(self, timeout: float = 120) -> tuple[str, str]:
        """Wait for the command's end (it must succeed): its stdout and stderr."""
        piped = self.proc.communicate(timeout=timeout)[1] or b""
        for reader in (self.stdout, self.stderr):
            if reader is not None:
                reader.join(10)
        for fd in self.leaders:
            os.close(fd)
        stderr = self.stderr.text if self.stderr is not None else piped.decode()
        assert self.proc.returncode == 0, stderr
        return self.stdout.text, stderr


def test_a_move_on_a_terminal_shows_its_steps_on_stderr_only(project: Path) -> None:
    config = write_config(project, base_config())
    failover("deploy", config=config, check=True)
    stdout, stderr = Terminal(config, "move", "--to", "beta", "--yes", stderr_tty=False).finish()
    steps = [line.split()[0] for line in stderr.splitlines() if line.startswith("  ")]
    assert steps == [
        "lock",
        "select",
        "provision",
        "wait_ready",
        "restore",
        "verify",
        "cutover",
        "fence",
        "release",
    ]
    assert "web now lives on beta" in stdout and "provision" not in stdout
    quiet = failover("move", "--to", "alpha", "--yes", config=config, check=True)
    assert "provision" not in quiet.stdout + quiet.stderr


def test_the_step_in_flight_shows_its_elapsed_time_when_stderr_is_a_terminal(
    project: Path,
) -> None:
    config = write_config(project, base_config())
    failover("deploy", config=config, check=True)
    stdout, plain = Terminal(config, "move", "--to", "beta", "--yes").finish()
    # rich's live line: the step's name and the time it has taken so far.
    assert re.search(r"provision +0:00:0\d", plain), plain
    assert "0:00:0" not in stdout


# --------------------------------------------------------------------------- bytes and rate


class Clock:
    """A clock the test moves: throttling is checked by counting, never by waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_meter_reports_the_first_block_at_most_once_a_period_and_the_last() -> None:
    reports: list[Transfer] = []
    clock = Clock()
    with Meter("web", "restore", reports.append, total=102_400, every=0.5, clock=clock) as gauge:
        for _ in range(1024):  # 1024 blocks over 16 seconds, 32 a period
            gauge.add(100)
            clock.now += 1 / 64
    # The first block, then one per half second (31 more in 16 s), then the end.
    assert len(reports) == gauge.reports == 1 + 31 + 1
    assert [r.done for r in reports[:3]] == [100, 3300, 6500]
    # No rate before a second has passed: a first block's says nothing of the link.
    assert reports[0].rate is None and reports[0].text() == "100 B of 102.4 kB (0%)"
    assert reports[2].rate is not None and reports[2].text().endswith(", 6.5 kB/s")
    last = reports[-1]
    assert last.finished and last.done == last.total == 102_400
    assert last.rate == 6400 and last.text() == "102.4 kB of 102.4 kB (100%), 6.4 kB/s"
    assert not any(r.finished for r in reports[:-1])


def test_a_progress_display_that_fails_never_fails_the_copy() -> None:
    calls: list[int] = []

    def broken(report: Transfer) -> None:
        calls.append(report.done)
        raise RuntimeError("the terminal went away")

    gauge = Meter("web", "backup", broken, every=0.0)
    for _ in range(10):
        gauge.add(1)
    gauge.close()
    assert calls == [1] and gauge.done == 10  # dropped after its first failure


def test_a_backup_and_its_restore_report_every_byte_in_a_few_calls(tmp_path: Path) -> None:
    """The hook in the data plane: the writer counts what the backup command gives, the
    reader what the restore command gets (chunks from the pool); with the default period
    a fast copy reports its first block and its end, whatever the number of blocks."""
    (tmp_path / "store").mkdir()
    store = open_store(DirStoreSettings(name="d", type="dir", path=str(tmp_path / "store")))
    sealer = Sealer("k" * 32)
    stream = random.Random(27).randbytes(12 * 1024 * 1024)
    block = 64 * 1024
    written: list[Transfer] = []
    with Meter("web", "backup", written.append, every=3600) as gauge:
        writer = BackupWriter("web", [store], sealer, meter=gauge)
        for at in range(0, len(stream), block):
            writer.write(stream[at : at + block])
        manifest = writer.finish()
    assert len(stream) // block == 192  # blocks written ...
    assert [(r.done, r.finished) for r in written] == [(block, False), (len(stream), True)]
    read: list[Transfer] = []
    with Meter("web", "restore", read.append, total=manifest.length, every=3600) as gauge:
        reader = BackupReader(store, manifest, sealer, gauge)
        got = b"".join(iter(lambda: reader.read(block), b""))
    assert got == stream and len(manifest.chunks) > 20  # ... and chunks read
    assert [(r.done, r.total, r.finished) for r in read] == [
        (manifest.chunks[0][0], len(stream), False),
        (len(stream), len(stream), True),
    ]
    # Every chunk counted, on a meter that reports each one.
    each: list[Transfer] = []
    with Meter("web", "restore", each.append, total=manifest.length, every=0.0) as gauge:
        reader = BackupReader(store, manifest, sealer, gauge)
        while reader.read(block):
            pass
    assert len(each) == len(manifest.chunks) + 1
    assert [r.done for r in each[:-1]] == list(
        itertools.accumulate(size for size, _name in manifest.chunks)
    )


def test_a_restore_shows_its_bytes_and_rate_on_the_terminal_and_the_page(project: Path) -> None:
    gate = project / "gate"
    data = base_config(
        data={
            # Half, then after a second the other half and a pause: the backup's line
            # with its rate stays on the terminal long enough to be drawn.
            "backup": "head -c 1500000 /dev/urandom; sleep 1.2; head -c 1500000 /dev/urandom;"
            " sleep 1",
            # Held until the test has seen the restore under way; then it reads it all.
            "restore": f"while [ ! -e {gate} ]; do sleep 0.1; done; cat > restored.bin",
            "every": "1h",
        }
    )
    for name in ("offsite", "site"):
        (project / name).mkdir()
    data["stores"] = [
        {"name": "offsite", "type": "dir", "path": str(project / "offsite")},
        {"name": "site", "type": "dir", "path": str(project / "site")},
    ]
    data["services"]["web"]["data"]["stores"] = ["offsite"]
    data["status_page"] = {"stores": ["site"]}
    config = write_config(project, data)
    gate.touch()
    failover("deploy", config=config, check=True)
    gate.unlink()
    moving = Terminal(config, "move", "--to", "beta", "--yes")
    assert moving.stderr is not None
    published = project / "site" / "status" / "status.json"
    try:

        def restoring() -> list[dict[str, Any]]:
            try:
                doc = json.loads(published.read_text())
            except (OSError, ValueError):
                return []
            found = doc["services"][0].get("transfers") or []
            return [t for t in found if t["kind"] == "restore"]

        wait_for(restoring, timeout=120, what="the restore under way on the published page")
        (under_way,) = restoring()
        assert under_way["total_bytes"] == 3_000_000 and not under_way["total_estimated"]
        assert 0 < under_way["bytes"] < 3_000_000 and not under_way["finished"]
        index = project / "site" / "status" / "index.html"
        wait_for(lambda: "Restore under way" in index.read_text(), 30, "the page (after the json)")
        page = index.read_text()
        assert "Restore under way" in page and 'max="3000000"' in page
        assert re.search(r"restore</th>.*restore [0-9.]+ [kM]B of 3\.0 MB \(\d+%\)", page, re.S)
        # On the terminal: the bytes, the size and the rate (rich's live line), on stderr.
        shown = moving.stderr
        wait_for(
            lambda: re.search(r"restore web +[0-9.]+ [kM]B of 3\.0 MB \(\d+%\)", shown.text),
            timeout=60,
            what="the restore's line on the terminal",
        )
    finally:
        gate.touch()
        stdout, stderr = moving.finish()
    assert re.search(r"[0-9.]+ [kM]B/s", stderr)
    assert "/s" not in stdout and "web now lives on beta" in stdout
    # The final backup from the old host: no backup before it, so no size to expect.
    assert re.search(r"backup web +[0-9.]+ [kM]?B, [0-9.]+ [kM]?B/s", stderr)
    wait_for(lambda: not restoring(), timeout=60, what="the page after the restore")
    # `failover backup` on a terminal: the size to expect is the last backup's.
    stdout, stderr = Terminal(config, "backup").finish()
    assert re.search(r"backup web +[0-9.]+ [kM]B of about 3\.0 MB, [0-9.]+ [kM]B/s", stderr)
    assert "/s" not in stdout and "web: backup " in stdout
    # Not on a terminal: the result alone, no bytes going by.
    taken = failover("backup", config=config, check=True)
    assert "/s" not in taken.stdout + taken.stderr and "web" in taken.stdout


def test_a_terminal_that_fails_leaves_no_transfer_under_way_on_the_page(project: Path) -> None:
    from failover import config as cfg
    from failover.data.meter import meter
    from failover.engine import Engine

    def gone(report: Transfer) -> None:
        raise OSError("the terminal went away")

    engine = Engine(cfg.load(write_config(project, base_config())), on_transfer=gone)
    try:
        with meter(engine, "web", "restore", total=10) as gauge:
            gauge.add(4)
            assert [t.done for t in engine.publisher.transfers()["web"]] == [4]
        assert gauge.reports == 2 and engine.publisher.transfers() == {}
    finally:
        engine.close()
