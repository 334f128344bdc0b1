"""A run interrupted by the version before the engine was split is finished by this one.

The journals below are the bytes that version wrote (captured from a `deploy` killed by
``FAILOVER_FAILPOINT``), with only the host's id, address, pid and deadline filled in
for this machine. The typed records must read them and the run must resume where it
stopped: the same event, the same host, no second host.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from failover import config as cfg
from failover.engine import Engine
from failover.render import host_spec
from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import live_hosts
from tests.helpers import write_config

AFTER_PROVISION = (
    '{"expected_generation": 0, "to": null, "attempt": 0, "attempts": [], "candidates": '
    '["alpha", "beta"], "pid": PID, "skipped": {}, "deadline": DEADLINE, "host": {"provider": '
    '"alpha", "host_id": "HOST_ID", "name": "web-g1-alpha", "address": "ADDRESS", '
    '"generation": 1, "zone": "loopback"}}'
)
AFTER_A_FAILED_CANDIDATE = (
    '{"expected_generation": 0, "to": null, "attempt": 1, "attempts": [{"provider": "alpha", '
    '"step": "wait_ready", "result": "not running (pending) within ready_timeout (10s); host '
    'destroyed"}], "candidates": ["alpha", "beta"], "pid": PID, "skipped": {}, "deadline": '
    'DEADLINE, "host": null}'
)


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def journal(engine: Engine, data: str, steps: list[tuple[str, str]]) -> int:
    event_id = engine.store.start_event("web", "deploy", "deploy", None, json.loads(data), None)
    for seq, (name, detail) in enumerate(steps):
        engine.store.step(event_id, seq, name, "in_progress", "", None)
        engine.store.step(event_id, seq, name, "succeeded", detail, None)
    return event_id


def fill(template: str, **values: object) -> str:
    for key, value in values.items():
        template = template.replace(key.upper(), str(value))
    return template


def test_a_deploy_stopped_after_provision_resumes_on_its_host(project: Path) -> None:
    path = write_config(project, base_config())
    engine = Engine(cfg.load(path))
    try:
        svc = engine.config.services["web"]
        host = engine.provider("alpha").create_host(
            host_spec("web", svc, generation=1, provider="alpha")
        )
        data = fill(
            AFTER_PROVISION,
            pid=dead_pid(),
            deadline=time.time() + 600,
            host_id=host.id,
            address=host.address,
        )
        event_id = journal(
            engine,
            data,
            [
                ("lock", "held by vm:3614:b5dbbf9e (token 1)"),
                ("select", "candidates: alpha, beta"),
                ("provision", f"{host.id} (web-g1-alpha) on alpha"),
            ],
        )
    finally:
        engine.close()
    result = failover("check", "--json", config=path)
    assert result.returncode == 0, result.stdout + result.stderr
    events = json.loads(failover("history", "--json", config=path, check=True).stdout)["events"]
    assert [e["id"] for e in events] == [event_id]
    (event,) = events
    assert event["status"] == "succeeded"
    assert [s["status"] for s in event["steps"]] == ["succeeded"] * 9
    assert event["to"]["host_id"] == host.id
    assert [h["id"] for h in live_hosts(path)] == [host.id]


def test_a_deploy_stopped_after_a_failed_candidate_goes_on_with_the_next(project: Path) -> None:
    path = write_config(project, base_config())
    engine = Engine(cfg.load(path))
    try:
        data = fill(AFTER_A_FAILED_CANDIDATE, pid=dead_pid(), deadline=time.time() + 600)
        event_id = journal(
            engine,
            data,
            [("lock", "held by vm:3614:b5dbbf9e (token 1)"), ("select", "candidates: alpha, beta")],
        )
    finally:
        engine.close()
    result = failover("check", "--json", config=path)
    assert result.returncode == 0, result.stdout + result.stderr
    (event,) = json.loads(failover("history", "--json", config=path, check=True).stdout)["events"]
    assert event["id"] == event_id and event["status"] == "succeeded"
    assert event["to"]["provider"] == "beta"
    assert [a["provider"] for a in event["attempts"]] == ["alpha"]
    assert len(live_hosts(path)) == 1
