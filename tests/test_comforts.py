"""The comforts every CLI has: --version, completion, -c anywhere, clean --help,
`destroy`, `validate --json`; and the watcher's metrics of issue 15."""

from __future__ import annotations

import json
import urllib.request
from importlib.metadata import version
from pathlib import Path

from failover import config as cfg
from failover.engine import Engine
from failover.watch import Metrics
from tests.helpers import base_config
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import kill_active
from tests.helpers import live_hosts
from tests.helpers import write_config
from tests.servers import free_port


def test_version() -> None:
    proc = failover("--version", check=True)
    assert proc.stdout.strip() == f"failover {version('failover')}"


def test_completion_shows_and_installs(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path), "SHELL": "/bin/bash"}
    shown = failover("--show-completion", "bash", env=home, check=True).stdout
    assert "_FAILOVER_COMPLETE" in shown and "complete " in shown
    failover("--install-completion", "bash", env=home, check=True)
    scripts = list(tmp_path.glob(".bash_completions/failover*"))
    assert scripts and "_FAILOVER_COMPLETE" in scripts[0].read_text()
    assert ".bash_completions" in (tmp_path / ".bashrc").read_text()


def test_config_option_before_or_after_the_command(tmp_path: Path) -> None:
    config = write_config(tmp_path, base_config())
    before = failover("-c", str(config), "validate", check=True).stdout
    after = failover("validate", "-c", str(config), check=True).stdout
    assert before == after and "valid" in before
    other = write_config(tmp_path, base_config(port=8081), name="other.yaml")
    # Given twice, the one after the command wins (it is the nearer).
    proc = failover("-c", str(config), "validate", "--json", "-c", str(other), check=True)
    assert json.loads(proc.stdout)["path"] == str(other.resolve())


def test_boolean_flags_show_no_type_in_help() -> None:
    for command in ("check", "move", "init", "validate", "destroy"):
        text = failover(command, "--help", check=True).stdout
        assert "<bool>" not in text, text
    assert "<path>" in failover("check", "--help", check=True).stdout  # others keep theirs


def test_help_lists_the_operator_commands() -> None:
    text = failover("--help", check=True).stdout
    for word in ("destroy", "notify", "systemd", "--version", "--install-completion"):
        assert word in text


def test_help_and_schema_speak_to_users_not_to_the_developers_notes() -> None:
    """`failover dns --help` said "DNS providers (section 12)": a user has no section 12
    (the README's sections have names), nor issue numbers or Sphinx roles."""
    import re

    internal = re.compile(r"(section|issue) \d|contract|:mod:", re.IGNORECASE)
    texts = [failover("schema", check=True).stdout, failover("--help", check=True).stdout]
    texts += [failover(c, "--help", check=True).stdout for c in ("certs", "dns", "state")]
    for text in texts:
        assert not internal.findall(text), internal.findall(text)


def test_validate_json_on_success_and_on_error(tmp_path: Path) -> None:
    data = base_config()
    data["notify"] = [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "name": "ops"}]
    config = write_config(tmp_path, data)
    doc = failover_json("validate", config=config)
    assert doc["ok"] is True and doc["services"] == ["web"] and doc["notify"] == ["ops"]
    data["services"]["web"]["health"]["fall"] = 0
    bad = write_config(tmp_path, data, name="bad.yaml")
    proc = failover("validate", "--json", config=bad)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and any("services.web.health.fall" in p for p in doc["problems"])
    # The error document of every other command (it lacked these two), and the lines on
    # stderr, as README "Commands" says of --json errors.
    assert doc["exit_code"] == 2 and "services.web.health.fall: must be >= 1" in doc["error"]
    assert "services.web.health.fall: must be >= 1" in proc.stderr


def test_status_html_and_json_together_is_a_usage_error(tmp_path: Path) -> None:
    """`status --html --json` printed the page and ignored --json: a script got HTML."""
    config = write_config(tmp_path, base_config())
    proc = failover("status", "--html", "-", "--json", config=config)
    assert proc.returncode == 2, proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 2 and "--html and --json" in doc["error"]


def test_destroy_removes_every_host_and_the_record_but_keeps_the_journal(
    project: Path,
) -> None:
    config = write_config(project, base_config(health={"fall": 1}))
    failover("deploy", config=config, check=True)
    kill_active(config)
    failover("check", config=config)  # a failover: the old host is fenced, a new one lives
    assert live_hosts(config)
    refused = failover("destroy", config=config)  # stdin is not a terminal
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert live_hosts(config)
    doc = failover_json("destroy", "--yes", config=config)
    assert doc["ok"] is True and doc["destroyed"], doc
    assert live_hosts(config) == []
    status = failover_json("status", config=config)["services"][0]
    assert status["active"] is None
    kinds = [e["kind"] for e in failover_json("history", config=config)["events"]]
    assert kinds == ["failover", "deploy"]
    again = failover("destroy", "--yes", config=config, check=True)  # nothing left: fine
    assert "forgotten" in again.stdout
    assert failover("deploy", config=config).returncode == 0  # the quick start, again


def test_metrics_of_issue_15(project: Path) -> None:
    config = write_config(project, base_config(health={"fall": 1}))
    engine = Engine(cfg.load(config))
    port = free_port()
    metrics = Metrics(port, "127.0.0.1")
    try:
        assert engine.run("web", "deploy", reason="test").ok
        assert engine.drill("web", "beta").ok
        (verdict,) = engine.check(["web"])
        drill, deploy = engine.store.events("web", limit=2)
        metrics.observe(verdict, drill)
        metrics.observe(verdict, deploy)
        metrics.place("web", engine.store.service("web"))
        metrics.providers(engine.store.provider_states())
        metrics.delivered("failover", "ops-hook", "sent")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        metrics.close()
        engine.close()
    active = json.loads(failover("status", "--json", config=config).stdout)["services"][0]
    address = active["active"]["address"]
    assert (
        f'failover_active_provider_info{{address="{address}",provider="alpha",service="web"}} 1.0'
        in text
    )
    assert 'failover_generation{service="web"} 1.0' in text
    assert 'failover_last_good_round_timestamp_seconds{service="web"}' in text
    assert 'failover_step_duration_seconds{kind="drill",service="web",step="teardown"}' in text
    assert 'failover_step_duration_seconds{kind="deploy",service="web",step="cutover"}' in text
    assert "failover_provider_state{" in text
    assert (
        'failover_notifications_total{event="failover",result="sent",target="ops-hook"} 1.0' in text
    )


def test_help_stays_free_of_heavy_imports() -> None:
    import subprocess

    code = (
        "import sys, runpy\nsys.argv=['failover','--help']\n"
        "try:\n    runpy.run_module('cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(('failover.engine',"
        "'failover.notify','failover.delivery','pydantic','smtplib','apprise'))))"
    )
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env_for(), timeout=60
    )
    assert "LOADED []" in proc.stdout, proc.stdout[-500:] + proc.stderr[-500:]


def test_destroy_keeps_the_record_while_a_host_cannot_be_destroyed(project: Path) -> None:
    config = write_config(project, base_config())
    failover("deploy", config=config, check=True)
    suspended = project / ".failover" / "local" / "alpha" / "SUSPENDED"
    suspended.touch()
    proc = failover("destroy", "--yes", config=config)
    assert proc.returncode == 1 and "NOT destroyed: alpha" in proc.stdout, proc.stdout
    assert failover_json("status", config=config)["services"][0]["active"] is not None
    assert live_hosts(config)  # never a silent leak: it is still there, and said so
    suspended.unlink()
    assert failover_json("destroy", "--yes", config=config)["ok"] is True
    assert live_hosts(config) == []
