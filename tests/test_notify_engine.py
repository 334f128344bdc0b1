"""Notifications from real failovers (local hosts), to real local receivers.

Nothing here measures time: that a hanging receiver does not hold the move is shown by
order (the move has finished while the receiver is still holding the request)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.engine import Engine
from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import kill_active
from tests.helpers import write_config
from tests.receivers import http_receiver
from tests.receivers import smtp_server


def engine_with(project: Path, notify: list[dict[str, Any]], **service: Any) -> Engine:
    data = base_config(health={"fall": 1}, **service)
    data["notify"] = notify
    return Engine(cfg.load(write_config(project, data)))


def deployed(engine: Engine) -> None:
    assert engine.run("web", "deploy", reason="test").status == "succeeded"


def fail_over(engine: Engine, project: Path) -> None:
    kill_active(project / "failover.yaml")
    (verdict,) = engine.check(["web"])
    assert verdict.action == "failover", verdict.message


def test_every_receiver_gets_the_failover_once(project: Path) -> None:
    pytest.importorskip("aiosmtpd", reason="pip install aiosmtpd (the test extra)")
    with (
        http_receiver() as hook,
        http_receiver() as slack,
        http_receiver() as pd,
        smtp_server(project) as box,
    ):
        engine = engine_with(
            project,
            [
                {"type": "webhook", "url": hook.url + "/h", "secret": "hook-secret-9"},
                {"type": "slack", "url": slack.url + "/services/T/B/C"},
                {"type": "pagerduty", "routing_key": "rk-1234", "url": pd.url + "/v2/enqueue"},
                {
                    "type": "email",
                    "server": f"127.0.0.1:{box.port}",
                    "from": "failover@example.test",
                    "to": ["ops@example.test"],
                    "username": "ops",
                    "password": "s3cret-pass",
                    "ca_file": str(box.ca),
                },
            ],
        )
        try:
            deployed(engine)
            fail_over(engine, project)
            assert engine.notifier.drain(60)
            engine.check(["web"])  # a healthy round on the new host
            assert engine.notifier.drain(60)
            rows = engine.store.deliveries()
        finally:
            engine.close()
    (req,) = hook.requests  # once, not again on the next round
    body = req.json()
    assert body["event"] == "failover" and body["status"] == "succeeded"
    assert body["from"]["provider"] == "alpha" and body["to"]["provider"] == "beta"
    assert body["generation"] == 2
    sig = "sha256=" + hmac.new(b"hook-secret-9", req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["X-Failover-Signature"], sig)
    assert "from alpha" in slack.requests[0].json()["text"] and len(slack.requests) == 1
    assert pd.requests == []  # a failover that worked pages nobody (PagerDuty's default)
    assert len(box.messages) == 1 and "failover succeeded" in box.messages[0]["data"]
    sent = sorted((r["target"], r["status"]) for r in rows if r["event"] == "failover")
    assert sent == [("email-3", "sent"), ("slack-1", "sent"), ("webhook-0", "sent")]


def test_a_hanging_receiver_does_not_hold_the_failover(project: Path) -> None:
    with http_receiver("hang") as hook:
        engine = engine_with(project, [{"type": "webhook", "url": hook.url, "timeout": "20s"}])
        try:
            deployed(engine)
            fail_over(engine, project)
            # The failover is done and journaled while the receiver still holds the request.
            assert engine.store.service("web").generation == 2
            _wait_until(lambda: hook.hanging == 1, engine)
            assert hook.hanging == 1 and not hook.release.is_set()
            statuses = [r["status"] for r in engine.store.deliveries(event="failover")]
            assert statuses == ["sending"]
            hook.release.set()
            assert engine.notifier.drain(60)
            statuses = [r["status"] for r in engine.store.deliveries(event="failover")]
            assert statuses == ["sent"]
        finally:
            engine.close()


def _wait_until(predicate: Any, engine: Engine) -> None:
    from tests.helpers import wait_for

    wait_for(predicate, 20, "the receiver to get the request")


def test_a_failing_receiver_is_retried_next_rounds_then_given_up(project: Path) -> None:
    with http_receiver("fail") as hook:
        notify = [{"type": "webhook", "url": hook.url, "retries": 0, "retry_rounds": 2}]
        engine = engine_with(project, notify)
        try:
            deployed(engine)
            fail_over(engine, project)  # the move succeeds though the receiver answers 500
            assert engine.store.service("web").active["provider"] == "beta"
            assert engine.notifier.drain(60)
            assert len(hook.requests) == 1
            for _ in range(4):
                engine.check(["web"])
                assert engine.notifier.drain(60)
            (row,) = engine.store.deliveries(event="failover")
        finally:
            engine.close()
    assert len(hook.requests) == 3  # the first round and two more, never a fourth
    assert row["status"] == "gave_up" and "HTTP 500" in row["detail"] and row["rounds"] == 3


def test_pagerduty_is_paged_by_the_circuit_breaker_and_resolved_when_healthy(
    project: Path,
) -> None:
    with http_receiver() as pd, http_receiver() as hook:
        notify = [
            {"type": "pagerduty", "routing_key": "rk-5678", "url": pd.url + "/v2/enqueue"},
            {"type": "webhook", "url": hook.url},
        ]
        engine = engine_with(project, notify, policy={"max_moves_per_hour": 0})
        try:
            deployed(engine)
            kill_active(project / "failover.yaml")
            for _ in range(2):  # the breaker stays open: paged once, not every round
                (verdict,) = engine.check(["web"])
                assert verdict.action == "circuit_breaker"
                assert engine.notifier.drain(60)
            assert engine.run("web", "move", reason="by hand", to="beta").ok
            engine.check(["web"])  # healthy on beta: the incident is resolved
            assert engine.notifier.drain(60)
            engine.check(["web"])
            assert engine.notifier.drain(60)
        finally:
            engine.close()
    actions = [r.json()["event_action"] for r in pd.requests]
    assert actions == ["trigger", "resolve"]
    trigger, resolve = (r.json() for r in pd.requests)
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert trigger["payload"]["class"] == "circuit_breaker"
    events = [r.json()["event"] for r in hook.requests]
    # The incident the breaker opened is closed where it was told, too (issue 21).
    assert events == ["circuit_breaker", "move", "resolved"]


def test_a_one_shot_check_sends_before_it_exits(project: Path) -> None:
    with http_receiver() as hook:
        data = base_config(health={"fall": 1})
        data["notify"] = [{"type": "webhook", "url": hook.url}]
        config = write_config(project, data)
        failover("deploy", config=config, check=True)
        kill_active(config)
        proc = failover("check", config=config)
        assert "FAILOVER WARNING" in proc.stdout, proc.stdout + proc.stderr
        # The process has exited: its delivery was made before, not dropped.
        assert [r.json()["event"] for r in hook.requests] == ["failover"]


def test_notify_test_reports_each_target(project: Path) -> None:
    with http_receiver() as hook, http_receiver("fail") as broken:
        data = base_config()
        data["notify"] = [
            {"type": "webhook", "url": hook.url, "name": "ops-hook"},
            {"type": "slack", "url": broken.url + "/services/x", "retries": 0},
        ]
        config = write_config(project, data)
        proc = failover("notify", "test", config=config)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ops-hook" in proc.stdout and "HTTP 500" in proc.stdout
    assert hook.requests[0].json()["event"] == "test"
    assert "/services/x" not in proc.stdout + proc.stderr  # a Slack URL is a credential


def test_announce_sends_a_condition_once_per_incident(project: Path) -> None:
    with http_receiver() as hook:
        engine = engine_with(project, [{"type": "webhook", "url": hook.url}])
        try:
            deployed(engine)
            for _ in range(3):
                engine.announce("backup_stale", "web", reason="newest backup is 3h old")
            assert engine.notifier.drain(60)
            engine.check(["web"])  # healthy: the incident closes
            assert engine.notifier.drain(60)
            engine.announce("backup_stale", "web", reason="stale again")
            assert engine.notifier.drain(60)
        finally:
            engine.close()
    assert [r.json()["reason"] for r in hook.requests] == [
        "newest backup is 3h old",
        "web is healthy again",  # `resolved`: the incident it opened is over
        "stale again",
    ]


def test_a_provider_refusing_us_is_announced_once_until_it_answers_again(
    project: Path,
) -> None:
    with http_receiver() as hook:
        engine = engine_with(project, [{"type": "webhook", "url": hook.url}])
        suspended = project / ".failover" / "local" / "alpha" / "SUSPENDED"
        try:
            deployed(engine)
            suspended.touch()
            for _ in range(2):
                (verdict,) = engine.check(["web"])
                assert verdict.blocked is not None and verdict.exit_code == 1
                assert engine.notifier.drain(60)
            suspended.unlink()
            (verdict,) = engine.check(["web"])
            assert verdict.exit_code == 0, verdict.message
            assert engine.notifier.drain(60)
            suspended.touch()
            engine.check(["web"])
            assert engine.notifier.drain(60)
        finally:
            engine.close()
    bodies = [r.json() for r in hook.requests]
    events = [b["event"] for b in bodies]
    assert events == ["provider_blocked", "resolved", "provider_blocked"]
    assert bodies[0]["from"]["provider"] == "alpha" and bodies[0]["generation"] == 1


def test_parallel_failovers_of_two_services_are_each_announced(project: Path) -> None:
    with http_receiver() as hook:
        data = base_config(health={"fall": 1})
        api = {**data["services"]["web"], "domain": "api.example.test", "port": 8090}
        data["services"]["api"] = api
        data["notify"] = [{"type": "webhook", "url": hook.url}]
        config = write_config(project, data)
        engine = Engine(cfg.load(config))
        try:
            for name in ("web", "api"):
                assert engine.run(name, "deploy", reason="test").ok
            for row in engine.store.hosts(role="active"):
                _kill(config, row["host_id"])
            verdicts = engine.check(["web", "api"])
            assert [v.action for v in verdicts] == ["failover", "failover"], verdicts
        finally:
            engine.close()  # the shared notifier is drained here, once
    events = sorted((r.json()["service"], r.json()["event"]) for r in hook.requests)
    assert events == [("api", "failover"), ("web", "failover")]


def _kill(config: Path, host_id: str) -> None:
    import os
    import signal

    from tests.helpers import host_records

    for host in host_records(config):
        if host["id"] == host_id:
            os.killpg(int(host["pid"]), signal.SIGKILL)


def test_a_failed_failover_pages_and_the_recovery_resolves(project: Path) -> None:
    with http_receiver() as pd, http_receiver() as hook:
        notify = [
            {"type": "pagerduty", "routing_key": "rk-9012", "url": pd.url + "/v2/enqueue"},
            {"type": "webhook", "url": hook.url},
        ]
        engine = engine_with(project, notify)
        beta_closed = project / ".failover" / "local" / "beta" / "SUSPENDED"
        try:
            deployed(engine)
            kill_active(project / "failover.yaml")
            beta_closed.parent.mkdir(parents=True, exist_ok=True)
            beta_closed.touch()  # the only other provider refuses us too
            (verdict,) = engine.check(["web"])
            assert verdict.action == "failover_failed", verdict.message
            assert engine.notifier.drain(60)
            beta_closed.unlink()
            (verdict,) = engine.check(["web"])
            assert verdict.action == "failover", verdict.message
            (verdict,) = engine.check(["web"])
            assert verdict.exit_code == 0, verdict.message
            assert engine.notifier.drain(60)
        finally:
            engine.close()
    pages = [r.json() for r in pd.requests]
    assert [p["event_action"] for p in pages] == ["trigger", "resolve"]
    assert pages[0]["payload"]["class"] == "failover_failed"
    assert pages[0]["dedup_key"] == pages[1]["dedup_key"]
    events = [(r.json()["event"], r.json()["status"]) for r in hook.requests]
    assert events == [("failover_failed", "failed"), ("failover", "succeeded"), ("resolved", "up")]


def test_deliveries_are_journaled_in_etcd_too(project: Path, etcd_cluster: Any) -> None:
    """Several watchers share one etcd: the notification journal lives there, so a
    failover is announced once whichever watcher's round made it."""
    from tests.etcd_server import etcd_state

    with http_receiver() as hook:
        data = base_config(health={"fall": 1})
        data["state"] = etcd_state(etcd_cluster)
        data["notify"] = [{"type": "webhook", "url": hook.url}]
        engine = Engine(cfg.load(write_config(project, data)))
        try:
            deployed(engine)
            fail_over(engine, project)
            assert engine.notifier.drain(60)
            engine.check(["web"])
            assert engine.notifier.drain(60)
            rows = engine.store.deliveries(event="failover")
        finally:
            engine.close()
    assert [r.json()["event"] for r in hook.requests] == ["failover"]
    assert [(r["target"], r["status"]) for r in rows] == [("webhook-0", "sent")]
