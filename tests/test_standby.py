"""Warm standby (policy.standby: warm, issue 16) with real local hosts: made by a
check, probed each round, taken by a failover without provisioning, made again after."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from failover import config as cfg
from failover.engine import Engine
from failover.engine import standby as warm
from tests.helpers import base_config
from tests.helpers import dns_values
from tests.helpers import live_hosts
from tests.helpers import pid_alive
from tests.helpers import wait_for
from tests.helpers import write_config


def engine_for(project: Path) -> tuple[Engine, Path]:
    data = base_config(health={"fall": 1}, policy={"standby": "warm"})
    path = write_config(project, data)
    return Engine(cfg.load(path)), path


def steps_of(event: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s.get("detail") or "" for s in event["steps"]}


def kill(host: dict[str, Any]) -> None:
    pid = int(host["pid"])
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what="host to die")


def test_a_failover_takes_the_warm_standby_and_a_new_one_is_made(project: Path) -> None:
    engine, path = engine_for(project)
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").status == "succeeded"
        (first,) = engine.check(["web"])
        assert first.state == "up"
        spare = warm.current(engine, "web")
        assert spare is not None and spare["provider"] == "beta" and spare["generation"] == 2
        row = engine.store.service("web")
        assert row.active is not None and dns_values(path) == [row.active["address"]]
        assert sorted(h["provider"] for h in live_hosts(path)) == ["alpha", "beta"]
        (shown,) = engine.status(["web"])
        assert shown["standby"]["host_id"] == spare["host_id"]
        made = engine.history("web", 1)[0]
        assert (made["kind"], made["status"]) == ("standby", "succeeded")

        (active,) = [h for h in live_hosts(path) if h["provider"] == "alpha"]
        kill(active)
        (moved,) = engine.check(["web"])
        assert moved.action == "failover", moved.message
        row = engine.store.service("web")
        assert row.active is not None and row.active["host_id"] == spare["host_id"]
        assert row.generation == 2 and dns_values(path) == [spare["address"]]
        failover = next(e for e in engine.history("web", 10) if e["kind"] == "failover")
        details = steps_of(failover)
        assert (
            "warm standby" in details["provision"]
            and "nothing to provision" in details["provision"]
        )
        assert details["wait_ready"].startswith("warm standby")
        # The next standby goes to the provider after beta in the list: alpha again.
        again = warm.current(engine, "web")
        assert again is not None and again["provider"] == "alpha" and again["generation"] == 3
        assert sorted(h["provider"] for h in live_hosts(path)) == ["alpha", "beta"]
        kinds = [e["kind"] for e in engine.history("web", 10)]
        assert kinds == ["standby", "failover", "standby", "deploy"]
    finally:
        engine.close()


def test_a_standby_that_fails_its_probes_is_replaced(project: Path) -> None:
    engine, path = engine_for(project)
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").status == "succeeded"
        engine.check(["web"])
        spare = warm.current(engine, "web")
        assert spare is not None
        (host,) = [h for h in live_hosts(path) if h["id"] == spare["host_id"]]
        kill(host)
        (verdict,) = engine.check(["web"])
        assert verdict.state == "up" and verdict.action == "none"  # the service is fine
        new = warm.current(engine, "web")
        assert new is not None and new["host_id"] != spare["host_id"]
        old = [h for h in engine.store.hosts("web") if h["host_id"] == spare["host_id"]]
        assert [h["role"] for h in old] == ["destroyed"]
        assert len(live_hosts(path)) == 2
        assert [e["kind"] for e in engine.history("web", 10)] == ["standby", "standby", "deploy"]
    finally:
        engine.close()


def test_without_the_setting_no_standby_is_made(project: Path) -> None:
    path = write_config(project, base_config())
    engine = Engine(cfg.load(path))
    try:
        assert engine.run("web", "deploy", reason="test").status == "succeeded"
        engine.check(["web"])
        assert warm.current(engine, "web") is None and len(live_hosts(path)) == 1
    finally:
        engine.close()


def test_a_drill_rehearses_on_the_standby_and_keeps_it_or_on_a_cold_host(
    project: Path,
) -> None:
    engine, path = engine_for(project)
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").status == "succeeded"
        engine.check(["web"])
        spare = warm.current(engine, "web")
        assert spare is not None and spare["provider"] == "beta"
        onto = engine.drill("web", "beta")
        assert onto.status == "succeeded", onto.message
        details = steps_of(onto.event or {})
        assert "warm standby" in details["provision"] and "kept" in details["teardown"]
        assert (warm.current(engine, "web") or {}).get("host_id") == spare["host_id"]
        cold = engine.drill("web", "beta", cold=True)
        assert cold.status == "succeeded", cold.message
        details = steps_of(cold.event or {})
        assert "warm standby" not in details["provision"] and "destroyed" in details["teardown"]
        alive = sorted(h["id"] for h in live_hosts(path))
        row = engine.store.service("web")
        assert row.active is not None
        assert alive == sorted([row.active["host_id"], spare["host_id"]])
    finally:
        engine.close()
