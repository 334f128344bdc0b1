"""Issue 11, part A: inputs that passed `validate` and then broke failover, a host that
nothing tracked, secrets escaped past redaction, and local hosts that did not behave like
cloud hosts. Everything here goes through the real `failover` command and real processes
on loopback."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import APP
from tests.helpers import FAILOVER
from tests.helpers import base_config
from tests.helpers import dns_values
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import host_records
from tests.helpers import live_hosts
from tests.helpers import state_dir
from tests.helpers import wait_for
from tests.helpers import write_config


def refused(data: dict[str, Any] | str, tmp: Path, *, command: str = "validate") -> str:
    """The one-line problems `command` prints for a config it refuses (exit 2)."""
    proc = failover(command, config=write_config(tmp, data))
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stderr


def host_dirs_running(state: Path) -> set[Path]:
    """The host folders that some live process works in, whatever any record says: a
    host nothing tracks still shows up here."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
            if (proc / "stat").read_text().rsplit(") ", 1)[1][:1] == "Z":
                continue
        except OSError:
            continue
        if cwd.is_relative_to(state):
            rel = cwd.relative_to(state).parts
            if len(rel) >= 4 and rel[0] == "local" and rel[2] == "hosts":
                found.add(state.joinpath(*rel[:4]))
    return found


# --------------------------------------------------------------------------- item 1


@pytest.mark.parametrize("command", ["deploy", "check"])
def test_a_crash_between_start_and_record_leaves_one_live_host(project: Path, command: str) -> None:
    config = write_config(project, base_config())
    state = state_dir(config)
    crashed = failover("deploy", config=config, env={"FAILOVER_FAILPOINT": "local:started"})
    assert crashed.returncode == 137, (crashed.stdout, crashed.stderr)
    # The host runs, and its record says so (state "creating", pid from its own shell).
    wait_for(lambda: len(host_dirs_running(state)) == 1, what="the half-made host to run")
    (half,) = host_records(config)
    assert half["state"] == "creating" and half["pid"] > 0
    # The next command finishes the run: exactly one host, the one DNS points at.
    again = failover(command, config=config)
    assert again.returncode == 0, (again.stdout, again.stderr)
    (live,) = live_hosts(config)
    assert host_dirs_running(state) == {state / "local" / live["provider"] / "hosts" / live["id"]}
    assert dns_values(config) == [live["address"]]
    assert failover("check", config=config).returncode == 0
    assert len(host_dirs_running(state)) == 1


# --------------------------------------------------------------------------- item 4


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({"A=B": "x"}, "services.web.run.env.A=B: "),
        ({"A\0B": "x"}, "services.web.run.env.A\\0B: "),
        ({"": "x"}, "services.web.run.env.: "),
        ({"GOOD": "a\0b"}, "services.web.run.env.GOOD: "),
    ],
)
def test_env_names_and_values_the_kernel_cannot_pass_are_refused(
    project: Path, env: dict[str, str], where: str
) -> None:
    err = refused(base_config(run={"command": APP, "env": env}), project)
    assert err.startswith(where), err
    assert not (project / ".failover").exists()


# --------------------------------------------------------------------------- item 5


@pytest.mark.parametrize(
    "canary",
    ["http//127.0.0.1/", "https://", "ftp://127.0.0.1/", "127.0.0.1", "127.0.0.1:99999", ":80"],
)
def test_a_malformed_canary_is_refused(project: Path, canary: str) -> None:
    err = refused(base_config(health={"canary": canary}), project)
    assert err.startswith("services.web.health.canary: "), err


def test_doctor_probes_every_canary(project: Path) -> None:
    with socket.socket() as listener, socket.socket() as closed:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: refuses connections
        up = f"127.0.0.1:{listener.getsockname()[1]}"
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/"
        data = base_config(health={"canary": up})
        data["services"]["api"] = {
            **data["services"]["web"],
            "domain": "api.example.test",
            "health": {**data["services"]["web"]["health"], "canary": down},
        }
        config = write_config(project, data)
        doc = failover_json("doctor", config=config)
        text = failover("doctor", config=config)
    canaries = {c["service"]: c for c in doc["canaries"]}
    assert canaries["web"]["ok"] and canaries["web"]["canary"] == up
    assert not canaries["api"]["ok"] and canaries["api"]["canary"] == down
    assert doc["ok"] is False
    assert any(w.startswith("api: canary ") for w in doc["warnings"])
    assert f"api: canary {down}" in text.stdout


# --------------------------------------------------------------------------- item 6


def test_a_zone_that_climbs_out_of_the_state_directory_is_refused(project: Path) -> None:
    data = base_config()
    data["dns"]["zone"] = "../../x"
    for command in ("validate", "deploy"):
        assert refused(data, project, command=command).startswith("dns.zone: ")
    assert not list(project.parent.rglob("x.json"))
    assert not (project / ".failover").exists()


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"dns": {"ttl": -5}}, "dns.ttl: "),
        ({"domain": "a" * 64 + ".example.test"}, "services.web.domain: "),
        ({"domain": ".".join(["abcdefghi"] * 25) + ".example.test"}, "services.web.domain: "),
        ({"domain": "www.elsewhere.test"}, "services.web.domain: "),
        ({"dns": {"zone": "a" * 64 + ".test"}}, "dns.zone: "),
    ],
)
def test_dns_names_and_ttls_are_checked(project: Path, change: dict[str, Any], where: str) -> None:
    data = base_config()
    if "dns" in change:
        data["dns"].update(change["dns"])
    else:
        data["services"]["web"].update(change)
    err = refused(data, project)
    assert err.startswith(where), err


