"""Issue 21's notification holes, each against real local receivers: events lost after a
crash, a delivery killed by bad input, credentials in URLs, two targets of one name,
mails without Date and Message-ID, and the conditions nobody was told of."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.engine import Engine
from failover.notify_config import WebhookTarget
from tests.helpers import APP
from tests.helpers import base_config
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import kill_active
from tests.helpers import wait_for
from tests.helpers import write_config
from tests.receivers import http_receiver
from tests.receivers import smtp_server
from tests.test_data_e2e import BACKUP
from tests.test_data_e2e import RESTORE


def notify_config(project: Path, notify: list[dict[str, Any]], **service: Any) -> Path:
    data = base_config(**service)
    data["notify"] = notify
    return write_config(project, data)


def events_of(requests: list[Any]) -> list[str]:
    return [r.json()["event"] for r in requests]


# --------------------------------------------------------------- 8: lost after a crash


@pytest.mark.parametrize(
    ("backend", "kind"), [("sqlite", "move"), ("sqlite", "failover"), ("etcd", "move")]
)
def test_a_run_that_crashes_right_after_release_is_announced_by_the_next_check(
    project: Path, request: pytest.FixtureRequest, backend: str, kind: str
) -> None:
    with http_receiver() as hook:
        data = base_config(health={"fall": 1})
        data["notify"] = [{"type": "webhook", "url": hook.url}]
        if backend == "etcd":
            from tests.etcd_server import etcd_state

            data["state"] = etcd_state(request.getfixturevalue("etcd_cluster"), lease_ttl="30s")
        config = write_config(project, data)
        failover("deploy", config=config, check=True)
        crash = {"FAILOVER_FAILPOINT": "after:release"}
        if kind == "move":
            crashed = failover("move", "web", "--to", "beta", "--yes", config=config, env=crash)
        else:
            kill_active(config)
            crashed = failover("check", config=config, env=crash)
        assert crashed.returncode == 137, crashed.stdout + crashed.stderr
        assert hook.requests == []  # the process died before it could send anything
        failover("check", config=config)
        failover("check", config=config)  # nothing is sent twice
        events = events_of(hook.requests)
    assert events == [kind]


# --------------------------------------------------------------- 9: bad input


@pytest.mark.parametrize(
    ("target", "where"),
    [
        (
            {"type": "webhook", "url": "http://127.0.0.1:9/", "headers": {"X-Team": "a\r\nX: 1"}},
            "notify[0].headers",
        ),
        ({"type": "webhook", "url": "http://127.0.0.1:9/", "headers": {"X Y": "1"}}, "headers"),
        (
            {
                "type": "email",
                "server": "127.0.0.1:25",
                "from": "f@example.test",
                "to": ["ops@example.test\nBcc: all@example.test"],
            },
            "notify[0].to[0]",
        ),
        (
            {
                "type": "email",
                "server": "127.0.0.1:25",
                "from": "f@x.test\r\nBcc: y@x.test",
                "to": ["ops@example.test"],
            },
            "notify[0].from",
        ),
        ({"type": "email", "server": "127.0.0.1:25", "from": "f@x.test", "to": ["ops"]}, "to"),
        ({"type": "webhook", "url": "http://127.0.0.1:port/"}, "notify[0].url"),
    ],
)
def test_validate_refuses_what_would_break_a_delivery(
    project: Path, target: dict[str, Any], where: str
) -> None:
    proc = failover("validate", config=notify_config(project, [target]))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert where in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_target_that_fails_at_send_time_never_stops_the_others(project: Path) -> None:
    """Validation keeps bad header values out of the config, so the bad target is put
    in by hand (``model_construct`` skips validation): it stands for whatever input a
    library refuses that nobody foresaw. http.client raises ValueError on it."""
    with http_receiver() as bad_rx, http_receiver() as good_rx:
        config = notify_config(
            project,
            [
                {"type": "webhook", "url": bad_rx.url, "name": "bad", "retry_rounds": 0},
                {"type": "webhook", "url": good_rx.url, "name": "good"},
            ],
        )
        engine = Engine(cfg.load(config))
        try:
            good = engine.notifier.targets["bad"]
            engine.notifier.targets["bad"] = WebhookTarget.model_construct(
                **{**dict(good), "headers": {"X-Team": "ops\r\nX-Injected: 1"}}
            )
            engine.announce("backup_stale", "web", reason="first")
            engine.announce("quorum_lost", "web", reason="second")
            assert engine.notifier.drain(60)
            rows = {(r["target"], r["event"]): r for r in engine.store.deliveries()}
        finally:
            engine.close()
    assert events_of(good_rx.requests) == ["backup_stale", "quorum_lost"]
    assert bad_rx.requests == []
    for event in ("backup_stale", "quorum_lost"):
        row = rows[("bad", event)]
        assert row["status"] == "gave_up" and "ValueError" in row["detail"], row


def test_a_delivery_cut_off_by_a_crash_is_sent_again(project: Path) -> None:
    """A process is killed while its delivery is in flight (the receiver holds the
    request): the delivery stayed ``sending`` forever; the next round sends it."""
    with http_receiver("hang") as hook:
        config = notify_config(project, [{"type": "webhook", "url": hook.url, "timeout": "30s"}])
        script = (
            "import sys, time\n"
            "from failover import config as cfg\n"
            "from failover.delivery import Notifier\n"
            "n = Notifier(cfg.load(sys.argv[1]), print)\n"
            "n.announce('backup_stale', 'web', reason='cut off')\n"
            "time.sleep(120)\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(config)], env=env_for(), cwd=project
        )
        try:
            wait_for(lambda: hook.hanging == 1, timeout=60, what="the delivery in flight")
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        hook.mode = "ok"
        hook.release.set()
        engine = Engine(cfg.load(config))
        try:
            engine.notifier.retry()
            assert engine.notifier.drain(60)
            engine.notifier.retry()  # sent now: not again
            assert engine.notifier.drain(60)
            (row,) = engine.store.deliveries(event="backup_stale")
        finally:
            engine.close()
    assert events_of(hook.requests) == ["backup_stale", "backup_stale"]
    assert (row["status"], row["rounds"]) == ("sent", 2)


# --------------------------------------------------------------- 10: credentials in URLs


def test_userinfo_in_a_webhook_url_is_basic_auth_and_shown_nowhere(project: Path) -> None:
    password = "Pa55-w0rd-xyz"
    with http_receiver() as hook:
        url = hook.url.replace("http://", f"http://ops:{password}@") + "/hook"
        dead = f"http://ops:{password}@127.0.0.1:9/dead"
        config = notify_config(
            project,
            [
                {"type": "webhook", "url": url, "name": "hook"},
                {"type": "webhook", "url": dead, "name": "dead", "retries": 0},
            ],
        )
        proc = failover("notify", "test", "--json", config=config)
        shown = proc.stdout + proc.stderr
        results = {r["target"]: r for r in json.loads(proc.stdout)["results"]}
        logs: list[str] = []
        engine = Engine(cfg.load(config), log=logs.append)
        try:
            engine.announce("backup_stale", "web", reason="old")
            assert engine.notifier.drain(60)
        finally:
            engine.close()
    assert results["hook"]["ok"] and not results["dead"]["ok"]
    assert "127.0.0.1:9" in results["dead"]["detail"]  # says where, without the login
    sent = hook.requests[0]
    assert sent.path == "/hook"
    assert (
        sent.headers["Authorization"]
        == "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()
    )
    assert any("dead" in line for line in logs)
    db = sqlite3.connect(project / ".failover" / "state.db")
    stored = json.dumps(db.execute("SELECT * FROM deliveries").fetchall())
    for text in (shown, "\n".join(logs), stored):
        assert password not in text


def test_an_etcd_endpoint_login_is_not_printed(project: Path) -> None:
    data = base_config()
    data["state"] = {
        "backend": "etcd",
        "endpoints": ["http://root:Etcd-s3cret-pw@127.0.0.1:9"],
        "timeout": "1s",
    }
    proc = failover("check", config=write_config(project, data))
    shown = proc.stdout + proc.stderr
    assert proc.returncode == 3, shown
    assert "state store unreachable" in shown
    assert "Etcd-s3cret-pw" not in shown


# --------------------------------------------------------------- 11: one name, two targets


@pytest.mark.parametrize(
    "names", [("ops", "ops"), ("webhook-1", None)], ids=["same-name", "name-of-a-default"]
)
def test_two_targets_of_one_name_are_refused(
    project: Path, names: tuple[str | None, str | None]
) -> None:
    notify = [
        {"type": "webhook", "url": "http://127.0.0.1:9/a", "name": names[0]},
        {"type": "webhook", "url": "http://127.0.0.1:9/b", "name": names[1]},
    ]
    proc = failover("validate", config=notify_config(project, notify))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "notify[0] and notify[1] are both named" in proc.stdout + proc.stderr


# --------------------------------------------------------------- e-mail headers


def test_a_mail_has_a_date_and_a_message_id_kept_across_tries(project: Path) -> None:
    pytest.importorskip("aiosmtpd", reason="pip install aiosmtpd (the test extra)")
    from email import message_from_string
    from email.utils import parsedate_to_datetime

    from failover.notify import Notice
    from failover.notify import send

    with smtp_server(project) as box:
        mail = {
            "type": "email",
            "server": f"127.0.0.1:{box.port}",
            "from": "Failover <failover@example.test>",
            "to": ["ops@example.test"],
            "username": "ops",
            "password": "s3cret-pass",
            "ca_file": str(box.ca),
        }
        (target,) = cfg.load(notify_config(project, [mail])).notify
        first = Notice("failover", "web", "succeeded", "why\nnot", "2026-12-01T10:00:00Z", key="k1")
        for notice in (first, first, Notice("move", "web", "succeeded", "", "t", key="k2")):
            send(target, notice)
    parsed = [message_from_string(m["data"]) for m in box.messages]
    assert all(parsedate_to_datetime(p["Date"]).tzinfo is not None for p in parsed)
    ids = [p["Message-ID"] for p in parsed]
    assert ids[0] == ids[1] != ids[2] and ids[0].endswith("@example.test>")
    assert "\n" not in parsed[0]["Subject"]


# --------------------------------------------------------------- 2: conditions


def down_for_rounds(engine: Engine, config: Path, action: str) -> None:
    """Deployed, its host killed, then three rounds that each find it down."""
    assert engine.run("web", "deploy", reason="test").ok
    kill_active(config)
    for _ in range(3):
        (verdict,) = engine.check(["web"])
        assert verdict.state == "down" and verdict.action == action, verdict.message
        assert engine.notifier.drain(60)


def test_a_service_down_that_nothing_moves_is_announced_once_then_resolved(
    project: Path,
) -> None:
    with http_receiver() as hook:
        config = notify_config(
            project,
            [{"type": "webhook", "url": hook.url}],
            health={"fall": 1},
            policy={"auto_failover": False},
        )
        engine = Engine(cfg.load(config))
        try:
            down_for_rounds(engine, config, "none")
            assert engine.run("web", "move", reason="by hand", to="beta").ok
            (verdict,) = engine.check(["web"])
            assert verdict.exit_code == 0, verdict.message
            assert engine.notifier.drain(60)
        finally:
            engine.close()
    bodies = [r.json() for r in hook.requests]
    assert [b["event"] for b in bodies] == ["service_down", "move", "resolved"]
    assert bodies[0]["status"] == "down" and bodies[0]["from"]["provider"] == "alpha"
    assert "auto_failover is off" in bodies[0]["reason"]


def test_a_failover_that_keeps_failing_is_announced_once_per_incident(project: Path) -> None:
    with http_receiver() as hook:
        config = notify_config(
            project,
            [{"type": "webhook", "url": hook.url}],
            health={"fall": 1},
            policy={"providers": ["alpha"]},  # nowhere to go
        )
        engine = Engine(cfg.load(config))
        try:
            down_for_rounds(engine, config, "failover_failed")
        finally:
            engine.close()
    assert events_of(hook.requests) == ["failover_failed"]


def test_a_stale_backup_is_announced_once_by_the_rounds(project: Path) -> None:
    with http_receiver() as hook:
        data = base_config(
            run={"command": APP + " --db data/app.db"},
            data={"backup": BACKUP, "restore": RESTORE, "every": "1h", "max_age": "2h"},
        )
        (project / "store").mkdir()
        data["stores"] = [{"name": "here", "type": "dir", "path": str(project / "store")}]
        data["notify"] = [{"type": "webhook", "url": hook.url}]
        engine = Engine(cfg.load(write_config(project, data)))
        try:
            assert engine.run("web", "deploy", reason="test").ok
            engine.check(["web"])  # takes the first backup
            assert engine.notifier.drain(60)
            assert hook.requests == []
            doc = engine.store.data_state("web") or {}
            # As if three hours had passed and the last try had just failed.
            doc["last_backup"]["taken"] -= 3 * 3600
            doc["last_attempt"] = time.time()
            engine.store.set_data_state("web", doc)
            for _ in range(2):
                engine.check(["web"])
                assert engine.notifier.drain(60)
        finally:
            engine.close()
    bodies = [r.json() for r in hook.requests]
    assert [b["event"] for b in bodies] == ["backup_stale"]
    assert "max_age 7200s" in bodies[0]["reason"]


def test_a_quorum_the_live_watchers_cannot_make_is_announced_once(
    project: Path, etcd_cluster: Any
) -> None:
    from tests.etcd_server import etcd_state

    with http_receiver() as hook:
        data = base_config()
        data["state"] = etcd_state(etcd_cluster, lease_ttl="30s")
        data["watchers"] = {"quorum": 2}
        data["notify"] = [{"type": "webhook", "url": hook.url}]
        engine = Engine(cfg.load(write_config(project, data)))
        try:
            assert engine.run("web", "deploy", reason="test").ok
            for _ in range(2):
                (verdict,) = engine.check(["web"])
                assert verdict.state == "up", verdict.message
                assert engine.notifier.drain(60)
        finally:
            engine.close()
    bodies = [r.json() for r in hook.requests]
    assert [b["event"] for b in bodies] == ["quorum_lost"]
    assert "quorum is 2" in bodies[0]["reason"]
