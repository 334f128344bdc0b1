"""Issue 21, item 12: a machine whose host key no longer matches its pin, seen through
the real CLI and the session's real sshd (tests/sshd.py).

The key the machine offers stays the same; the pin in the config changes, which is the
same refusal from the client's side as a machine whose key changed (asyncssh compares
the offered key with the pin during the key exchange, before anything is sent).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import dns_values
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import live_hosts
from tests.sshd import Sshd
from tests.sshd import keygen
from tests.test_ssh_e2e import configure
from tests.test_ssh_e2e import supervisors


@pytest.fixture
def machines(project: Path) -> Iterator[Path]:
    yield project
    for pid in supervisors(project).values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def pin(config: Path, key: str) -> None:
    data = yaml.safe_load(config.read_text())
    own = next(p for p in data["providers"] if p["name"] == "own")
    for machine in own["machines"]:
        machine["host_key"] = key
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def moves(config: Path) -> list[dict[str, Any]]:
    return [e for e in failover_json("history", config=config)["events"] if e["kind"] == "move"]


def test_a_changed_host_key_under_the_live_host_warns_and_the_fence_is_retried(
    running_sshd: Sshd, machines: Path
) -> None:
    config = configure(machines, running_sshd, ssh_first=True)
    failover("deploy", config=config, check=True)
    assert failover("check", config=config).returncode == 0
    pin(config, keygen(machines / "other", "other"))

    check = failover("check", config=config)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "cannot be trusted" in check.stdout and "host key refused" in check.stdout

    move = failover("move", "web", "--to", "beta", "--yes", config=config)
    text = move.stdout + move.stderr
    assert "NOT fenced yet" in text, text
    (event,) = moves(config)
    fence = next(s for s in event["steps"] if s["name"] == "fence")
    assert fence["status"] == "deferred", fence
    assert "NOT destroyed" in fence["detail"] and "host key refused" in fence["detail"]
    # Out of DNS, but still running on its machine: nothing could be sent to it.
    assert dns_values(config) == [live_hosts(config)[0]["address"]]
    assert list(supervisors(machines)) == ["m1"]

    for _ in range(2):  # every check retries, and says so
        check = failover("check", config=config)
        assert check.returncode == 1, check.stdout + check.stderr
        assert "NOT fenced yet" in check.stdout, check.stdout
    assert list(supervisors(machines)) == ["m1"]

    pin(config, running_sshd.host_key)
    check = failover("check", config=config)  # fences it at last
    assert check.returncode == 0, check.stdout
    assert supervisors(machines) == {}
    doc = failover_json("status", config=config)["services"][0]
    assert doc["active"]["provider"] == "beta"
    json.dumps(doc)


def test_the_supervisors_files_on_a_machine_are_for_its_owner_only(
    running_sshd: Sshd, machines: Path
) -> None:
    config = configure(machines, running_sshd, ssh_first=True)
    failover("deploy", config=config, check=True)
    folder = machines / "machines" / "m1" / "web"
    modes = {n: (folder / n).stat().st_mode & 0o777 for n in ("log", "phase", "pid")}
    assert modes == {"log": 0o600, "phase": 0o600, "pid": 0o600}, modes
