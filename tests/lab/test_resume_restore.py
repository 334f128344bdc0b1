"""Found by the fault lab (seed 1029: the leader paused past its lease in the middle of a
restore, another watcher resumed the run and cut over, then the paused one woke up and
its restore replaced the data the new host had acknowledged since). A run resumed at a
restore another run left in flight never restores into that host: it destroys it and
provisions a fresh one. Here the run that left it is killed (SQLite hands its lock over
at once), which is the same journal state without the timing."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import APP
from tests.helpers import FAILOVER
from tests.helpers import base_config
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import host_records
from tests.helpers import wait_for
from tests.helpers import write_config

pytestmark = pytest.mark.timeout(180)


def test_a_run_resumed_mid_restore_restores_into_a_fresh_host(project: Path) -> None:
    conf = base_config(
        run={"command": APP + " --db data/app.db"},
        data={"backup": "{python} -m failover.demo_app dump data/app.db",
              "restore": "{python} -m failover.demo_app load data/app.db", "every": "1h"},
    )  # fmt: skip
    (project / "offsite").mkdir()
    conf["stores"] = [{"name": "offsite", "type": "dir", "path": str(project / "offsite")}]
    path = write_config(project, conf)
    failover("deploy", "web", config=path, check=True)
    failover("backup", config=path, check=True)
    marker = project / "restoring"
    hung = copy.deepcopy(conf)
    hung["services"]["web"]["data"]["restore"] = f"touch {marker}; sleep 60"
    hung_path = write_config(project, hung, "hung.yaml")
    proc = subprocess.Popen(
        [FAILOVER, "move", "web", "--to", "beta", "--yes", "-c", str(hung_path)],
        env=env_for(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(marker.exists, timeout=90, what="the restore to start")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    left = [h for h in host_records(path) if h["provider"] == "beta"]
    assert len(left) == 1
    failover("check", config=path)  # finishes the interrupted move
    move = next(e for e in failover_json("history", config=path)["events"] if e["kind"] == "move")
    assert move["status"] == "succeeded", move
    active = failover_json("status", config=path)["services"][0]["active"]
    assert active["provider"] == "beta" and active["host_id"] != left[0]["id"]
    again = {h["id"]: h for h in host_records(path)}
    assert again[left[0]["id"]].get("destroyed"), again[left[0]["id"]]
    restores = [s for s in move["steps"] if s["name"] == "restore"]
    assert restores[-1]["status"] == "succeeded"
