"""The cloud-init template, rendered in the sandbox and parsed back."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from failover.render import TemplateError
from failover.render import render_user_data
from providers.base import HostSpec
from providers.base import RunSpec
from tests.helpers import base_config
from tests.helpers import write_config


def spec(**run: object) -> HostSpec:
    base: dict[str, object] = {
        "command": "{python} -m http.server {port} --bind {address}",
        "setup": ("apt-get install -y nginx",),
        "restore": ("aws s3 cp s3://backups/latest.tar.gz - | tar xz", "echo '100%' done"),
        "env": {"MODE": "prod 'quoted' %s"},
    }
    base.update(run)
    return HostSpec(name="web-g3-aws", service="web", generation=3, port=8080, run=RunSpec(**base))  # type: ignore[arg-type]


def test_renders_valid_cloud_config() -> None:
    text = render_user_data(spec())
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    script = files["/etc/failover/run.sh"]
    assert "apt-get install -y nginx" in script
    assert script.index("apt-get install") < script.index("aws s3 cp")
    unit = files["/etc/systemd/system/failover-web.service"]
    assert 'ExecStart=/bin/sh -c "python3 -m http.server 8080 --bind 0.0.0.0"' in unit
    assert "Environment=\"MODE=prod 'quoted' %%s\"" in unit
    assert "Requires=failover-web-prepare.service" in unit
    assert ["systemctl", "enable", "--now", "failover-web.service"] in doc["runcmd"]


def test_multiline_commands_stay_inside_the_script() -> None:
    text = render_user_data(spec(restore=("set -x\nrestore-db --from backup",)))
    files = {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}
    assert "restore-db --from backup" in files["/etc/failover/run.sh"]


def test_strict_undefined() -> None:
    with pytest.raises(TemplateError):
        render_user_data(spec(), template="cloud-init/../../tests/data/bad.j2")


def test_validate_renders_the_run_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `validate` must render exactly what a move boots, env loop included.
    from typer.testing import CliRunner

    import cli
    from failover import render

    rendered: list[str] = []
    real = render.render_user_data

    def spy(spec: HostSpec, template: str = render.DEFAULT_TEMPLATE) -> str:
        rendered.append(real(spec, template))
        return rendered[-1]

    monkeypatch.setattr(render, "render_user_data", spy)
    config = write_config(tmp_path, base_config(run={"env": {"GREETING": "hello 100%"}}))
    result = CliRunner().invoke(cli.app, ["validate", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert len(rendered) == 1
    units = {f["path"]: f["content"] for f in yaml.safe_load(rendered[0])["write_files"]}
    assert 'Environment="GREETING=hello 100%%"' in units["/etc/systemd/system/failover-web.service"]


def test_the_status_page_templates_are_found_where_the_package_looks() -> None:
    """Run against the installed wheel too (``make wheel-test``): the page templates must
    travel as package data, not only the cloud-init one."""
    import failover
    from failover.render import templates_dir
    from failover.statuspage import render_drill
    from failover.statuspage import render_page

    package = Path(failover.__file__).resolve().parent
    installed = not (package.parent / "templates").is_dir()
    assert templates_dir().is_relative_to(package) == installed
    page = render_page({"services": []}, [], "Example & Co")
    assert "<html" in page and "Example &amp; Co" in page
    drill = render_drill({"service": "web", "to": "beta", "status": "failed"}, None)
    assert "Drill of web on beta" in drill
