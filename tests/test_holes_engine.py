"""Holes in the engine's promises (issue 11), each closed and proved here: no
unconditional DNS write, recovery prefers the host DNS points at, an unforeseen error
fails a step and not the process, Ctrl-C rolls back or finishes, a provider that
refuses us while the host answers is a WARNING, and deadlines ignore the wall clock."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.engine import Engine
from providers.base import HostSpec
from providers.base import ProviderContext
from providers.base import RunSpec
from providers.local import LocalProvider
from providers.local import LocalSettings
from tests.helpers import APP
from tests.helpers import FAILOVER
from tests.helpers import base_config
from tests.helpers import dns_values
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import host_records
from tests.helpers import kill_active
from tests.helpers import live_hosts
from tests.helpers import state_dir
from tests.helpers import wait_for
from tests.helpers import write_config
from tests.test_plugins import install_plugin


def deployed(project: Path, **service: Any) -> Path:
    config = write_config(project, base_config(**service))
    failover("deploy", config=config, check=True)
    return config


def test_a_record_moved_by_another_writer_is_left_alone(project: Path) -> None:
    path = write_config(project, base_config(health={"fall": 1}))
    engine = Engine(cfg.load(path))
    try:
        assert engine.run("web", "deploy", reason="test").ok
        # Another writer (a watcher with its own state) moved the record meanwhile.
        engine.dns().set_record("www.example.test", "A", ["127.0.0.99"], 5)
        kill_active(path)
        (result,) = engine.check(["web"])
    finally:
        engine.close()
    assert result.action == "failover_failed", result.message
    assert "another writer changed it; DNS left alone" in result.message
    assert dns_values(path) == ["127.0.0.99"]
    assert live_hosts(path) == []  # our candidate was rolled back


def test_recovery_after_state_loss_keeps_the_host_dns_points_at(project: Path) -> None:
    config = deployed(project)
    serving = failover_json("status", config=config)["services"][0]["active"]
    # A candidate of a newer generation that never served (a run that died before cutover).
    beta = LocalProvider(
        LocalSettings(name="beta", type="local"), ProviderContext(state_dir(config))
    )
    spec = HostSpec("web-g2-beta", "web", 2, 8080, RunSpec(APP))
    candidate = beta.create_host(spec)
    wait_for(lambda: failover("check", config=config).returncode == 0, what="both hosts up")
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (state_dir(config) / name).unlink(missing_ok=True)
    deploy = failover("deploy", config=config)
    assert deploy.returncode == 0, deploy.stderr
    after = failover_json("status", config=config)["services"][0]
    assert after["active"]["host_id"] == serving["host_id"]
    assert dns_values(config) == [serving["address"]]
    assert failover("check", config=config).returncode == 0  # fences the candidate
    assert candidate.id not in [h["id"] for h in live_hosts(config)]


BUGGY = """
from providers.local import LocalProvider, LocalSettings
from typing import Literal


class BuggySettings(LocalSettings):
    type: Literal["buggy"]  # type: ignore[assignment]


class BuggyProvider(LocalProvider):
    type = "buggy"
    Settings = BuggySettings

    def create_host(self, spec):
        raise RuntimeError("a bug in a third-party provider")
