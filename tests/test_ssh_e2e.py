"""Failover onto and off plain machines, through the real CLI and a real sshd.

The machines are two entries reaching the session's sshd (tests/sshd.py), each with its
own folder and loopback address. No systemd there: the hosts run under the setsid
supervisor with a pid file.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import base_config
from tests.helpers import dns_values
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import kill_active
from tests.helpers import live_hosts
from tests.helpers import wait_for
from tests.helpers import write_config
from tests.sshd import Sshd
from tests.sshd import keygen

STEPS = [
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
NET = f"127.82.{random.randint(1, 250)}"


def ssh_provider(sshd: Sshd, root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "own",
        "type": "ssh",
        "identity_file": str(sshd.client_key),
        "python": sys.executable,
        "connect_timeout": "3s",
        "machines": [
            {
                "address": f"{NET}.{n}",
                "name": f"m{n}",
                "ssh": sshd.endpoint(),
                "host_key": sshd.host_key,
                "dir": str(root / "machines" / f"m{n}"),
            }
            for n in (1, 2)
        ],
        **extra,
    }


def configure(project: Path, sshd: Sshd, *, ssh_first: bool = False, **service: Any) -> Path:
    data = base_config(**service)
    own = ssh_provider(sshd, project)
    local = {"name": "beta" if ssh_first else "alpha", "type": "local"}
    data["providers"] = [own, local] if ssh_first else [local, own]
    return write_config(project, data)


def supervisors(project: Path) -> dict[str, int]:
    """The live supervisors on the machines, by machine, from their pid files."""
    out = {}
    for pid_file in sorted((project / "machines").glob("m*/*/pid")):
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] != "Z":
                out[pid_file.parent.parent.name] = pid
    return out


@pytest.fixture
def machines(project: Path) -> Iterator[Path]:
    yield project
    for pid in supervisors(project).values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def get(address: str) -> bytes:
    with urllib.request.urlopen(f"http://{address}:8080/", timeout=5) as response:
        return bytes(response.read())


def history(config: Path) -> list[dict[str, Any]]:
    events = failover_json("history", config=config)["events"]
    return [e for e in events if e["kind"] == "failover"]


def test_local_to_ssh_end_to_end(running_sshd: Sshd, machines: Path) -> None:
    config = configure(machines, running_sshd)
    failover("deploy", config=config, check=True)
    kill_active(config)
    check = failover("check", config=config)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "moved from alpha to own" in check.stdout
    status = failover_json("status", config=config)["services"][0]
    active = status["active"]
    assert active["provider"] == "own" and active["address"] == f"{NET}.1"
    assert dns_values(config) == [f"{NET}.1"]
    # The CLI and its SSH sessions are gone; the service still answers on the machine.
    assert b"on own" in get(f"{NET}.1")
    assert list(supervisors(machines)) == ["m1"]
    (failed_over,) = history(config)
    assert failed_over["status"] == "succeeded"
    assert [s["name"] for s in failed_over["steps"]] == STEPS
    assert live_hosts(config) == []  # the local host was fenced
    assert failover("check", config=config).returncode == 0


def test_the_old_host_on_a_machine_is_fenced(running_sshd: Sshd, machines: Path) -> None:
    config = configure(machines, running_sshd, ssh_first=True, health={"fall": 1})
    failover("deploy", config=config, check=True)
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["provider"] == "own"
    folder = machines / "machines" / "m1" / "web"
    assert json.loads((folder / "host.json").read_text())["id"] == status["active"]["host_id"]
    # The service dies on the machine, supervisor and all.
    pid = supervisors(machines)["m1"]
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: "m1" not in supervisors(machines), what="the host to die")
    check = failover("check", config=config)
    assert "moved from own to beta" in check.stdout, check.stdout + check.stderr
    assert not folder.exists()  # destroyed: stopped and its files removed
    assert supervisors(machines) == {}
    assert [h["provider"] for h in live_hosts(config)] == ["beta"]
    assert dns_values(config) == [live_hosts(config)[0]["address"]]


@pytest.mark.parametrize("step", STEPS)
def test_crash_after_each_step_is_finished(running_sshd: Sshd, machines: Path, step: str) -> None:
    config = configure(machines, running_sshd, health={"fall": 1})
    failover("deploy", config=config, check=True)
    kill_active(config)
    crashed = failover("check", config=config, env={"FAILOVER_FAILPOINT": f"after:{step}"})
    assert crashed.returncode == 137, crashed.stdout + crashed.stderr
    for _ in range(3):
        failover("check", config=config)
    (event,) = history(config)
    assert event["status"] == "succeeded"
    assert [s["name"] for s in event["steps"]] == STEPS
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["provider"] == "own"
    assert dns_values(config) == [status["active"]["address"]]
    # One host serves: the machine's, created once (no second host on the other machine).
    assert list(supervisors(machines)) == ["m1"]
    assert live_hosts(config) == []
    assert failover("check", config=config).returncode == 0


def test_a_wrong_host_key_is_refused_with_both_fingerprints(
    running_sshd: Sshd, machines: Path
) -> None:
    import asyncssh

    wrong = keygen(machines / "wrong", "wrong")
    data = base_config()
    own = ssh_provider(running_sshd, machines)
    for m in own["machines"]:
        m["host_key"] = wrong
    data["providers"] = [own]
    config = write_config(machines, data)
    offered = asyncssh.import_public_key(running_sshd.host_key).get_fingerprint("sha256")
    pinned = asyncssh.import_public_key(wrong).get_fingerprint("sha256")
    before = running_sshd.logins()

    doctor = failover("doctor", config=config)
    assert doctor.returncode != 0
    assert offered in doctor.stdout and pinned in doctor.stdout, doctor.stdout + doctor.stderr
    deploy = failover("deploy", config=config)
    assert deploy.returncode != 0
    text = deploy.stdout + deploy.stderr
    assert offered in text and pinned in text, text
    assert running_sshd.endpoint() in text
    # No login happened, so nothing was run: no folder, no marker, no accepted key.
    assert running_sshd.logins() == before
    assert not (machines / "machines").exists()


def test_a_refused_key_makes_the_provider_blocked(running_sshd: Sshd, machines: Path) -> None:
    data = base_config()
    data["providers"] = [
        {"name": "alpha", "type": "local"},
        ssh_provider(running_sshd, machines, identity_file=str(running_sshd.stranger_key)),
    ]
    config = write_config(machines, data)
    report = failover_json("doctor", config=config)
    (own,) = [p for p in report["providers"] if p["name"] == "own"]
    assert own["state"] == "blocked", own
    assert "login refused" in own["reason"]


def test_init_writes_an_ssh_starter_that_validates(tmp_path: Path) -> None:
    path = tmp_path / "failover.yaml"
    assert failover("init", str(path), "--provider", "ssh").returncode == 0
    text = path.read_text()
    for field in ("host_key:", "known_hosts", "identity_file:", "ssh:", "type: static"):
        assert field in text
    done = failover("validate", config=path)
    assert done.returncode == 0, done.stdout + done.stderr
