"""Issue 21, the CLI and configuration holes: what a new user meets with nothing but the
README, and what hostile input does to the commands."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from failover.starter import starter
from tests.conftest import need
from tests.doubles.moto_server import moto_available
from tests.doubles.moto_server import shared_moto
from tests.doubles.moto_server import use_test_credentials
from tests.etcd_server import EtcdCluster
from tests.etcd_server import etcd_state
from tests.helpers import APP
from tests.helpers import FAILOVER
from tests.helpers import ROOT
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import write_config
from tests.servers import free_port
from tests.sshd import Sshd

PROVIDERS = ("local", "aws", "gcp", "azure", "ssh")

# --------------------------------------------------------------------------- item 3: schema


def _validator() -> jsonschema.protocols.Validator:
    # `jsonschema` comes with moto[server] (a test dependency): a real, independent
    # validator of the document `failover schema` prints, as an editor would use it.
    schema = json.loads(failover("schema", check=True).stdout)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)  # type: ignore[no-any-return]


def _problems(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def _merged(base: Any, fragment: Any) -> Any:
    """A README fragment put into a whole file: mappings merge, anything else replaces."""
    if isinstance(base, dict) and isinstance(fragment, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in fragment.items()}}
    return fragment


def _readme_examples() -> list[tuple[int, Any]]:
    text = (ROOT / "README.md").read_text()
    blocks = []
    for match in re.finditer(r"```yaml\n(.*?)```", text, re.S):
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((line, yaml.safe_load(match.group(1))))
    return blocks


@pytest.mark.parametrize("provider", PROVIDERS)
def test_schema_accepts_what_init_writes(provider: str, tmp_path: Path) -> None:
    path = tmp_path / "failover.yaml"
    failover("init", "--provider", provider, str(path), check=True)
    doc = yaml.safe_load(path.read_text())
    assert _problems(_validator(), doc) == []


@pytest.mark.parametrize(
    ("provider", "env"),
    [
        ("local", {}),
        ("aws", {"FAILOVER_AWS_IMAGE": "ami-0123456789abcdef0"}),
        ("gcp", {"GOOGLE_CLOUD_PROJECT": "acme-123"}),
    ],
)
def test_init_says_which_variables_to_set_and_names_its_file_in_each_next_step(
    provider: str, env: dict[str, str], tmp_path: Path
) -> None:
    """`init --provider aws x.yaml` said "next: `failover validate -c x.yaml`", which failed
    on the unset ${FAILOVER_AWS_IMAGE}, "then `failover deploy`", which read ./failover.yaml."""
    path = tmp_path / "x.yaml"
    said = failover("init", "--provider", provider, str(path), check=True).stdout
    for name in env:
        assert f"next: set {name} (see the comments in {path})" in said
    steps = re.findall(r"`(failover [^`]+)`", said)
    assert steps == [f"failover validate -c {path}", f"failover deploy -c {path}"]
    proc = failover(*shlex.split(steps[0])[1:], env=env)
    assert proc.returncode == 0, proc.stderr


def test_schema_accepts_every_readme_example() -> None:
    validator = _validator()
    base = yaml.safe_load(starter("local"))
    examples = _readme_examples()
    assert len(examples) >= 8  # the test reads the README's examples, not nothing
    for line, doc in examples:
        assert isinstance(doc, dict), f"README.md:{line}: not a mapping"
        assert _problems(validator, _merged(base, doc)) == [], f"README.md:{line}"


def test_schema_reads_durations_and_env_references_as_the_loader_does() -> None:
    validator = _validator()
    base = yaml.safe_load(starter("local"))
    web = base["services"]["web"]
    for interval in (10, 2.5, "10s", "500ms", "1m", "${INTERVAL}"):
        web["health"]["interval"] = interval
        assert _problems(validator, base) == [], interval
    web["port"] = "${PORT}"
    assert _problems(validator, base) == []
    # ... and still refuses what the loader refuses.
    for interval in ("banana", "10 minutes", True, -1):
        web["health"]["interval"] = interval
        assert _problems(validator, base), interval
    web["health"]["interval"] = "10s"
    web["port"] = "eighty"
    assert _problems(validator, base)


# --------------------------------------------------------------------------- item 6: plan

APP_DB = APP + " --db data/app.db"
DATA = {
    "backup": "{python} -m failover.demo_app dump data/app.db",
    "restore": "{python} -m failover.demo_app load data/app.db",
    "every": "1h",
}


def _data_project(project: Path, providers: list[dict[str, Any]]) -> Path:
    conf = base_config(run={"command": APP_DB}, data=DATA)
    conf["providers"] = providers
    (project / "offsite").mkdir()
    conf["stores"] = [{"name": "offsite", "type": "dir", "path": str(project / "offsite")}]
    return write_config(project, conf)


def test_plan_skips_a_provider_that_cannot_restore_the_data_and_shows_the_restore(
    project: Path,
) -> None:
    # A static machine (nothing answers there: the planner must not even need to ask).
    own = {"name": "own", "type": "static", "machines": [{"address": "127.84.0.9"}]}
    alpha, beta = ({"name": n, "type": "local"} for n in ("alpha", "beta"))
    config = _data_project(project, [alpha, own, beta])
    try:
        failover("deploy", config=config, check=True)
        taken = failover_json("backup", config=config)
        # A failover from alpha: `own` (static) comes first in the priority list, and is
        # skipped, with the reason; beta takes it.
        doc = failover_json("plan", config=config)
        assert doc["to"] == "beta" and doc["possible"] is True
        skipped = [c for c in doc["candidates"] if c["provider"] == "own"]
        assert skipped and skipped[0]["usable"] is False
        assert "cannot restore web's data" in skipped[0]["reason"]
        assert doc["restore"]["backup"] == taken["id"]
        assert doc["restore"]["store"] == "offsite" and doc["restore"]["age_s"] >= 0
        text = failover("plan", config=config).stdout
        assert f"backup {taken['id']} from store offsite" in text
        # Asked for by name: not possible, exit 1, the reason said.
        proc = failover("plan", "--to", "own", config=config)
        assert proc.returncode == 1 and "cannot restore web's data" in proc.stdout
        moved = failover("move", "--to", "own", "--yes", config=config)
        assert moved.returncode == 1 and "cannot restore" in moved.stderr
        assert failover_json("status", config=config)["services"][0]["active"]["provider"] == (
            "alpha"
        )
    finally:
        cleanup(config)


def test_plan_of_a_service_without_backups_says_it_starts_empty(project: Path) -> None:
    config = _data_project(project, [{"name": "alpha", "type": "local"}])
    doc = failover_json("plan", config=config)
    assert doc["kind"] == "deploy" and doc["restore"] == {"backup": None}
    restore = next(s for s in doc["steps"] if s["name"] == "restore")
    assert "no backup yet, the service starts empty" in restore["does"]


def test_a_cloud_host_restores_only_from_a_store_it_can_reach() -> None:
    from failover.config import parse
    from failover.engine.fit import restore_problem

    conf = base_config(run={"command": APP_DB}, data=DATA)
    conf["providers"] = [
        {"name": "alpha", "type": "local"},
        {"name": "cloud", "type": "aws", "region": "us-east-1", "image": "ami-0123456789abcdef0"},
    ]
    conf["stores"] = [{"name": "offsite", "type": "dir", "path": "/srv/offsite"}]
    assert restore_problem(parse(yaml.safe_dump(conf)), "web", "alpha") is None
    why = restore_problem(parse(yaml.safe_dump(conf)), "web", "cloud")
    assert why is not None and "no store a new host can reach by itself" in why
    conf["stores"].append({"name": "s3", "type": "s3", "bucket": "dr-bucket"})
    assert restore_problem(parse(yaml.safe_dump(conf)), "web", "cloud") is None
    conf["services"]["web"]["data"]["encryption_key"] = "k" * 32
    why = restore_problem(parse(yaml.safe_dump(conf)), "web", "cloud")
    assert why is not None and "encrypted" in why


# --------------------------------------------------------------------------- item 4: migrate


def _history(config: Path) -> list[dict[str, Any]]:
    return list(failover_json("history", config=config)["events"])


def test_commands_run_before_the_migration_do_not_block_it(
    project: Path, etcd_cluster: EtcdCluster
) -> None:
    data = base_config()
    config = write_config(project, data)
    try:
        failover("deploy", config=config, check=True)
        before = _history(config)
        data["state"] = etcd_state(etcd_cluster)
        write_config(project, data)
        # The config points at etcd; someone runs a few commands before migrating.
        failover("status", config=config)
        failover("check", config=config)
        proc = failover("state", "migrate", "--to", "etcd", config=config)
        assert proc.returncode == 0, proc.stderr
        assert _history(config) == before
        assert failover("check", config=config).returncode == 0
    finally:
        cleanup(config)


def test_a_failed_migration_is_never_acted_on_and_force_replaces_it_and_back(
    project: Path, etcd_cluster: EtcdCluster
) -> None:
    data = base_config()
    config = write_config(project, data)
    try:
        failover("deploy", config=config, check=True)
        failover("move", "--to", "beta", "--yes", config=config, check=True)
        before = _history(config)
        data["state"] = etcd_state(etcd_cluster)
        write_config(project, data)
        crash = failover(
            "state", "migrate", "--to", "etcd", config=config,
            env={"FAILOVER_FAILPOINT": "after:migrate-services"},
        )  # fmt: skip
        assert crash.returncode == 137, crash.stderr
        # Half a history: no command acts on it (the services are there, not the journal).
        check = failover("check", config=config)
        assert check.returncode == 3 and "did not finish" in check.stdout, check.stdout
        again = failover("state", "migrate", "--to", "etcd", config=config)
        assert again.returncode == 1, again.stderr
        assert "a migration that did not finish" in again.stderr and "--force" in again.stderr
        forced = failover("state", "migrate", "--to", "etcd", "--force", "--json", config=config)
        assert forced.returncode == 0, forced.stderr
        assert "a migration that did not finish" in json.loads(forced.stdout)["replaced"][0]
        assert _history(config) == before
        assert failover("check", config=config).returncode == 0
        # Life on etcd goes on: a move there, then the way back.
        failover("move", "--to", "alpha", "--yes", config=config, check=True)
        on_etcd = _history(config)
        back = failover("state", "migrate", "--to", "sqlite", config=config)
        assert back.returncode == 1 and "already holds state" in back.stderr  # the old file
        back = failover("state", "migrate", "--to", "sqlite", "--force", config=config)
        assert back.returncode == 0, back.stderr
        assert list((project / ".failover").glob("state.db.replaced-*"))
        data["state"] = {"backend": "sqlite"}
        write_config(project, data)
        assert _history(config) == on_etcd
        status = failover_json("status", config=config)["services"][0]
        assert status["active"]["provider"] == "alpha" and status["generation"] == 3
        assert failover("check", config=config).returncode == 0
    finally:
        cleanup(config)


# --------------------------------------------------------------------------- item 5: systemd

UNITS = ("failover-watch.service", "failover-check.service", "failover-check.timer")


@pytest.mark.parametrize(
    "args",
    [
        ("--every", "banana"),
        ("--every", "1min\nExecStartPre=/bin/rm -rf /"),
        ("--metrics-port", "99999"),
        ("--metrics-port", "0"),
        ("--user", "bad user"),
        ("--user", "root\nUser=root"),
    ],
)
def test_systemd_refuses_options_that_make_invalid_units(args: tuple[str, str]) -> None:
    proc = failover("systemd", *args)
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stderr and "[Service]" not in proc.stdout


def _service(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_systemd_units_write_the_dir_stores_and_say_where_the_state_is(tmp_path: Path) -> None:
    folder = tmp_path / "etc failover"  # a blank in the path: quoted, not split
    folder.mkdir()
    config = folder / "failover.yaml"
    conf = base_config()
    conf["stores"] = [
        {"name": "offsite", "type": "dir", "path": "/srv/backups"},
        {"name": "nfs", "type": "dir", "path": "/mnt/dr 100%"},
    ]
    config.write_text(yaml.safe_dump(conf))
    units = tmp_path / "units"
    proc = failover("systemd", "-c", str(config), "--write", str(units), check=True)
    # No state.dir in the config: interactive commands would read another state.
    assert "state.dir is not /var/lib/failover" in proc.stderr
    watch = _service(units / "failover-watch.service")
    assert watch["ReadWritePaths"] == ['-/srv/backups "-/mnt/dr 100%%"']
    assert watch["ExecStart"][0].endswith(f' watch --config "{config}"')
    assert _service(units / "failover-check.service")["ReadWritePaths"] == watch["ReadWritePaths"]
    analyze = shutil.which("systemd-analyze")
    if analyze:
        result = subprocess.run(
            [analyze, "verify", *(str(units / u) for u in UNITS)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        ours = [line for line in result.stderr.splitlines() if "failover-" in line]
        assert result.returncode == 0 and not ours, result.stderr
    # With state.dir set as the warning says: no warning, and the commands of that
    # machine read the watcher's state directory.
    conf["state"] = {"dir": "/var/lib/failover"}
    config.write_text(yaml.safe_dump(conf))
    proc = failover("systemd", "-c", str(config), check=True)
    # Where this checkout lives (CI may clone under /tmp or /root) may add the ExecStart
    # placement warning; no other warning is left once state.dir is set.
    left = [
        line
        for line in proc.stderr.splitlines()
        if "warning" in line and "203/EXEC" not in line and line.strip()
    ]
    assert left == [], proc.stderr
    from failover.config import load

    assert load(config).state_dir == Path("/var/lib/failover")


def test_systemd_says_why_it_cannot_read_the_config_in_words(tmp_path: Path) -> None:
    """It said "cannot read /etc/failover/failover.yaml (FileNotFoundError)"."""
    from failover.systemd import from_config

    (missing,) = from_config(tmp_path / "failover.yaml", "/var/lib/failover")[1]
    assert "(no such file or directory)" in missing and "Error" not in missing
    assert "name the config with -c" in missing
    (tmp_path / "bad.yaml").write_text("services: [\n")
    (bad,) = from_config(tmp_path / "bad.yaml", "/var/lib/failover")[1]
    assert "(not valid YAML)" in bad


def test_systemd_warns_when_execstart_is_hidden_from_the_service() -> None:
    from failover.systemd import placement_warnings

    for exe in ("/home/ops/.venv/bin/failover", "/root/venv/bin/failover", "/tmp/v/failover"):
        (warning,) = placement_warnings(exe)
        assert "203/EXEC" in warning and exe in warning
    assert placement_warnings("/opt/failover/bin/failover") == []
    assert placement_warnings("/homework/bin/failover") == []


def test_state_dir_in_the_config_is_relative_to_it_and_the_flags_win(tmp_path: Path) -> None:
    from failover.config import load

    conf = base_config()
    conf["state"] = {"dir": "state"}
    config = write_config(tmp_path, conf)
    assert load(config).state_dir == tmp_path / "state"
    assert load(config, tmp_path / "other").state_dir == tmp_path / "other"


# --------------------------------------------------------------------------- confusing


def test_check_says_a_config_error_once_under_a_shared_log(tmp_path: Path) -> None:
    conf = base_config()
    conf["services"]["web"]["health"]["fall"] = 0
    config = write_config(tmp_path, conf)
    log = tmp_path / "log"
    with log.open("a") as sink:  # `failover check >> log 2>&1`
        proc = subprocess.run(
            [FAILOVER, "check", "-c", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env_for(),
            timeout=120,
        )
    assert proc.returncode == 3
    text = log.read_text()
    assert text.count("health.fall") == 1, text
    assert text.startswith("FAILOVER UNKNOWN - ")


def test_status_needs_no_notification_secret(project: Path) -> None:
    conf = base_config()
    conf["notify"] = [{"type": "slack", "url": "${SLACK_WEBHOOK_URL_NOT_SET}"}]
    config = write_config(project, conf)
    for command in (("status",), ("history",), ("plan",), ("doctor",)):
        proc = failover(*command, config=config)
        assert proc.returncode in (0, 1), (command, proc.stderr)
        assert "SLACK_WEBHOOK_URL_NOT_SET" not in proc.stderr
    # What notifies still says what is missing.
    for command in (("validate",), ("check",), ("notify", "test")):
        proc = failover(*command, config=config)
        assert proc.returncode in (2, 3), (command, proc.stdout, proc.stderr)
        assert "SLACK_WEBHOOK_URL_NOT_SET is not set" in proc.stdout + proc.stderr


def test_an_azureblob_store_with_a_connection_string_needs_no_account_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from failover.config import ConfigError
    from failover.config import parse

    conf = base_config()
    store = {"name": "az", "type": "azureblob", "container": "dr"}
    conf["stores"] = [{**store, "connection_string": "${AZURE_STORAGE_CONNECTION_STRING}"}]
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    assert parse(yaml.safe_dump(conf)).stores[0].account_url is None
    conf["stores"] = [store]
    with pytest.raises(ConfigError) as caught:
        parse(yaml.safe_dump(conf))
    assert caught.value.problems == ["stores[0]: account_url (or connection_string) is required"]


def test_the_ssh_keyscan_line_is_a_pin_as_printed(running_sshd: Sshd, tmp_path: Path) -> None:
    from providers.base import ProviderContext
    from providers.ssh import SshProvider
    from providers.ssh import SshSettings

    scan = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", "-p", str(running_sshd.port), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    (line,) = [x for x in scan.stdout.splitlines() if x and not x.startswith("#")]
    assert line.startswith(f"[127.0.0.1]:{running_sshd.port} ssh-ed25519 ")
    settings = SshSettings.model_validate(
        {
            "name": "own",
            "type": "ssh",
            "identity_file": str(running_sshd.client_key),
            "machines": [
                {"address": "127.0.0.1", "ssh": running_sshd.endpoint(), "host_key": line}
            ],
        }
    )
    assert settings.machines[0].host_key == " ".join(line.split()[1:])
    report = SshProvider(settings, ProviderContext(tmp_path)).check_account()
    assert report.state == "available", report


def test_validate_parses_the_host_key_that_doctor_would_call_unusable(tmp_path: Path) -> None:
    conf = base_config()
    example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyReplaceMeWithTheRealOne00"
    conf["providers"].append(
        {"name": "own", "type": "ssh", "machines": [{"address": "192.0.2.7", "host_key": example}]}
    )
    proc = failover("validate", config=write_config(tmp_path, conf))
    assert proc.returncode == 2
    assert "providers[2].machines[0].host_key: not a usable ssh-ed25519 key" in proc.stderr


def test_destroy_finishes_with_yes_when_a_provider_cannot_list(project: Path) -> None:
    from failover.config import load
    from failover.engine import Engine
    from failover.engine.destroy import destroy_service

    config = write_config(project, base_config())
    try:
        failover("deploy", config=config, check=True)  # on alpha; beta never held a host
        root = project / ".failover" / "local" / "beta"
        root.mkdir(parents=True, exist_ok=True)
        (root / "SUSPENDED").touch()
        engine = Engine(load(config))
        try:
            refused = destroy_service(engine, "web")
        finally:
            engine.close()
        assert refused["ok"] is False and "beta could not list its hosts" in refused["why"]
        assert "--yes" in refused["why"]
        assert [h["provider"] for h in refused["destroyed"]] == ["alpha"]
        proc = failover("destroy", "--yes", config=config)
        assert proc.returncode == 0, proc.stderr
        assert "warning: beta could not list its hosts (beta: account suspended" in proc.stderr
        assert "a host of web it holds is not destroyed" in proc.stderr
        assert failover_json("status", config=config)["services"][0]["active"] is None
    finally:
        cleanup(config)


def test_a_lone_sqlite_watcher_exports_no_etcd_or_leader_series() -> None:
    """`failover_etcd_reachable 0` and `failover_watcher_leader 0` on a SQLite watcher
    read as "etcd down, nobody leads": the series belong to `state.backend: etcd`."""
    import urllib.request

    from failover.watch import Metrics

    port = free_port()
    metrics = Metrics(port, "127.0.0.1")
    try:
        metrics.providers({"alpha": {"state": "available"}})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        metrics.close()
    assert "failover_provider_state" in text
    for name in ("failover_etcd_reachable", "failover_watcher_leader", "failover_watcher_votes"):
        assert name not in text


def test_the_provider_state_metric_says_what_readme_and_help_say() -> None:
    import urllib.request

    from failover.watch import Metrics

    port = free_port()
    metrics = Metrics(port, "127.0.0.1")
    try:
        states = {"alpha": {"state": "available"}, "beta": {"state": "blocked"}}
        metrics.providers(states)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        metrics.close()
    assert 'failover_provider_state{provider="alpha",state="available"} 1.0' in text
    (help_line,) = [x for x in text.splitlines() if x.startswith("# HELP failover_provider_state")]
    readme = " ".join((ROOT / "README.md").read_text().split())
    said = readme[readme.index("`failover_provider_state{provider, state}`") :][:200]
    for state in ("available", "blocked", "unknown"):
        assert state in help_line and f"`{state}`" in said
    assert "`ok`" not in said and "ok," not in help_line


def test_text_status_shows_the_warm_standby() -> None:
    from failover import output

    doc = {
        "service": "web",
        "domain": "www.example.test",
        "active": {
            "provider": "alpha",
            "host_id": "h-00000001",
            "address": "127.77.0.1",
            "port": 8080,
            "since": "2026-12-04T20:00:00Z",
        },
        "health": {
            "state": "up",
            "consecutive_failures": 0,
            "consecutive_successes": 3,
            "last_check": None,
            "latency_s": None,
        },
        "dns": None,
        "generation": 1,
        "standby": {
            "provider": "beta",
            "host_id": "h-00000002",
            "address": "127.77.0.2",
            "generation": 2,
            "updated_at": "2026-12-04T20:01:00Z",
        },
        "last_event": None,
        "providers": [],
    }
    shown = "beta 127.77.0.2 (host h-00000002, warm for generation 2, out of DNS)"
    assert f"  standby: {shown}" in output.status_lines([doc])
    assert "h-00000002" in output.status_table([doc], 160)
    assert not any("standby" in line for line in output.status_lines([{**doc, "standby": None}]))


def test_status_says_a_just_deployed_service_was_not_probed_yet_and_not_deployed_plainly() -> None:
    """Right after `deploy` (whose verify passed) `status` printed "unknown on alpha ...",
    and after `destroy` "unknown on nowhere (not deployed)"."""
    from failover import output

    host = {"provider": "alpha", "host_id": "h-1", "address": "127.77.0.1", "port": 8080}
    health = {"state": "unknown", "consecutive_failures": 0, "consecutive_successes": 0}
    doc: dict[str, Any] = {
        "service": "web",
        "domain": "www.example.test",
        "active": {**host, "since": "2026-12-04T20:00:00Z"},
        "health": {**health, "last_check": None, "latency_s": None},
        "dns": None,
        "generation": 1,
        "last_event": None,
        "providers": [],
    }
    first = output.status_lines([doc])[0]
    assert first.startswith("web (www.example.test): unknown (no probe round since it went live")
    assert "`failover check` runs one) on alpha 127.77.0.1:8080" in first
    assert "no probe round" in output.status_table([doc], 200)
    checked = {**doc, "health": {**doc["health"], "last_check": "2026-12-04T20:00:05Z"}}
    assert output.status_lines([checked])[0].startswith("web (www.example.test): unknown on alpha")
    gone = output.status_lines([{**doc, "active": None, "generation": 0}])[0]
    assert gone == "web (www.example.test): not deployed, generation 0"


def test_from_and_to_have_the_same_keys_in_every_document(project: Path) -> None:
    config = write_config(project, base_config())
    keys = {"provider", "host_id", "address"}
    try:
        failover("deploy", config=config, check=True)
        assert set(failover_json("plan", "--to", "beta", config=config)["from"]) == keys
        moved = failover_json("move", "--to", "beta", "--yes", config=config)
        assert set(moved["event"]["from"]) == set(moved["event"]["to"]) == keys
        events = failover_json("history", config=config)["events"]
        assert [e["kind"] for e in events] == ["move", "deploy"]
        assert set(events[0]["from"]) == set(events[0]["to"]) == keys
        assert events[1]["from"] is None and set(events[1]["to"]) == keys
    finally:
        cleanup(config)


JSON_COMMANDS = [
    ("validate",),
    ("doctor",),
    ("deploy",),
    ("move", "--to", "beta", "--yes"),
    ("plan",),
    ("status",),
    ("check",),
    ("drill", "--to", "beta"),
    ("state", "migrate", "--to", "etcd"),
    ("history",),
    ("backup",),
    ("backups",),
    ("notify", "test"),
    ("destroy", "--yes"),
]


@pytest.mark.parametrize("command", JSON_COMMANDS, ids=lambda c: " ".join(c))
def test_every_json_command_prints_a_document_on_a_bad_config(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    conf = base_config()
    conf["services"]["web"]["health"]["fall"] = 0
    proc = failover(*command, "--json", config=write_config(tmp_path, conf))
    assert proc.returncode in (2, 3), proc.stdout
    doc = json.loads(proc.stdout)
    assert "health.fall" in json.dumps(doc)


def test_backups_json_prints_a_document_when_there_is_nothing_to_list(tmp_path: Path) -> None:
    config = write_config(tmp_path, base_config())
    proc = failover("backups", "--json", config=config)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2 and "nothing to back up" in doc["error"]
    assert "nothing to back up" in proc.stderr  # people still read it on stderr


# --------------------------------------------------------------------------- doctor


def _doctor_config(tmp_path: Path, **state: Any) -> Path:
    conf = base_config()
    (tmp_path / "offsite").mkdir()
    conf["stores"] = [
        {"name": "offsite", "type": "dir", "path": str(tmp_path / "offsite")},
        {"name": "unmounted", "type": "dir", "path": str(tmp_path / "mnt" / "dr")},
    ]
    if state:
        conf["state"] = state
    return write_config(tmp_path, conf)


def test_doctor_runs_every_check_when_etcd_is_down(tmp_path: Path) -> None:
    state = {"backend": "etcd", "endpoints": [f"http://127.0.0.1:{free_port()}"], "timeout": "1s"}
    config = _doctor_config(tmp_path, **state)
    proc = failover("doctor", "--json", config=config)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["state"]["state"] == "unknown"
    assert "no etcd member answered" in doc["state"]["reason"]
    assert [p["state"] for p in doc["providers"]] == ["available", "available"]
    assert doc["dns"]["state"] == "available"
    stores = {s["name"]: s for s in doc["stores"]}
    assert [c["name"] for c in stores["offsite"]["checks"]] == ["root", "write", "read", "delete"]
    assert stores["offsite"]["state"] == "available"
    assert list((tmp_path / "offsite").iterdir()) == []  # the probe is gone
    assert stores["unmounted"]["state"] == "unknown"
    assert "does not exist (not mounted?)" in stores["unmounted"]["reason"]
    assert not (tmp_path / "mnt").exists()  # nothing written under a missing mount
    text = failover("doctor", config=config).stdout
    for line in ("state etcd: unknown", "alpha (local): available", "store offsite (dir)"):
        assert line in text


def test_doctor_checks_each_etcd_member(tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    config = _doctor_config(tmp_path, **etcd_state(etcd_cluster))
    doc = failover_json("doctor", config=config)
    checks = doc["state"]["checks"]
    assert [c["name"] for c in checks] == [f"member {url}" for url in etcd_cluster.endpoints]
    assert all(c["ok"] and "3 member(s), leader" in c["detail"] for c in checks), checks
    assert doc["state"]["state"] == "available"


def test_doctor_checks_a_cloud_store_and_its_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need(moto_available(), "moto[server] is not installed")
    import boto3

    use_test_credentials(monkeypatch)
    server = shared_moto()
    bucket = f"dr-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    conf = base_config()
    conf["stores"] = [
        {"name": "s3-dr", "type": "s3", "bucket": bucket, "endpoint": server.url},
        {"name": "s3-gone", "type": "s3", "bucket": bucket + "-x", "endpoint": server.url},
    ]
    conf["stores"][1]["retry_attempts"] = 1
    doc = failover_json("doctor", config=write_config(tmp_path, conf))
    stores = {s["name"]: s for s in doc["stores"]}
    assert stores["s3-dr"]["state"] == "available", stores["s3-dr"]
    assert stores["s3-gone"]["state"] == "unknown" and doc["ok"] is False
    assert stores["s3-gone"]["checks"][-1]["name"] == "root"


# --------------------------------------------------------------------------- missing


def _complete(words: str, cword: int, cwd: Path) -> list[str]:
    env = env_for({"_FAILOVER_COMPLETE": "complete_bash", "COMP_WORDS": words})
    env["COMP_CWORD"] = str(cword)
    proc = subprocess.run(
        [FAILOVER], capture_output=True, text=True, env=env, cwd=cwd, timeout=60, check=True
    )
    return proc.stdout.split()


def test_shell_completion_offers_the_configs_services_and_providers(tmp_path: Path) -> None:
    conf = base_config()
    conf["services"]["api"] = conf["services"]["web"]
    conf["providers"].append({"name": "backup-site", "type": "local"})
    write_config(tmp_path, conf)
    assert _complete("failover move --to ", 3, tmp_path) == ["alpha", "beta", "backup-site"]
    assert _complete("failover move --to b", 3, tmp_path) == ["beta", "backup-site"]
    assert _complete("failover plan --to a", 3, tmp_path) == ["alpha"]
    assert _complete("failover drill --to ", 3, tmp_path) == ["alpha", "beta", "backup-site"]
    assert _complete("failover deploy --provider be", 3, tmp_path) == ["beta"]
    assert _complete("failover status ", 2, tmp_path) == ["web", "api"]
    assert _complete("failover move a", 2, tmp_path) == ["api"]
    # Another config, named on the command line (before the command or after it).
    other = tmp_path / "other"
    other.mkdir()
    conf["providers"] = [{"name": "gamma", "type": "local"}]
    path = write_config(other, conf)
    assert _complete(f"failover -c {path} move --to ", 5, tmp_path) == ["gamma"]
    assert _complete(f"failover move -c {path} --to ", 5, tmp_path) == ["gamma"]
    # No config here: nothing offered, no error.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _complete("failover move --to ", 3, empty) == []


def test_the_ci_example_installs_failover_from_its_repository() -> None:
    from packaging.requirements import Requirement

    workflow = yaml.safe_load((ROOT / "examples/github-actions/drill.yml").read_text())
    (job,) = workflow["jobs"].values()
    installs = [s for s in job["steps"] if "pip install" in str(s.get("run", ""))]
    assert installs
    for step in installs:
        env = {**job.get("env", {}), **step.get("env", {})}
        line = str(step["run"])
        for name, value in env.items():
            line = line.replace("${" + name + "}", str(value))
        (spec,) = [w for w in shlex.split(line) if w.startswith("failover")]
        requirement = Requirement(spec)
        # A direct reference (git URL or wheel), never a name looked up on a package index.
        assert requirement.name == "failover" and requirement.extras == {"all"}
        assert requirement.url and requirement.url.startswith(("git+https://", "file://"))


def test_readme_documents_probe_networks_and_the_ssh_starter() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = readme[readme.index("## Commands") : readme.index("## Configuration")]
    assert "FAILOVER_PROBE_NETWORKS" in commands
    assert "--provider local\\|aws\\|gcp\\|azure\\|ssh" in commands
    assert "state migrate --to etcd\\|sqlite" in commands
