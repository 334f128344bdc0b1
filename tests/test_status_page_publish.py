"""The status page published to stores (a directory, S3 on moto's server) after each step,
never delaying one; and ``drill --html``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.engine import Engine
from failover.statuspage import render_drill
from tests.chromium import foreign_references
from tests.chromium import load
from tests.chromium import screenshot
from tests.conftest import need
from tests.doubles.moto_server import moto_available
from tests.doubles.moto_server import shared_moto
from tests.doubles.moto_server import use_test_credentials
from tests.helpers import APP
from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import live_hosts
from tests.helpers import wait_for
from tests.helpers import write_config

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_credentials(monkeypatch)


class Stuck:
    """An "S3 endpoint" that accepts connections and never answers, until released."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.sock.accept()[0])

    def release(self) -> None:
        self.sock.close()  # later connections are refused: the store fails at once
        for conn in self.held:
            conn.close()


def published_config(project: Path, bucket: str, stuck: Stuck) -> dict[str, Any]:
    data = base_config()
    (project / "site").mkdir()
    (project / "broken").write_text("a file where the store's directory should be")
    moto = shared_moto().url
    data["stores"] = [
        {"name": "site", "type": "dir", "path": str(project / "site")},
        {"name": "s3", "type": "s3", "bucket": bucket, "endpoint": moto, "retry_attempts": 1},
        {"name": "broken", "type": "dir", "path": str(project / "broken"), "retry_attempts": 1},
        {
            "name": "stuck",
            "type": "s3",
            "bucket": "stuck",
            "endpoint": stuck.url,
            "retry_attempts": 1,
        },
    ]
    data["status_page"] = {"title": "Example status", "stores": ["site", "s3", "broken", "stuck"]}
    return data


def test_a_move_publishes_to_every_store_and_a_failing_store_delays_nothing(
    project: Path,
) -> None:
    need(moto_available(), "moto[server] is not installed")
    import boto3

    s3 = boto3.client("s3", endpoint_url=shared_moto().url, region_name="us-east-1")
    bucket = f"page-{os.urandom(4).hex()}"
    s3.create_bucket(Bucket=bucket)
    stuck = Stuck()
    data = published_config(project, bucket, stuck)
    path = write_config(project, {k: v for k, v in data.items() if k != "status_page"})
    failover("deploy", config=path, check=True)
    path = write_config(project, data)
    engine = Engine(cfg.load(path))
    try:
        publisher = engine.publisher
        moved = engine.run("web", "move", reason="test", to="beta")
        assert moved.ok, moved.message
        # The move ended and the stuck store has taken no page yet: no step waited for it.
        assert "stuck" not in publisher.written and "stuck" not in publisher.failed
        wait_for(lambda: bool(stuck.held), 60, "a write to the stuck store")

        index = project / "site" / "status" / "index.html"
        wait_for(lambda: index.exists() and "beta (127." in index.read_text(), 60, "dir page")

        def s3_page() -> str:
            try:
                got = s3.get_object(Bucket=bucket, Key="status/index.html")
            except s3.exceptions.NoSuchKey:
                return ""
            assert got["ContentType"] == "text/html; charset=utf-8"
            return str(got["Body"].read().decode())

        wait_for(lambda: "beta (127." in s3_page(), 60, "the S3 page naming beta")
        html = s3_page()
        assert "move of web from alpha to beta" in html and foreign_references(html) == []
        got = s3.get_object(Bucket=bucket, Key="status/status.json")
        assert got["ContentType"] == "application/json"
        assert json.loads(got["Body"].read())["services"][0]["active"]["provider"] == "beta"
        assert stat.S_IMODE(index.stat().st_mode) == 0o644  # a web server may read it
        assert "stuck" not in publisher.written  # still hanging, and nobody waited

        # A store that failed is tried again after the next round.
        wait_for(lambda: "broken" in publisher.failed, 30, "the broken store to fail")
        (project / "broken").unlink()
        (project / "broken").mkdir()
        assert "broken" not in publisher.written
        engine.check(["web"])
        wait_for(lambda: publisher.written.get("broken", 0) >= 1, 30, "the retry")
        assert "beta (127." in (project / "broken" / "status" / "index.html").read_text()
        stuck.release()
        wait_for(lambda: "stuck" in publisher.failed, 60, "the stuck store to fail")
    finally:
        stuck.release()
        engine.close()


def test_drill_html_draws_the_rehearsal_with_its_recovery_point(project: Path) -> None:
    data = base_config(
        run={"command": APP + " --db data/app.db"},
        data={
            "backup": "{python} -m failover.demo_app dump data/app.db",
            "restore": "{python} -m failover.demo_app load data/app.db",
            "every": "1h",
        },
    )
    (project / "offsite").mkdir()
    data["stores"] = [{"name": "offsite", "type": "dir", "path": str(project / "offsite")}]
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    failover("backup", config=config, check=True)
    report = project / "drill.html"
    doc = failover_json("drill", "--to", "beta", "--html", str(report), config=config)
    assert doc["status"] == "succeeded"
    seen = load(report.as_uri())
    assert "Drill of web on beta" in seen.dom and "drill succeeded" in seen.dom
    assert "Recovery point" in seen.dom and "no backup restored" not in seen.dom
    assert f"{doc['restore']['backup']} from offsite" in seen.dom
    for step in ("provision", "wait_ready", "restore", "verify", "teardown"):
        assert f'<th scope="row">{step}</th>' in seen.dom
    assert seen.console == [] and seen.requests == []
    screenshot(report.as_uri(), "drill", 390)


