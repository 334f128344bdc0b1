"""A third-party provider, registered through the `failover.providers` entry point group."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import write_config

PLUGIN = '''
from typing import Literal

from providers.local import LocalProvider, LocalSettings


class ShedSettings(LocalSettings):
    type: Literal["shed"]  # type: ignore[assignment]
    shelf: int = 1


class ShedProvider(LocalProvider):
    """A machine in the shed: the local provider under another name."""

    type = "shed"
    Settings = ShedSettings
'''


def install_plugin(root: Path) -> dict[str, str]:
    (root / "shedcloud.py").write_text(PLUGIN)
    info = root / "shedcloud-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shedcloud\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[failover.providers]\nshed = shedcloud:ShedProvider\n")
    return {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def test_entry_point_provider_validates_deploys_and_appears_in_schema(project: Path) -> None:
    plugin_dir = project / "plugins"
    plugin_dir.mkdir()
    env = install_plugin(plugin_dir)
    data = base_config()
    data["providers"].append({"name": "shed", "type": "shed", "shelf": 3})
    config = write_config(project, data)
    proc = failover("validate", config=config, env=env)
    assert proc.returncode == 0, proc.stderr
    deployed = failover("deploy", "--provider", "shed", config=config, env=env)
    assert deployed.returncode == 0, deployed.stderr
    status = failover_json("status", config=config, env=env)["services"][0]
    assert status["active"]["provider"] == "shed"
    assert {"name": "shed", "type": "shed", "state": "available"} in status["providers"]
    schema = json.loads(failover("schema", env=env).stdout)
    titles = [v.get("title") for v in schema["properties"]["providers"]["items"]["anyOf"]]
    assert "ShedSettings" in titles
    # The plugin's own fields get located errors too.
    data["providers"][-1]["shelf"] = "top"
    bad = failover("validate", config=write_config(project, data, "bad.yaml"), env=env)
    assert bad.returncode == 2
    assert bad.stderr.startswith("providers[2].shelf: ")
    # Without the plugin installed, the type is unknown, with the known ones listed.
    missing = failover("validate", config=config)
    assert missing.returncode == 2
    assert "providers[2].type: unknown type 'shed'" in missing.stderr
