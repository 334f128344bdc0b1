"""Progress of a long run on a terminal (issue 27, item 5): the steps on stderr, the
result alone on stdout, and nothing of it when stdout is not a terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

from tests.helpers import FAILOVER
from tests.helpers import base_config
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import write_config


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal's other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_a_move_on_a_terminal_shows_its_steps_on_stderr_only(project: Path) -> None:
    config = write_config(project, base_config())
    failover("deploy", config=config, check=True)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [FAILOVER, "move", "--to", "beta", "--yes", "-c", str(config)],
        stdout=follower,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env_for({"TERM": "xterm", "COLUMNS": "120"}),
    )
    os.close(follower)
    stdout = read_all(leader)
    _, stderr = proc.communicate(timeout=120)
    os.close(leader)
    assert proc.returncode == 0, stderr
    steps = [line.split()[0] for line in stderr.decode().splitlines() if line.startswith("  ")]
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
    out_leader, out_follower = pty.openpty()
    err_leader, err_follower = pty.openpty()
    proc = subprocess.Popen(
        [FAILOVER, "move", "--to", "beta", "--yes", "-c", str(config)],
        stdout=out_follower,
        stderr=err_follower,
        stdin=subprocess.DEVNULL,
        env=env_for({"TERM": "xterm", "COLUMNS": "120"}),
    )
    os.close(out_follower)
    os.close(err_follower)
    stdout = read_all(out_leader)
    stderr = read_all(err_leader)
    assert proc.wait(timeout=120) == 0, stderr
    os.close(out_leader)
    os.close(err_leader)
    # rich's live line: the step's name and the time it has taken so far.
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stderr)
    assert re.search(r"provision 0:00:0\d", plain), plain
    assert "0:00:0" not in stdout