def test_a_failed_drill_shows_the_candidate_that_failed(project: Path) -> None:
    data = base_config(policy={"ready_timeout": "2s"})
    data["services"]["web"]["run"]["restore"] = [
        'if [ "$FAILOVER_PROVIDER" = beta ]; then exit 3; fi'
    ]
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    report = project / "drill.html"
    proc = failover("drill", "--to", "beta", "--html", str(report), config=config)
    assert proc.returncode == 1
    seen = load(report.as_uri())
    assert "drill failed" in seen.dom and "attempt 1: beta" in seen.dom
    assert "restore failed with exit status 3" in seen.dom
    assert "1. beta: failed at restore" in seen.dom


def test_a_drill_report_shows_every_attempt() -> None:
    """A drill names one provider, so the engine gives it one candidate; a journal with a
    failed candidate before the one that worked (as a failover has) is drawn in full."""
    event = {
        "id": 3,
        "service": "web",
        "kind": "drill",
        "status": "succeeded",
        "started_at": "2026-12-04T20:00:00Z",
        "to": {"provider": "beta"},
        "data": {"attempts": [{"provider": "beta", "step": "wait_ready", "result": "timed out"}]},
        "steps": [],
    }
    doc = {
        "service": "web",
        "to": "beta",
        "status": "succeeded",
        "duration_s": 9.5,
        "restore": {"age_s": 61, "restore_s": 2.5, "backup": "b-1", "store": "offsite"},
        "steps": [
            {"name": "provision", "status": "succeeded", "duration_s": 1.0, "detail": "h-2"},
            {"name": "restore", "status": "succeeded", "duration_s": 2.5, "detail": "b-1"},
        ],
    }
    html = render_drill(doc, event)
    assert "1. beta: failed at wait_ready" in html and "2. beta: succeeded" in html
    assert "attempt 1: beta" in html and "timed out" in html
    assert "61 s" in html and "2.50 s" in html and "b-1 from offsite" in html


@pytest.mark.parametrize("kind", ["dir", "s3", "gcs", "azureblob"])
def test_each_store_kind_serves_the_page_with_its_content_type(kind: str, tmp_path: Path) -> None:
    from tests.test_data_stores import make_store

    store = make_store(kind, tmp_path)
    try:
        store.put_object("status/index.html", "<p>ü</p>".encode(), "text/html; charset=utf-8")
        store.put_object("status/status.json", b"{}", "application/json")
        assert store.get("status/index.html") == "<p>ü</p>".encode()
        assert _content_type(store, "status/index.html") == "text/html; charset=utf-8"
        assert _content_type(store, "status/status.json") == "application/json"
    finally:
        store.close()


def _content_type(store: Any, key: str) -> str:
    """What the store will answer a browser with (a directory: readable by a web server)."""
    if store.type == "dir":
        # Just the files: the web server in front names the type from the extension.
        assert stat.S_IMODE((store.root / key).stat().st_mode) == 0o644
        return "text/html; charset=utf-8" if key.endswith(".html") else "application/json"
    if store.type == "s3":
        got = store.client.head_object(Bucket=store.s.bucket, Key=key)
        assert got["CacheControl"] == "max-age=30"
        return str(got["ContentType"])
    if store.type == "gcs":
        # The emulator keeps the upload part's media type without its parameters (GCS
        # itself keeps `; charset=utf-8`): compared as the emulator can answer.
        blob = store.bucket.get_blob(key)
        kind = str(blob.content_type)
        return f"{kind}; charset=utf-8" if kind == "text/html" else kind
    props = store.container.get_blob_client(key).get_blob_properties()
    assert props.content_settings.cache_control == "max-age=30"
    return str(props.content_settings.content_type)


def test_a_round_publishes_when_a_verdict_changes_and_not_otherwise(project: Path) -> None:
    data = base_config(health={"interval": "5s", "timeout": "3s"})
    (project / "site").mkdir()
    data["stores"] = [{"name": "site", "type": "dir", "path": str(project / "site")}]
    data["status_page"] = {"stores": ["site"]}
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    engine = Engine(cfg.load(config))
    try:
        written = engine.publisher.written
        assert [v.exit_code for v in engine.check(["web"])] == [0]
        assert engine.publisher.drain(60) and written == {"site": 1}
        assert [v.exit_code for v in engine.check(["web"])] == [0]
        assert engine.publisher.drain(60) and written == {"site": 1}  # nothing changed
        frozen = live_hosts(config)[0]  # its provider still says it runs: no proof of death
        os.killpg(int(frozen["pid"]), signal.SIGSTOP)
        try:
            assert [v.exit_code for v in engine.check(["web"])] == [1]  # failing, below fall
        finally:
            os.killpg(int(frozen["pid"]), signal.SIGCONT)
        assert engine.publisher.drain(60) and written == {"site": 2}
    finally:
        engine.close()


def test_a_one_shot_move_exits_although_a_store_hangs(project: Path) -> None:
    stuck = Stuck()
    try:
        data = base_config()
        (project / "site").mkdir()
        hang = {"timeout": "10m", "retry_max_time": "10m", "retry_attempts": 1}
        data["stores"] = [
            {"name": "site", "type": "dir", "path": str(project / "site")},
            {"name": "stuck", "type": "s3", "bucket": "stuck", "endpoint": stuck.url, **hang},
        ]
        config = write_config(project, data)
        failover("deploy", config=config, check=True)
        data["status_page"] = {"stores": ["site", "stuck"]}
        write_config(project, data)
        # The stuck store would hold a write for 10 minutes: the command ends long before.
        failover("move", "--to", "beta", "--yes", config=config, check=True, timeout=240)
        assert stuck.held
        page = (project / "site" / "status" / "index.html").read_text()
        assert "beta (127." in page
        # Its last word on the move is the move's outcome, not the step before it.
        assert re.search(r'move of web from alpha to beta\s*<span class="badge ok">succeeded', page)
    finally:
        stuck.release()