"""


def test_an_unforeseen_error_fails_the_candidate_not_the_process(project: Path) -> None:
    plugins = project / "plugins"
    plugins.mkdir()
    env = install_plugin(plugins)
    (plugins / "shedcloud.py").write_text(BUGGY)
    (plugins / "shedcloud-0.1.dist-info" / "entry_points.txt").write_text(
        "[failover.providers]\nbuggy = shedcloud:BuggyProvider\n"
    )
    data = base_config()
    data["providers"] = [{"name": "bug", "type": "buggy"}, {"name": "beta", "type": "local"}]
    config = write_config(project, data)
    deploy = failover("deploy", config=config, env=env)
    assert deploy.returncode == 0, deploy.stderr
    (event,) = failover_json("history", config=config, env=env)["events"]
    assert event["status"] == "succeeded" and event["to"]["provider"] == "beta"
    (attempt,) = event["attempts"]
    assert attempt["provider"] == "bug"
    assert "provision failed unexpectedly: RuntimeError" in attempt["result"]


SLOW_APP = f"sleep 30; {APP}"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", ["deploy", "drill"])
def test_an_interrupted_run_is_rolled_back(project: Path, command: str, sig: int) -> None:
    config = write_config(project, base_config())
    if command == "drill":
        failover("deploy", config=config, check=True)  # a live service to rehearse from
    write_config(project, base_config(run={"command": SLOW_APP}))
    args = [FAILOVER, command, "-c", str(config)] + (["--to", "beta"] if command == "drill" else [])
    before = {h["id"] for h in live_hosts(config)}
    # A shell that started this test in the background may have SIGINT ignored, and that
    # is inherited: give the command the default disposition, as a terminal would.
    proc = subprocess.Popen(
        args,
        env=env_for(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(
            lambda: {h["id"] for h in live_hosts(config)} - before, what="the new host to start"
        )
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    # It said only "interrupted": where does a user learn what was left behind?
    assert "`failover history` shows what the run did and undid" in err.decode()
    events = failover_json("history", config=config)["events"]
    assert events[0]["kind"] == command and events[0]["status"] == "failed"
    assert "interrupted" in events[0]["reason"]
    assert {h["id"] for h in live_hosts(config)} == before


def test_a_provider_that_refuses_us_while_the_host_answers_is_a_warning(project: Path) -> None:
    config = deployed(project)
    (state_dir(config) / "local" / "alpha" / "SUSPENDED").write_text("account suspended")
    check = failover("check", config=config)
    assert check.returncode == 1, check.stdout
    assert check.stdout.startswith("FAILOVER WARNING - ")
    assert "refuses us" in check.stdout and "failover move web --to" in check.stdout
    doc = json.loads(failover("check", "--json", config=config).stdout)
    assert doc["exit_code"] == 1
    assert failover_json("status", config=config)["services"][0]["active"]["provider"] == "alpha"


def test_ready_timeout_is_not_stretched_by_a_wall_clock_step(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wall clock is stepped back an hour while a host boots (NTP, a VM resumed).
    Changing the real clock needs root and would disturb the machine, so time.time is
    replaced here, for this process only, once the deadline is journaled."""
    data = base_config(run={"command": "sleep 600"}, policy={"ready_timeout": "1s"})
    data["providers"] = [{"name": "alpha", "type": "local"}]
    path = write_config(project, data)
    real = time.time

    def on_step(step: str, status: str, detail: str) -> None:
        if step == "wait_ready" and status == "in_progress":
            monkeypatch.setattr(time, "time", lambda: real() - 3600)

    engine = Engine(cfg.load(path), on_step=on_step)
    try:
        outcome = engine.run("web", "deploy", reason="test")
    finally:
        monkeypatch.setattr(time, "time", real)
        engine.close()
    assert outcome.status == "failed"
    assert "within ready_timeout (1s)" in outcome.message
    assert not [h for h in host_records(path) if not h.get("destroyed")]


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("missing", "no such file"),
        ("bad key", "services.web.helth"),
        ("corrupt state", "state:"),
    ],
)
def test_check_prints_its_one_line_on_every_path(project: Path, setup: str, words: str) -> None:
    data = base_config()
    if setup == "bad key":
        data["services"]["web"]["helth"] = {}
    config = write_config(project, data)
    if setup == "missing":
        config = project / "nowhere.yaml"
    if setup == "corrupt state":
        state_dir(config).mkdir()
        (state_dir(config) / "state.db").write_text("this is not a database" * 100)
    check = failover("check", config=config)
    assert check.returncode == 3, check.stdout + check.stderr
    (line,) = check.stdout.splitlines()
    assert line.startswith("FAILOVER UNKNOWN - ") and words in line.lower()
    doc = json.loads(failover("check", "--json", config=config).stdout)
    assert doc["exit_code"] == 3 and doc["services"] == [] and doc["error"]


