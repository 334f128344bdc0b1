"""The whole path through the real CLI, with real hosts on loopback addresses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import FAILOVER
from tests.helpers import FLAKY
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


def deployed(project: Path, **service: object) -> Path:
    config = write_config(project, base_config(**service))
    failover("deploy", config=config, check=True)
    return config


def test_deploy_then_kill_moves_to_second_provider(project: Path) -> None:
    config = deployed(project)
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["provider"] == "alpha"
    assert status["health"]["state"] == "unknown"  # no round has run yet (issue 21)
    assert dns_values(config) == [status["active"]["address"]]
    first = check = failover("check", config=config)
    assert check.returncode == 0, check.stdout + check.stderr
    assert failover_json("status", config=config)["services"][0]["health"]["state"] == "up"
    assert check.stdout.startswith("FAILOVER OK - web healthy on alpha (")
    assert "| latency=" in check.stdout

    old = kill_active(config)
    check = failover("check", config=config)
    # Moved in this run and healthy again: WARNING by the monitoring-plugin convention.
    assert check.returncode == 1, check.stdout + check.stderr
    assert "moved from alpha to beta" in check.stdout

    status = failover_json("status", config=config)["services"][0]
    active = status["active"]
    assert active["provider"] == "beta"
    assert status["generation"] == 2
    assert dns_values(config) == [active["address"]]
    assert active["address"] != old["address"]
    with urllib.request.urlopen(f"http://{active['address']}:8080/", timeout=5) as response:
        assert b"on beta" in response.read()
    # The old host is destroyed, not merely dead; exactly one host runs.
    old_record = next(h for h in host_records(config) if h["id"] == old["id"])
    assert old_record.get("destroyed") is True
    assert [h["id"] for h in live_hosts(config)] == [active["host_id"]]

    events = failover_json("history", config=config)["events"]
    failovers = [e for e in events if e["kind"] == "failover"]
    assert len(failovers) == 1
    event = failovers[0]
    assert event["status"] == "succeeded"
    assert [s["name"] for s in event["steps"]] == STEPS
    assert all(s["status"] == "succeeded" for s in event["steps"])
    assert event["from"]["provider"] == "alpha" and event["to"]["provider"] == "beta"
    assert set(event) >= {
        "id",
        "service",
        "kind",
        "status",
        "reason",
        "from",
        "to",
        "started_at",
        "finished_at",
        "duration_s",
        "steps",
    }
    assert first.returncode == 0
    assert failover("check", config=config).returncode == 0


def test_deploy_is_a_noop_when_live_and_healthy(project: Path) -> None:
    config = deployed(project)
    again = failover("deploy", config=config)
    assert again.returncode == 0
    assert "already live and healthy" in again.stdout
    assert len(live_hosts(config)) == 1
    assert len(failover_json("history", config=config)["events"]) == 1


def test_suspended_provider_is_shown_blocked(project: Path) -> None:
    config = deployed(project)
    (state_dir(config) / "local" / "alpha" / "SUSPENDED").write_text("")
    providers = failover_json("status", config=config)["services"][0]["providers"]
    states = {p["name"]: p["state"] for p in providers}
    assert states == {"alpha": "blocked", "beta": "available"}
    doctor = failover_json("doctor", config=config)
    assert doctor["ok"] is False
    assert [p["state"] for p in doctor["providers"]] == ["blocked", "available"]
    assert failover("doctor", config=config).returncode == 1


def test_suspended_and_killed_host_moves_at_once(project: Path) -> None:
    config = deployed(project, health={"fall": 5})
    old = kill_active(config)
    (state_dir(config) / "local" / "alpha" / "SUSPENDED").write_text("")
    # A provider that refuses us is proof enough: no need to wait for `fall` rounds.
    check = failover("check", config=config)
    assert check.returncode == 1, check.stdout + check.stderr
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["provider"] == "beta"
    # The fence could not reach alpha; once alpha answers again the old host is destroyed.
    old_record = next(h for h in host_records(config) if h["id"] == old["id"])
    assert not old_record.get("destroyed")
    (state_dir(config) / "local" / "alpha" / "SUSPENDED").unlink()
    assert failover("check", config=config).returncode == 0
    old_record = next(h for h in host_records(config) if h["id"] == old["id"])
    assert old_record.get("destroyed") is True


def test_flaky_host_is_never_moved_with_fall_2(project: Path) -> None:
    config = deployed(project, run={"command": FLAKY}, health={"fall": 2, "rise": 1})
    codes = [failover("check", config=config).returncode for _ in range(4)]
    # Every other request fails: warnings, never two failures in a row, never a move. Two
    # failures with a success between them prove the count starts again after a success.
    assert set(codes) <= {0, 1}
    assert codes.count(1) == 2, codes
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["provider"] == "alpha"
    assert status["generation"] == 1
    assert [e["kind"] for e in failover_json("history", config=config)["events"]] == ["deploy"]


def test_24_concurrent_checks_make_exactly_one_failover(project: Path) -> None:
    # fall: 1 makes any failed round a failover; the timeout is generous because 24
    # interpreters starting at once on two cores can starve a probe's event loop for
    # seconds (2 s once failed the new host's probe under a load average of 17). The
    # old host is killed, so its probes are refused at once: the timeout costs nothing.
    config = deployed(project, health={"fall": 1, "interval": "5s", "timeout": "5s"})
    kill_active(config)
    procs = [
        subprocess.Popen(
            [FAILOVER, "check", "--json", "-c", str(config)],
            env=env_for(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(24)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    assert all(c in (0, 1) for c in codes), list(zip(codes, outputs, strict=True))
    events = failover_json("history", config=config)["events"]
    failovers = sorted((e for e in events if e["kind"] == "failover"), key=lambda e: e["id"])
    moved = [(e["reason"], e["from"], e["to"]) for e in failovers]
    # Exactly one failover of the killed host. On a starved machine (24 interpreters on
    # two cores beside other work) a later check can miss the new host's answer, and with
    # fall: 1 that is a failover of the new host: a chain, never a fork. A fork (two moves
    # from one host) is the race this test is about.
    assert [e["from"] for e in failovers[1:]] == [e["to"] for e in failovers[:-1]], moved
    assert len({str(e["from"]) for e in failovers}) == len(failovers), moved
    assert all(e["status"] == "succeeded" for e in failovers), moved
    assert not [e for e in events if e["status"] == "in_progress"]
    status = failover_json("status", config=config)["services"][0]
    assert status["generation"] == 1 + len(failovers), moved
    assert [h["id"] for h in live_hosts(config)] == [status["active"]["host_id"]]
    assert dns_values(config) == [status["active"]["address"]]


@pytest.mark.parametrize("step", STEPS)
def test_crash_after_each_step_is_finished_by_next_check(project: Path, step: str) -> None:
    config = deployed(project, health={"fall": 1})
    kill_active(config)
    crashed = failover("check", config=config, env={"FAILOVER_FAILPOINT": f"after:{step}"})
    assert crashed.returncode == 137, crashed.stdout + crashed.stderr
    # The next check finishes the run; checks after it find the service healthy (exit 0)
    # and touch nothing: the history below still holds exactly one failover.
    codes: list[int] = []
    while 0 not in codes[-1:] and len(codes) < 3:
        codes.append(failover("check", config=config).returncode)
    assert codes[-1] == 0, codes
    events = failover_json("history", config=config)["events"]
    assert not [e for e in events if e["status"] == "in_progress"]
    failovers = [e for e in events if e["kind"] == "failover"]
    assert len(failovers) == 1 and failovers[0]["status"] == "succeeded"
    assert [s["name"] for s in failovers[0]["steps"]] == STEPS
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["provider"] == "beta"
    assert status["generation"] == 2
    # One host behind DNS, and it is the only one running.
    assert dns_values(config) == [status["active"]["address"]]
    assert [h["id"] for h in live_hosts(config)] == [status["active"]["host_id"]]


def test_every_candidate_times_out_then_critical(project: Path) -> None:
    data = base_config(health={"fall": 1}, policy={"ready_timeout": "1500ms"})
    data["services"]["web"]["run"]["restore"] = [
        'if [ "$FAILOVER_PROVIDER" != alpha ]; then sleep 600; fi'
    ]
    data["providers"].append({"name": "gamma", "type": "local"})
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    before = failover_json("status", config=config)["services"][0]
    kill_active(config)
    check = failover("check", config=config)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "no provider could take the service" in check.stdout
    assert "beta" in check.stdout and "gamma" in check.stdout
    assert "ready_timeout" in check.stdout
    # Every timed-out candidate was destroyed; DNS and the state were left as they were.
    assert live_hosts(config) == []
    assert all(h.get("destroyed") for h in host_records(config) if h["provider"] != "alpha")
    after = failover_json("status", config=config)["services"][0]
    assert after["generation"] == 1 and after["dns"] == before["dns"]
    event = next(
        e for e in failover_json("history", config=config)["events"] if e["kind"] == "failover"
    )
    assert event["status"] == "failed"


def test_ready_timeout_then_next_provider_succeeds(project: Path) -> None:
    data = base_config(health={"fall": 1}, policy={"ready_timeout": "1500ms"})
    data["providers"].append({"name": "gamma", "type": "local"})
    data["services"]["web"]["policy"]["providers"] = ["alpha", "beta", "gamma"]
    # beta's hosts are broken through a restore command that hangs on beta only.
    data["services"]["web"]["run"]["restore"] = [
        'if [ "$FAILOVER_PROVIDER" = beta ]; then sleep 600; fi'
    ]
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    kill_active(config)
    check = failover("check", config=config)
    assert check.returncode == 1, check.stdout + check.stderr
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["provider"] == "gamma"
    event = next(
        e for e in failover_json("history", config=config)["events"] if e["kind"] == "failover"
    )
    assert event["status"] == "succeeded"
    assert [s["name"] for s in event["steps"]] == STEPS
    assert "beta" in json.dumps(event["steps"])  # the timed-out attempt is in the journal
    assert [h["provider"] for h in live_hosts(config)] == ["gamma"]


def test_no_usable_provider_leaves_everything_and_exits_2(project: Path) -> None:
    config = deployed(project, health={"fall": 1})
    before = failover_json("status", config=config)["services"][0]
    (state_dir(config) / "local" / "beta" / "SUSPENDED").write_text("")
    kill_active(config)
    check = failover("check", config=config)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "beta" in check.stdout and "blocked" in check.stdout
    after = failover_json("status", config=config)["services"][0]
    assert after["active"] == before["active"]
    assert after["dns"]["values"] == before["dns"]["values"]
    assert after["generation"] == 1


def test_circuit_breaker_holds_after_max_moves(project: Path) -> None:
    config = deployed(project, health={"fall": 1}, policy={"max_moves_per_hour": 1})
    kill_active(config)
    assert failover("check", config=config).returncode == 1
    kill_active(config)
    check = failover("check", config=config)
    assert check.returncode == 2
    assert "circuit breaker" in check.stdout
    assert (
        len(
            [
                e
                for e in failover_json("history", config=config)["events"]
                if e["kind"] == "failover"
            ]
        )
        == 1
    )


def test_auto_failover_off_reports_critical(project: Path) -> None:
    config = deployed(project, health={"fall": 1}, policy={"auto_failover": False})
    kill_active(config)
    check = failover("check", config=config)
    assert check.returncode == 2
    assert "auto_failover is off" in check.stdout
    move = failover("move", "--to", "beta", "--yes", config=config)
    assert move.returncode == 0, move.stderr
    assert failover_json("status", config=config)["services"][0]["active"]["provider"] == "beta"


def test_watcher_cut_off_reports_unknown_and_moves_nothing(project: Path) -> None:
    config = deployed(project, health={"fall": 1, "canary": "127.0.0.1:9"})
    # Probes and canary both fail; the local provider still says the host runs.
    for host in host_records(config):
        os.killpg(int(host["pid"]), signal.SIGSTOP)
    try:
        check = failover("check", config=config)
    finally:
        for host in host_records(config):
            os.killpg(int(host["pid"]), signal.SIGCONT)
    assert check.returncode == 3, check.stdout + check.stderr
    assert "watcher itself may be cut off" in check.stdout
    assert failover_json("status", config=config)["services"][0]["generation"] == 1


def test_check_json_document(project: Path) -> None:
    config = deployed(project)
    doc = failover_json("check", config=config)
    assert doc["exit_code"] == 0
    (svc,) = doc["services"]
    assert set(svc) >= {"service", "state", "exit_code", "action", "probes"}
    assert svc["probes"][0]["kind"] == "http" and svc["probes"][0]["ok"] is True
    assert set(svc["probes"][0]) == {"kind", "ok", "latency_s", "error"}


def test_check_dry_run_changes_nothing(project: Path) -> None:
    config = deployed(project, health={"fall": 1})
    kill_active(config)
    doc = failover_json("check", "--dry-run", config=config)
    assert doc["exit_code"] == 2
    assert doc["services"][0]["action"] == "would_failover"
    assert failover_json("status", config=config)["services"][0]["generation"] == 1


def test_plan_and_move(project: Path) -> None:
    config = deployed(project)
    plan = failover_json("plan", "--to", "beta", config=config)
    assert plan["possible"] is True and plan["to"] == "beta"
    assert [s["name"] for s in plan["steps"]] == STEPS
    assert failover("move", "--to", "beta", config=config).returncode == 2  # no --yes, no tty
    moved = failover("move", "--to", "beta", "--yes", config=config)
    assert moved.returncode == 0, moved.stderr
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["provider"] == "beta"
    assert [h["provider"] for h in live_hosts(config)] == ["beta"]
    assert failover_json("history", config=config)["events"][0]["kind"] == "move"


def test_drill_reports_and_tears_down(project: Path) -> None:
    config = deployed(project)
    junit = project / "drill.xml"
    doc = failover_json("drill", "--to", "beta", "--junit", str(junit), config=config)
    assert doc["status"] == "succeeded"
    assert [s["name"] for s in doc["steps"]] == [
        "select",
        "provision",
        "wait_ready",
        "restore",
        "verify",
        "teardown",
    ]
    assert all(s["duration_s"] is not None for s in doc["steps"])
    xml = junit.read_text()
    assert "<testsuite" in xml and 'failures="0"' in xml
    # DNS and the live host are untouched, the drill host is gone.
    assert [h["provider"] for h in live_hosts(config)] == ["alpha"]
    status = failover_json("status", config=config)["services"][0]
    assert status["generation"] == 1 and dns_values(config) == [status["active"]["address"]]


def test_failed_drill_is_reported(project: Path) -> None:
    data = base_config(policy={"ready_timeout": "1s"})
    data["services"]["web"]["run"]["restore"] = [
        'if [ "$FAILOVER_PROVIDER" = beta ]; then exit 3; fi'
    ]
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    junit = project / "drill.xml"
    proc = failover("drill", "--to", "beta", "--junit", str(junit), config=config)
    assert proc.returncode == 1
    assert "restore failed with exit status 3" in proc.stdout + proc.stderr
    assert "<failure" in junit.read_text()
    assert [h["provider"] for h in live_hosts(config)] == ["alpha"]


def test_watch_ends_cleanly_on_sigterm_and_serves_metrics(project: Path) -> None:
    config = deployed(project)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [FAILOVER, "watch", "--metrics-port", str(port), "-c", str(config)],
        env=env_for(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def metrics() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    return str(r.read().decode())
            except OSError:
                return ""

        # Rounds every 200ms with a 200ms timeout: on a loaded machine one may miss, so
        # wait for a good round rather than judging the first one.
        good = 'failover_probe_success{kind="http",service="web"} 1.0'
        wait_for(lambda: good in metrics(), what="a good round in the metrics")
        text = metrics()
        assert 'failover_service_state{service="web",state="up"} 1.0' in text
        assert 'failover_probe_latency_seconds{kind="http",service="web"}' in text
        assert "failover_rounds_total" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "SIGTERM received" in out


def test_watch_rounds_moves_the_service(project: Path) -> None:
    config = deployed(project, health={"fall": 2})
    kill_active(config)
    proc = failover("watch", "--rounds", "4", config=config)
    assert proc.returncode == 0, proc.stderr
    assert failover_json("status", config=config)["services"][0]["active"]["provider"] == "beta"


def test_demo_json(project: Path) -> None:
    proc = failover("demo", "--json", env={"TMPDIR": str(project)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["from"] == "alpha" and doc["to"] == "beta"
    assert 0 <= doc["detected_after_s"] <= doc["recovered_after_s"]
    assert any(e["kind"] == "failover" and e["status"] == "succeeded" for e in doc["events"])
    # It leaves nothing running and nothing behind.
    assert not list(project.glob("failover-demo-*"))


def test_check_imports_no_cloud_sdk(project: Path) -> None:
    config = deployed(project)
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['failover', 'check', '-c', {str(config)!r}]\n"
        "try:\n    runpy.run_module('cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'google', 'azure', 'cloudflare', 'asyncssh'))\n"
        "print('LOADED', bad)\n"
    )
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env_for(), timeout=60
    )
    assert "LOADED []" in proc.stdout, proc.stdout + proc.stderr
    assert "FAILOVER OK" in proc.stdout


def test_help_lists_every_command() -> None:
    proc = failover("--help")
    assert proc.returncode == 0
    for command in (
        "init",
        "validate",
        "schema",
        "doctor",
        "deploy",
        "status",
        "check",
        "watch",
        "plan",
        "move",
        "drill",
        "history",
        "demo",
    ):
        assert command in proc.stdout


def test_check_without_deploy_is_critical(project: Path) -> None:
    config = write_config(project, base_config())
    proc = failover("check", config=config)
    assert proc.returncode == 2
    assert "not deployed" in proc.stdout


def test_deploy_to_the_provider_it_lives_on_healthy_does_nothing(project: Path) -> None:
    """`deploy --provider alpha` of a service live and healthy on alpha made a new host
    there and bumped the generation ("web now lives on alpha ... from alpha")."""
    config = deployed(project)
    assert failover("check", config=config).returncode == 0
    before = failover_json("status", config=config)["services"][0]
    proc = failover("deploy", "--provider", "alpha", config=config)
    assert proc.returncode == 0, proc.stderr
    assert "web is already live and healthy on alpha" in proc.stdout
    after = failover_json("status", config=config)["services"][0]
    assert after["active"]["host_id"] == before["active"]["host_id"]
    assert after["generation"] == before["generation"]
    assert len(live_hosts(config)) == 1


def test_stdout_is_quiet_when_not_a_terminal(project: Path) -> None:
    config = write_config(project, base_config())
    proc = failover("deploy", config=config)
    assert proc.returncode == 0
    assert proc.stdout.count("\n") == 1 and "now lives on alpha" in proc.stdout
    assert proc.stderr == ""


def test_unknown_service_and_provider_are_usage_errors(project: Path) -> None:
    config = write_config(project, base_config())
    proc = failover("deploy", "nope", config=config)
    assert proc.returncode == 2 and "no service named 'nope'" in proc.stderr
    proc = failover("move", "--to", "nowhere", "--yes", config=config)
    assert proc.returncode == 2 and "no provider named 'nowhere'" in proc.stderr


def test_state_file_corrupt_is_reported_not_reset(project: Path) -> None:
    config = deployed(project)
    db = state_dir(config) / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"garbage" * 100)
    proc = failover("status", config=config)
    assert proc.returncode == 1
    assert "unreadable" in proc.stderr and "mv " in proc.stderr
    assert "Traceback" not in proc.stderr
    assert db.read_bytes() == b"garbage" * 100  # never silently reset
    check = failover("check", config=config)
    assert check.returncode == 3


def test_help_is_fast_enough_to_run_from_cron() -> None:
    # Not a timing assert: the start-up path must simply not import the engine's heavy parts.
    code = (
        "import sys, runpy\nsys.argv=['failover','--help']\n"
        "try:\n    runpy.run_module('cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(('failover.engine',"
        "'pydantic','jinja2','boto3','google','azure'))))"
    )
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env_for(), timeout=60
    )
    assert "LOADED []" in proc.stdout, proc.stdout[-500:]


def test_history_limit_and_text(project: Path) -> None:
    config = deployed(project)
    failover("drill", "--to", "beta", config=config, check=True)
    assert len(failover_json("history", "--limit", "1", config=config)["events"]) == 1
    text = failover("history", config=config).stdout
    assert "drill succeeded" in text and "deploy succeeded" in text


def test_lost_state_is_rebuilt_from_the_providers(project: Path) -> None:
    config = deployed(project, health={"fall": 1})
    kill_active(config)
    assert failover("check", config=config).returncode == 1  # now on beta, generation 2
    before = failover_json("status", config=config)["services"][0]
    # A stray, older host of the service that the lost state knew nothing about.
    from providers.base import HostSpec
    from providers.base import ProviderContext
    from providers.base import RunSpec
    from providers.local import LocalProvider
    from providers.local import LocalSettings

    alpha = LocalProvider(
        LocalSettings(name="alpha", type="local"), ProviderContext(state_dir(config))
    )
    stray = alpha.create_host(HostSpec("web-g1-stray", "web", 1, 8080, RunSpec("sleep 600")))
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (state_dir(config) / name).unlink(missing_ok=True)
    assert failover_json("status", config=config)["services"][0]["active"] is None
    deploy = failover("deploy", config=config)
    assert deploy.returncode == 0, deploy.stderr
    after = failover_json("status", config=config)["services"][0]
    # The live host was adopted, not replaced: same host, same generation, DNS unchanged.
    assert after["active"]["host_id"] == before["active"]["host_id"]
    assert after["generation"] == before["generation"] == 2
    assert dns_values(config) == [after["active"]["address"]]
    (event,) = failover_json("history", config=config)["events"]
    assert "adopted" in event["reason"]
    assert stray.id in [h["id"] for h in live_hosts(config)]
    assert failover("check", config=config).returncode == 0  # fences what it found
    assert [h["id"] for h in live_hosts(config)] == [after["active"]["host_id"]]


def test_dns_only_failure_is_critical_and_moves_nothing(project: Path) -> None:
    config = deployed(project, health={"fall": 1, "http": {"path": "/"}, "dns": {}})
    assert failover("check", config=config).returncode == 0
    zone = state_dir(config) / "dns" / "example.test.json"
    zone.write_text("{ not json")
    check = failover("check", config=config)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "a failover cannot fix DNS" in check.stdout
    zone.unlink()
    assert failover("check", config=config).returncode == 2  # the record is gone now
    status = failover_json("status", config=config)["services"][0]
    assert status["generation"] == 1 and status["active"]["provider"] == "alpha"
    assert len(live_hosts(config)) == 1
