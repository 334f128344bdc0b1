"""doctor's warnings: long TTLs, DNS with the same company as compute, the watcher's cloud."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import write_config


def test_ttl_longer_than_detection_is_warned(project: Path) -> None:
    data = base_config(health={"interval": "2s", "timeout": "1s", "fall": 3})
    data["dns"]["ttl"] = 300
    doc = failover_json("doctor", config=write_config(project, data))
    assert any("TTL (300s) is longer than the 6s" in w for w in doc["warnings"]), doc["warnings"]
    data["dns"]["ttl"] = 5
    doc = failover_json("doctor", config=write_config(project, data))
    assert not [w for w in doc["warnings"] if "TTL" in w]
    assert doc["ok"] is True


def test_watcher_on_the_cloud_it_watches_is_warned(project: Path) -> None:
    data = base_config()
    # An AWS provider whose API is a closed loopback port: doctor reports it, never hangs.
    data["providers"].append(
        {
            "name": "aws-main",
            "type": "aws",
            "region": "us-east-1",
            "image": "ami-12345678",
            "endpoint": "http://127.0.0.1:9",
            "retry_attempts": 1,
        }
    )
    config = write_config(project, data)
    # The DMI tables of an EC2 instance, read from a folder instead of /sys (no network).
    dmi = project / "dmi"
    dmi.mkdir()
    (dmi / "sys_vendor").write_text("Amazon EC2\n")
    env = {
        "FAILOVER_DMI_DIR": str(dmi),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    doc = failover_json("doctor", config=config, env=env)
    assert any(
        "runs on aws's infrastructure, like provider aws-main" in w for w in doc["warnings"]
    ), doc["warnings"]
    aws = next(p for p in doc["providers"] if p["name"] == "aws-main")
    assert aws["state"] in ("unknown", "blocked")
    (dmi / "sys_vendor").write_text("QEMU\n")
    doc = failover_json("doctor", config=config, env=env)
    assert not [w for w in doc["warnings"] if "infrastructure" in w]
    text = failover("doctor", config=config, env=env)
    assert text.returncode == 1 and "aws-main (aws)" in text.stdout