def test_watch_options_out_of_range_or_taken_are_usage_errors(project: Path) -> None:
    import socket

    config = write_config(project, base_config())
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        cases = [
            (["--metrics-port", str(port)], "cannot listen"),
            (["--metrics-port", "70000"], "Usage: failover watch"),
            (["--metrics-port", "9", "--metrics-address", "not-an-ip"], "not an IP address"),
            (["--rounds", "0"], "Usage: failover watch"),
        ]
        for args, words in cases:
            proc = failover("watch", *args, config=config)
            assert proc.returncode == 2, (args, proc.stderr)
            assert words in proc.stderr and "internal error" not in proc.stderr
    finally:
        taken.close()


def test_a_full_disk_is_not_called_a_corrupt_journal(tmp_path: Path) -> None:
    """SQLite's own "database or disk is full", made real with max_page_count."""
    from failover.state import SqliteStore
    from failover.state import StateError

    store = SqliteStore(tmp_path)
    try:
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StateError) as caught:
            for n in range(1000):
                store.set_provider_state(f"p{n}", "available", "x" * 2000)
    finally:
        store.close()
    message = str(caught.value)
    assert "disk is full" in message and "journal is intact" in message
    assert "Move it aside" not in message


def test_a_read_only_state_is_not_called_a_corrupt_journal(tmp_path: Path) -> None:
    """A read-only database, as SQLite itself reports one (mode=ro), root or not."""
    import sqlite3

    from failover.state import SqliteStore

    store = SqliteStore(tmp_path)
    try:
        store.db.close()
        store.db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None)
        store.db.row_factory = sqlite3.Row
        with pytest.raises(Exception) as caught:
            store.set_provider_state("alpha", "available", None)
    finally:
        store.close()
    message = str(caught.value)
    assert "read-only" in message and "journal is intact" in message


def test_a_failed_restore_in_a_drill_is_the_restore_steps_and_every_step_is_reported(
    project: Path,
) -> None:
    data = base_config(policy={"ready_timeout": "5s"})
    data["services"]["web"]["run"]["restore"] = [
        'if [ "$FAILOVER_PROVIDER" = beta ]; then exit 3; fi'
    ]
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    junit = project / "drill.xml"
    drill = failover("drill", "--to", "beta", "--junit", str(junit), "--json", config=config)
    assert drill.returncode == 1
    doc = json.loads(drill.stdout)["steps"]
    steps = {s["name"]: s["status"] for s in doc}
    assert steps["wait_ready"] == "succeeded" and steps["restore"] == "failed"
    # Its host was destroyed when the drill failed: the teardown ran (issue 21).
    assert steps["verify"] == "skipped" and steps["teardown"] == "succeeded"
    teardown = next(s for s in doc if s["name"] == "teardown")
    assert "on beta destroyed" in teardown["detail"], teardown
    wait_ready = next(s for s in doc if s["name"] == "wait_ready")
    assert wait_ready["detail"].startswith(("running at", "booted")), wait_ready
    text = junit.read_text()
    assert text.count("<testcase") == 6 and "<skipped" in text


def test_the_starter_is_valid_once_filled_and_doctor_has_no_warning_about_it(
    project: Path,
) -> None:
    config = project / "failover.yaml"
    failover("init", str(config), check=True)
    doctor = json.loads(failover("doctor", "--json", config=config).stdout)
    assert doctor["warnings"] == [], doctor["warnings"]
    for provider, var in (("aws", "FAILOVER_AWS_IMAGE"), ("gcp", "GOOGLE_CLOUD_PROJECT")):
        path = project / f"{provider}.yaml"
        failover("init", "--provider", provider, str(path), check=True)
        bad = failover("validate", config=path)
        assert bad.returncode == 2 and var in bad.stderr, bad.stderr


def test_deploy_to_another_provider_while_live_asks_like_move(project: Path) -> None:
    config = deployed(project)
    proc = failover("deploy", "--provider", "beta", config=config)
    assert proc.returncode == 2 and "without --yes" in proc.stderr
    assert failover_json("status", config=config)["services"][0]["active"]["provider"] == "alpha"
    assert failover("deploy", "--provider", "beta", "--yes", config=config).returncode == 0
    assert failover_json("status", config=config)["services"][0]["active"]["provider"] == "beta"
