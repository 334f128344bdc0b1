"""Found while making the fault lab's clock step real: a watcher whose wall clock stepped
back (an NTP step, a VM resumed from a snapshot) saw the last backup's time in its
future and took no backup until its clock caught up, so for as long as the step (the
lab's steps reach 900 s) the recovery point grew past ``data.every`` with nothing said.
A last backup later than now is taken as a clock that moved: the round backs up.

The step is the lab's own (``clockshift/sitecustomize.py`` on the CLI's path): the
``failover check`` that runs the data round is the one whose clock moved."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import APP
from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import write_config
from tests.lab.run import CLOCKSHIFT

pytestmark = pytest.mark.timeout(600)  # a few CLI calls, on a loaded machine


def test_a_clock_stepped_back_does_not_stop_the_backups(project: Path) -> None:
    conf = base_config(
        run={"command": APP + " --db data/app.db"},
        data={"backup": "{python} -m failover.demo_app dump data/app.db",
              "restore": "{python} -m failover.demo_app load data/app.db", "every": "1s"},
    )  # fmt: skip
    (project / "offsite").mkdir()
    conf["stores"] = [{"name": "offsite", "type": "dir", "path": str(project / "offsite")}]
    path = write_config(project, conf)
    failover("deploy", "web", config=path, check=True)
    failover("backup", config=path, check=True)
    clock = project / "clock"
    clock.write_text("-600\n")
    stepped = {
        "PYTHONPATH": f"{CLOCKSHIFT}:{Path(__file__).parents[2]}",
        "LAB_CLOCK_FILE": str(clock),
    }

    def backups() -> int:
        return len(failover_json("backups", config=path)["backups"])

    assert backups() == 1
    time.sleep(1.5)
    failover("check", config=path)  # the control: a check backs up once `every` passed
    assert backups() == 2
    failover("check", config=path, env=stepped)
    assert backups() == 3