def test_names_ending_in_a_newline_are_refused(project: Path) -> None:
    data = base_config()
    data["services"]["web\n"] = data["services"].pop("web")
    assert refused(data, project).startswith("services.web\\n: service names use ")
    data = base_config()
    data["providers"][0]["name"] = "alpha\n"
    data["services"]["web"]["policy"]["providers"] = ["beta"]
    assert refused(data, project).startswith("providers[0].name: ")


DUPLICATE_PORT = """\
version: 1
dns: {type: local, zone: example.test}
providers:
  - {name: alpha, type: local}
services:
  web:
    domain: www.example.test
    port: 8080
    run: {command: "{python} -m http.server {port} --bind {address}"}
    port: 8081
"""


def test_duplicate_keys_are_refused_with_their_place(project: Path) -> None:
    assert refused(DUPLICATE_PORT, project) == ("services.web: duplicate key 'port' (line 10)\n")
    second = DUPLICATE_PORT.replace("    port: 8081\n", "") + (
        "services:\n  api: {domain: api.example.test, port: 81, run: {command: x}}\n"
    )
    assert refused(second, project) == "(top level): duplicate key 'services' (line 10)\n"
    # A merge key is not a repeat: the mapping's own keys override the merged ones.
    merged = DUPLICATE_PORT.replace("    port: 8081\n", "").replace(
        "  web:\n", "  api:\n    <<: *base\n    port: 2\n  web:\n"
    )
    merged = "x: &base {port: 1, domain: a.example.test, run: {command: y}}\n" + merged
    assert "duplicate" not in failover("validate", config=write_config(project, merged)).stderr


@pytest.mark.parametrize("loader", ["SafeLoader", "CSafeLoader"])
def test_duplicate_keys_are_found_by_either_yaml_loader(loader: str) -> None:
    from failover.checks import DuplicateKey
    from failover.checks import NoDuplicateKeys
    from failover.checks import node_path

    base = getattr(yaml, loader, None)
    if base is None:
        pytest.skip(f"PyYAML was built without {loader}")
    checked = type("Checked", (NoDuplicateKeys, base), {})
    with pytest.raises(DuplicateKey) as caught:
        yaml.load(DUPLICATE_PORT, Loader=checked)  # a SafeLoader subclass
    assert (node_path(DUPLICATE_PORT, caught.value.node), caught.value.key) == (
        "services.web",
        "port",
    )
    assert caught.value.line == 10


# --------------------------------------------------------------------------- item 7


@pytest.mark.parametrize("field", ["command", "setup"])
def test_an_unknown_placeholder_is_named(project: Path, field: str) -> None:
    run: dict[str, Any] = {"command": APP}
    if field == "command":
        run["command"] = "{python} -m http.server {prot} --bind {address}"
    else:
        run["setup"] = ["echo ${HOME} {service} {Port}"]
    for command in ("validate", "deploy"):
        err = refused(base_config(run=run), project, command=command)
        assert err.startswith(f"services.web.run.{field}: unknown placeholder "), err
        assert ("{prot}" if field == "command" else "{Port}") in err
        assert "{port}, {address}, {host_id}, {service}, {generation}, {python}" in err
    assert not live_hosts(write_config(project, base_config()))


# --------------------------------------------------------------------------- item 8


SECRET = 'tök"en\\d-9'  # non-ASCII, a quote and a backslash: JSON escapes all three


def test_json_output_and_journal_hide_a_secret_json_would_escape(project: Path) -> None:
    data = base_config(health={"http": {"body": "${APP_TOKEN}"}}, policy={"ready_timeout": "2s"})
    data["providers"] = data["providers"][:1]
    config = write_config(project, data)
    env = {"APP_TOKEN": SECRET}
    out = failover("deploy", "--json", config=config, env=env)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "body does not match /***/" in json.loads(out.stdout)["message"]
    history = failover("history", "--json", config=config, env=env).stdout
    forms = {SECRET, json.dumps(SECRET)[1:-1], json.dumps(SECRET, ensure_ascii=False)[1:-1]}
    state = b"".join(p.read_bytes() for p in state_dir(config).glob("state.db*") if p.is_file())
    for form in forms:
        assert form not in out.stdout + out.stderr + history, form
        assert form.encode() not in state, form


def test_redact_doc_walks_keys_values_and_lists() -> None:
    from failover.redact import _SECRETS
    from failover.redact import redact_doc
    from failover.redact import register_secret

    register_secret(SECRET)
    try:
        doc = redact_doc({"a": [SECRET, {f"k{SECRET}": 1}], "n": 2, "s": f"x{SECRET}y"})
    finally:
        _SECRETS.discard(SECRET)
    assert doc == {"a": ["***", {"k***": 1}], "n": 2, "s": "x***y"}


