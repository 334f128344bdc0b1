"""Issue 21: runs that finish another's work say so, and the generation is a fencing
token that only grows. Real CLI processes on the local provider; a crash is
``FAILOVER_FAILPOINT`` (exit 137, as SIGKILL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import kill_active
from tests.helpers import write_config


def three(project: Path) -> Path:
    data = base_config()
    data["providers"] = [{"name": p, "type": "local"} for p in ("alpha", "beta", "gamma")]
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    return config


def active(config: Path) -> dict[str, Any]:
    return dict(failover_json("status", config=config)["services"][0]["active"])


def crash_move(config: Path, to: str, step: str) -> None:
    crashed = failover(
        "move",
        "web",
        "--to",
        to,
        "--yes",
        config=config,
        env={"FAILOVER_FAILPOINT": f"after:{step}"},
    )
    assert crashed.returncode == 137, crashed.stdout + crashed.stderr


def test_a_move_that_first_finishes_an_interrupted_move_still_goes_where_asked(
    project: Path,
) -> None:
    config = three(project)
    crash_move(config, "beta", "cutover")
    move = failover("move", "web", "--to", "gamma", "--yes", config=config)
    text = move.stdout + move.stderr
    assert move.returncode == 0, text
    # The interrupted move to beta is finished and said; then the move asked for runs.
    assert "first finished an interrupted move" in text and "lives on beta" in text, text
    assert active(config)["provider"] == "gamma"
    moves = [e for e in failover_json("history", config=config)["events"] if e["kind"] == "move"]
    assert [(e["status"], (e["to"] or {}).get("provider")) for e in moves] == [
        ("succeeded", "gamma"),
        ("succeeded", "beta"),
    ]


def test_a_check_that_finished_an_interrupted_move_exits_1(project: Path) -> None:
    config = three(project)
    crash_move(config, "beta", "cutover")
    check = failover("check", config=config)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "first:" in check.stdout and "lives on beta" in check.stdout, check.stdout
    assert failover("check", config=config).returncode == 0


def test_the_generation_keeps_growing_after_destroy_and_deploy(project: Path) -> None:
    config = three(project)
    assert failover("move", "web", "--to", "beta", "--yes", config=config).returncode == 0
    before = failover_json("status", config=config)["services"][0]["generation"]
    assert before == 2
    assert failover("destroy", "web", "--yes", config=config).returncode == 0
    failover("deploy", config=config, check=True)
    assert failover_json("status", config=config)["services"][0]["generation"] == 3
    assert failover("check", config=config).returncode == 0


def test_manual_moves_do_not_open_the_circuit_breaker(project: Path) -> None:
    data = base_config(health={"fall": 1}, policy={"max_moves_per_hour": 1})
    data["providers"] = [{"name": p, "type": "local"} for p in ("alpha", "beta", "gamma")]
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    for to in ("beta", "gamma"):
        assert failover("move", "web", "--to", to, "--yes", config=config).returncode == 0
    kill_active(config)
    check = failover("check", config=config)
    assert check.returncode == 1 and "moved from gamma" in check.stdout, check.stdout
    kill_active(config)
    check = failover("check", config=config)  # one failover this hour: now it holds
    assert check.returncode == 2 and "circuit breaker open: 1 failovers" in check.stdout
