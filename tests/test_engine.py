"""The engine through its Python API (what the CLI calls), with real local hosts."""

from __future__ import annotations

from pathlib import Path

from failover import config as cfg
from failover.engine import Engine
from failover.probes import ProbeResult
from tests.helpers import base_config
from tests.helpers import kill_active
from tests.helpers import live_hosts
from tests.helpers import write_config


def engine_for(project: Path, **service: object) -> tuple[Engine, Path]:
    path = write_config(project, base_config(**service))
    return Engine(cfg.load(path)), path


def test_deploy_failover_and_history_through_the_api(project: Path) -> None:
    engine, path = engine_for(project, health={"fall": 1})
    try:
        assert engine.run("web", "deploy", reason="test").status == "succeeded"
        kill_active(path)
        (result,) = engine.check(["web"])
        assert result.action == "failover" and result.exit_code == 1
        (status,) = engine.status(["web"])
        assert status["active"]["provider"] == "beta" and status["generation"] == 2
        kinds = [e["kind"] for e in engine.history("web", 10)]
        assert kinds == ["failover", "deploy"]
    finally:
        engine.close()


def test_a_round_about_a_replaced_host_never_moves_the_service_again(project: Path) -> None:
    """Two watchers probe the dead host; one moves the service; the other's round, which
    saw the old host, must be dropped instead of starting a second failover."""
    slow, path = engine_for(project, health={"fall": 1})
    fast = Engine(cfg.load(path))
    try:
        slow.run("web", "deploy", reason="test")
        kill_active(path)
        stale_row = slow.store.service("web")  # what the slow watcher probed
        (moved,) = fast.check(["web"])
        assert moved.action == "failover"
        failed = [ProbeResult("http", False, 0.01, "connection refused")]
        late = slow.judge("web", stale_row, failed)
        assert late.action == "none" and late.exit_code == 1
        assert "by another run during this round" in late.message
        events = slow.history("web", 10)
        assert [e["kind"] for e in events] == ["failover", "deploy"]
        assert len(live_hosts(path)) == 1
    finally:
        slow.close()
        fast.close()


def test_interrupted_run_is_left_for_the_next_command(project: Path) -> None:
    path = write_config(project, base_config(health={"fall": 1}))
    stopping = Engine(cfg.load(path), should_stop=lambda: True)
    try:
        outcome = stopping.run("web", "deploy", reason="test")
        assert outcome.status == "interrupted"
    finally:
        stopping.close()
    engine = Engine(cfg.load(path))
    try:
        assert engine.store.open_event("web") is not None
        (result,) = engine.check(["web"])  # finishes the deploy, then probes it
        assert result.exit_code == 0, result.message
        assert engine.store.open_event("web") is None
    finally:
        engine.close()
