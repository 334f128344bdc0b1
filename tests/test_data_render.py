"""Cloud hosts take their own backups: the rendered cloud-init installs a systemd timer
running ``failover.data.agent``; the agent writes the same format into the stores the
host can reach (S3 here, moto's server), and the watcher copies from there."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover import config as cfg
from failover.data.backup import BackupReader
from failover.data.backup import Sealer
from failover.data.backup import list_backups
from failover.data.plane import plane
from failover.data.plane import replicate
from failover.engine import Engine
from failover.render import host_spec
from tests.conftest import need
from tests.doubles.moto_server import AWS_TEST_ENV
from tests.doubles.moto_server import moto_available
from tests.doubles.moto_server import shared_moto
from tests.doubles.moto_server import use_test_credentials
from tests.helpers import base_config
from tests.helpers import env_for
from tests.helpers import write_config

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_credentials(monkeypatch)


def config(
    tmp: Path, endpoint: str = "http://127.0.0.1:9", bucket: str = "acme-dr", **data: Any
) -> cfg.Config:
    conf = base_config(
        data={"backup": "sqlite3 data/app.db .dump", "restore": "sqlite3 data/app.db", **data},
        run={"command": "app --port {port}", "env": {"MODE": "prod"}},
    )
    (tmp / "offsite").mkdir(exist_ok=True)
    conf["stores"] = [
        {"name": "offsite", "type": "dir", "path": str(tmp / "offsite")},
        {
            "name": "s3-dr",
            "type": "s3",
            "bucket": bucket,
            "endpoint": endpoint,
            "retry_attempts": 1,
        },
        {
            "name": "azure-dr",
            "type": "azureblob",
            "account_url": "https://acme.blob.core.windows.net",
            "container": "drc",
            "connection_string": "AccountName=acme;AccountKey=not-for-hosts-0000",
        },
    ]
    return cfg.load(write_config(tmp, conf), tmp / ".failover")


def files(user_data: str) -> dict[str, str]:
    doc = yaml.safe_load(user_data)
    return {f["path"]: f["content"] for f in doc["write_files"]}


def test_the_cloud_init_installs_a_backup_timer(tmp_path: Path) -> None:
    conf = config(tmp_path, every="10m")
    spec = host_spec(
        "web", conf.services["web"], generation=3, provider="aws-main", stores=conf.stores
    )
    written = files(spec.user_data)
    timer = written["/etc/systemd/system/failover-web-backup.timer"]
    assert "OnUnitActiveSec=600s" in timer and "OnBootSec=600s" in timer
    unit = written["/etc/systemd/system/failover-web-backup.service"]
    assert "WorkingDirectory=/var/lib/failover/web" in unit
    assert 'Environment="MODE=prod"' in unit  # the service's own environment
    assert "python3 -m failover.data.agent /etc/failover/web-data.json" in unit
    settings = json.loads(written["/etc/failover/web-data.json"])
    assert settings["backup"] == "sqlite3 data/app.db .dump"
    # Only the stores a host can reach itself: not a folder of the watcher's, not a
    # store whose credential is the watcher's connection string.
    assert [s["name"] for s in settings["stores"]] == ["s3-dr"]
    assert "not-for-hosts" not in spec.user_data
    runcmd = yaml.safe_load(spec.user_data)["runcmd"]
    assert ["systemctl", "enable", "--now", "failover-web-backup.timer"] in runcmd


def test_no_timer_without_data_or_with_an_encryption_key(tmp_path: Path) -> None:
    conf = config(tmp_path, encryption_key="k" * 24)
    spec = host_spec(
        "web", conf.services["web"], generation=1, provider="aws-main", stores=conf.stores
    )
    assert "failover-web-backup" not in spec.user_data
    assert "k" * 24 not in spec.user_data
    plain = base_config()
    loaded = cfg.load(write_config(tmp_path, plain, "plain.yaml"), tmp_path / ".failover")
    spec = host_spec("web", loaded.services["web"], generation=1, provider="aws-main")
    assert "failover-web-backup" not in spec.user_data


def test_the_agent_backs_up_into_s3_and_the_watcher_copies_it(tmp_path: Path) -> None:
    need(moto_available(), "moto[server] is not installed")
    import boto3

    server = shared_moto()
    bucket = f"dr-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    conf = config(tmp_path, endpoint=server.url, bucket=bucket, backup="printf 'rows 1 2 3'")
    spec = host_spec(
        "web", conf.services["web"], generation=1, provider="aws-main", stores=conf.stores
    )
    settings = tmp_path / "web-data.json"
    settings.write_text(files(spec.user_data)["/etc/failover/web-data.json"])
    agent = [sys.executable, "-m", "failover.data.agent", str(settings)]
    env = env_for({k: v for k, v in AWS_TEST_ENV.items() if v})
    proc = subprocess.run(agent, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

    conf.stores = [s for s in conf.stores if s.name != "azure-dr"]
    conf.services["web"].data.stores = ["offsite", "s3-dr"]  # type: ignore[union-attr]
    engine = Engine(conf)
    try:
        s3 = plane(engine).store("s3-dr")
        (taken,) = list_backups(s3, "web")
        assert taken.length == len("rows 1 2 3")
        results, newest = replicate(engine, "web")
        assert results == {"offsite": "ok", "s3-dr": "ok"} and newest is not None
        offsite = plane(engine).store("offsite")
        (copied,) = list_backups(offsite, "web")
        reader = BackupReader(offsite, copied, Sealer(None))
        assert reader.read() == b"rows 1 2 3" and reader.read() == b""
    finally:
        engine.close()

    # A backup command that fails leaves no complete backup behind.
    doc = json.loads(settings.read_text())
    doc["backup"] = "printf partial; exit 4"
    settings.write_text(json.dumps(doc))
    proc = subprocess.run(agent, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4 and "exited 4" in proc.stderr
    assert len(list_backups(s3, "web")) == 1


def test_a_cloud_host_restores_itself_at_boot(tmp_path: Path) -> None:
    need(moto_available(), "moto[server] is not installed")
    import boto3

    server = shared_moto()
    bucket = f"dr-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    conf = config(tmp_path, endpoint=server.url, bucket=bucket, backup="printf 'the rows'")
    conf.services["web"].data.restore = "cat > restored.txt"  # type: ignore[union-attr]
    spec = host_spec(
        "web", conf.services["web"], generation=1, provider="aws-main", stores=conf.stores
    )
    assert (
        "python3 -m failover.data.agent --restore /etc/failover/web-data.json"
        in (files(spec.user_data)["/etc/failover/run.sh"])
    )
    settings = tmp_path / "web-data.json"
    settings.write_text(files(spec.user_data)["/etc/failover/web-data.json"])
    agent = [sys.executable, "-m", "failover.data.agent"]
    env = env_for({k: v for k, v in AWS_TEST_ENV.items() if v})

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*agent, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    first = call("--restore", str(settings))  # nothing yet: starts empty, exit 0
    assert first.returncode == 0 and "no backup of web yet" in first.stderr
    assert call(str(settings)).returncode == 0
    restored = call("--restore", str(settings))
    assert restored.returncode == 0, restored.stderr
    assert (tmp_path / "restored.txt").read_text() == "the rows"


def test_the_restore_step_on_a_host_that_runs_no_commands(tmp_path: Path) -> None:
    """aws/gcp/azure hosts cannot run the watcher's commands: the step relies on the
    host's own restore at boot, or refuses the candidate when the host cannot reach any
    store (or the backups are encrypted)."""
    from failover.data.backup import BackupWriter
    from failover.data.recover import restore

    conf = config(tmp_path)
    conf.providers.append(
        {"name": "aws-main", "type": "aws", "region": "us-east-1", "image": "ami-1"}
    )
    path = write_config(tmp_path, conf.model_dump(mode="json", exclude={"path", "state_dir"}))
    loaded = cfg.load(path, tmp_path / ".failover")
    engine = Engine(loaded)
    try:
        writer = BackupWriter("web", [plane(engine).store("offsite")], Sealer(None))
        writer.write(b"rows")
        writer.finish()
        loaded.services["web"].data.stores = ["offsite", "s3-dr"]  # type: ignore[union-attr]
        detail, record = restore(engine, "web", "aws-main", "i-0123")
        assert detail.startswith("restored at boot by the host itself") and record == {}
        loaded.services["web"].data.stores = ["offsite"]  # type: ignore[union-attr]
        from providers.base import Unsupported

        with pytest.raises(Unsupported, match="no store it can reach itself"):
            restore(engine, "web", "aws-main", "i-0123")
    finally:
        engine.close()
