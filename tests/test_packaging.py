"""What ops teams deploy: systemd units, the CI drill workflow, the container image."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from cli import app
from tests.conftest import need_binary
from tests.helpers import ROOT
from tests.helpers import failover

UNITS = ("failover-watch.service", "failover-check.service", "failover-check.timer")


def _sections(text: str) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[section].setdefault(key, []).append(value)
    return out


def test_systemd_writes_units_that_systemd_analyze_accepts(tmp_path: Path) -> None:
    analyze = need_binary("systemd-analyze")
    proc = failover("systemd", "--write", str(tmp_path), "--metrics-port", "9108", check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(UNITS), proc.stdout
    watch = _sections((tmp_path / "failover-watch.service").read_text())
    service = watch["Service"]
    assert service["Restart"] == ["always"] and service["User"] == ["failover"]
    assert service["StateDirectory"] == ["failover"]
    assert service["NoNewPrivileges"] == ["yes"] and service["ProtectSystem"] == ["strict"]
    exe, *args = shlex.split(service["ExecStart"][0])
    assert Path(exe).is_absolute() and Path(exe).exists()
    assert args[:3] == ["watch", "--config", "/etc/failover/failover.yaml"]
    assert "--metrics-port" in args
    timer = _sections((tmp_path / "failover-check.timer").read_text())
    assert timer["Timer"]["Unit"] == ["failover-check.service"]
    check = _sections((tmp_path / "failover-check.service").read_text())
    assert check["Service"]["Type"] == ["oneshot"]
    assert shlex.split(check["Service"]["ExecStart"][0])[1] == "check"
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / u) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Lines about the host's own units (a container's missing /sbin/init) are not ours.
    ours = [line for line in result.stderr.splitlines() if "failover-" in line]
    assert result.returncode == 0 and not ours, result.stderr


def test_systemd_prints_every_unit_without_write() -> None:
    out = failover("systemd", "--user", "svc-failover", "--every", "30s", check=True).stdout
    for unit in UNITS:
        assert f"# {unit}" in out
    assert "User=svc-failover" in out and "OnUnitActiveSec=30s" in out


def _commands() -> dict[str, Any]:
    group: Any = typer.main.get_command(app)
    return dict(group.commands)


def test_github_actions_drill_calls_commands_that_exist() -> None:
    workflow = yaml.safe_load((ROOT / "examples/github-actions/drill.yml").read_text())
    # PyYAML reads the bare key `on` as True (YAML 1.1).
    triggers = workflow.get("on", workflow.get(True))
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    (job,) = workflow["jobs"].values()
    commands = _commands()
    calls = []
    for step in job["steps"]:
        for line in str(step.get("run", "")).splitlines():
            words = shlex.split(line)
            if words and words[0] == "failover":
                calls.append(words)
                assert words[1] in commands, f"`failover {words[1]}` does not exist"
                known = {o for p in commands[words[1]].params for o in p.opts}
                for word in words[2:]:
                    if word.startswith("--"):
                        assert word in known, f"`failover {words[1]}` has no {word}"
    drill = next(c for c in calls if c[1] == "drill")
    report = drill[drill.index("--junit") + 1]
    published = [s for s in job["steps"] if "junit" in str(s.get("uses", ""))]
    assert published and published[0]["with"]["report_paths"] == report
    assert published[0].get("if") == "always()"


def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_dockerfile_lint() -> None:
    """hadolint when it is installed (Debian 12 has no package); else these rules, the
    ones of hadolint that matter here, checked by hand."""
    hadolint = shutil.which("hadolint")
    if hadolint:
        proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = _dockerfile()
    froms = [rest for ins, rest in lines if ins == "FROM"]
    assert len(froms) >= 2 and " AS " in froms[0].upper(), "multi-stage"
    for image in froms:
        name = image.split()[0]
        assert ":" in name and not name.endswith(":latest"), f"pin the base image: {name}"
    last_from = max(i for i, (ins, _) in enumerate(lines) if ins == "FROM")
    users = [rest for ins, rest in lines[last_from:] if ins == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as non-root"
    assert any(ins == "COPY" and "--from=" in rest for ins, rest in lines)
    runs = " ".join(rest for ins, rest in lines if ins == "RUN")
    assert '"failover[all]"' in runs or "'failover[all]'" in runs
    assert "--no-cache-dir" in runs  # DL3042
    for ins, rest in lines:
        if ins in ("ENTRYPOINT", "CMD"):
            assert rest.startswith("["), f"{ins} in exec form (signals reach failover)"
        if ins == "COPY" and "--from=" not in rest:
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
    entry = next(rest for ins, rest in lines if ins == "ENTRYPOINT")
    cmd = yaml.safe_load(next(rest for ins, rest in lines if ins == "CMD"))
    assert yaml.safe_load(entry) == ["failover"] and cmd[0] in _commands()


def test_dockerfile_builds_where_a_builder_exists() -> None:
    docker = shutil.which("docker")
    usable = docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0
    if not usable:
        pytest.skip("no container builder here (docker daemon); the Dockerfile is linted instead")
    assert docker is not None
    proc = subprocess.run(
        [docker, "build", "-q", "-t", "failover-test", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = subprocess.run(
        [docker, "run", "--rm", "failover-test", "--version"], capture_output=True, text=True
    )
    assert run.stdout.startswith("failover "), run.stderr
    user = subprocess.run(
        [docker, "run", "--rm", "--entrypoint", "id", "failover-test", "-u"],
        capture_output=True,
        text=True,
    )
    assert user.stdout.strip() != "0"


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*/failover.yaml")))
def test_each_example_validates_as_its_comment_says(example: Path, tmp_path: Path) -> None:
    """An example's opening comment names every `${VAR}` it needs (it said "the four
    keys below" of five), and with those set `failover validate -c` it accepts it."""
    text = example.read_text()
    head = "".join(line for line in text.splitlines() if line.startswith("#"))
    needed = set(re.findall(r"\$\{(\w+)\}", text))
    assert needed, example
    assert not [name for name in needed if name not in head], head
    env = {name: "c2VjcmV0LXZhbHVlLWZvci10ZXN0cy0wMTIzNDU2Nzg5" for name in needed}
    proc = failover("validate", "-c", str(example), "--state-dir", str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