# --------------------------------------------------------------------------- items 9, 10, 11


WATCHER_SECRETS = {
    "DATABASE_URL": "postgres://u:hunter22@db/x",
    "MYSQL_PWD": "hunter22",
    "DB_PASS": "hunter22",
    "SMTP_PASS": "hunter22",
    "GITHUB_PAT": "ghp_" + "x" * 36,
    "CI_JOB_JWT": "eyJ.x.y",
    "KUBECONFIG": "/root/.kube/config",
    "AZURE_CLIENT_CERTIFICATE_PATH": "/root/az.pem",
}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs}


def test_hosts_get_an_allow_list_of_the_watchers_environment(project: Path) -> None:
    data = base_config(run={"command": APP, "env": {"APP_MODE": "blue"}})
    config = write_config(project, data)
    env = {**WATCHER_SECRETS, "LC_ALL": "C.UTF-8", "TZ": "UTC", "SOME_SETTING": "x"}
    assert failover("deploy", config=config, env=env).returncode == 0
    (host,) = live_hosts(config)
    environ = _environ(int(host["pid"]))
    for name in (*WATCHER_SECRETS, "SOME_SETTING", "FAILOVER_PROBE_NETWORKS"):
        assert name not in environ, name
    assert environ["APP_MODE"] == "blue"
    assert environ["LC_ALL"] == "C.UTF-8" and environ["TZ"] == "UTC"
    assert environ["PATH"] == env_for(env)["PATH"]
    assert environ["FAILOVER_PROVIDER"] == "alpha"
    assert environ["FAILOVER_ADDRESS"] == host["address"]


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_state_directory_is_private_whatever_the_umask(project: Path, umask: int) -> None:
    config = write_config(project, base_config(run={"command": APP, "env": {"DB": "x"}}))
    proc = subprocess.run(
        [FAILOVER, "deploy", "-c", str(config)],
        env=env_for(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),  # only a umask: safe in the child
    )
    assert proc.returncode == 0, proc.stderr
    state = state_dir(config)
    (host,) = live_hosts(config)
    host_dir = state / "local" / host["provider"] / "hosts" / host["id"]
    for name in ("state.db", "run.sh", "user-data", "host.json", "log", "env.json"):
        path = state / name if name == "state.db" else host_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    checked = 0
    for path in [state, *state.rglob("*")]:
        if (host_dir / "root") in path.parents:
            continue  # the service's own files: its umask, its business
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        checked += 1
    assert checked > 10


def test_a_compound_command_runs_through_sh_c_as_on_a_cloud_host(project: Path) -> None:
    command = f"cd .. && test -f host.json && cd root && exec {APP}"
    data = base_config(run={"command": command})
    data["providers"] = data["providers"][:1]
    config = write_config(project, data)
    deployed = failover("deploy", config=config)
    assert deployed.returncode == 0, (deployed.stdout, deployed.stderr)
    assert failover("check", config=config).returncode == 0
    # The cloud unit runs the same command the same way.
    user_data = next(state_dir(config).glob("local/alpha/hosts/*/user-data")).read_text()
    assert "ExecStart=/bin/sh -c " in user_data


# --------------------------------------------------------------------------- item 12


def test_cloud_setup_and_restore_see_the_environment_the_readme_promises() -> None:
    from failover.config import parse
    from failover.render import host_spec

    data = base_config(
        run={"command": APP, "env": {"DB_URL": "x"}, "restore": ["restore-db"], "setup": ["a"]}
    )
    svc = parse(yaml.safe_dump(data)).services["web"]
    spec = host_spec("web", svc, generation=4, provider="beta")
    files = {f["path"]: f["content"] for f in yaml.safe_load(spec.user_data)["write_files"]}
    promised = {
        "DB_URL": "x",
        "FAILOVER_ADDRESS": "0.0.0.0",
        "FAILOVER_PORT": "8080",
        "FAILOVER_PROVIDER": "beta",
        "FAILOVER_SERVICE": "web",
        "FAILOVER_GENERATION": "4",
        "FAILOVER_HOST_ID": "web-g4-beta",
    }
    for unit in ("failover-web.service", "failover-web-prepare.service"):
        content = files[f"/etc/systemd/system/{unit}"]
        for key, value in promised.items():
            assert f'Environment="{key}={value}"' in content, (unit, key)


# --------------------------------------------------------------------------- item 16


def test_a_port_taken_on_every_address_is_named_and_leaves_no_folder(project: Path) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", 0))  # the wildcard is the point
        taken.listen()
        port = taken.getsockname()[1]
        data = base_config(port=port)
        config = write_config(project, data)
        proc = failover("deploy", config=config)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"port {port} is already in use" in out and f"0.0.0.0:{port}" in out, out
    assert "no free loopback address" not in out
    hosts = state_dir(config) / "local"
    assert not [p for p in hosts.glob("*/hosts/*") if p.is_dir()]
