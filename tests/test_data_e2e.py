"""Data follows the service, end to end: the demo app keeps a counter in a real SQLite
database on a local host; backups go to a directory store and to S3 (moto's server);
the provider is cut off and the new host serves exactly what the backup held."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover import config as cfg
from failover.data.backup import list_backups
from failover.data.backup import stored_key
from failover.data.plane import plane
from failover.data.plane import take_backup
from failover.engine import Engine
from tests.conftest import need
from tests.doubles.moto_server import moto_available
from tests.doubles.moto_server import shared_moto
from tests.doubles.moto_server import use_test_credentials
from tests.helpers import APP
from tests.helpers import FAILOVER
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import env_for
from tests.helpers import wait_for
from tests.helpers import write_config

pytestmark = pytest.mark.timeout(180)

BACKUP = "{python} -m failover.demo_app dump data/app.db"
RESTORE = "{python} -m failover.demo_app load data/app.db"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_credentials(monkeypatch)


@pytest.fixture
def bucket() -> tuple[str, str]:
    need(moto_available(), "moto[server] is not installed")
    import boto3

    server = shared_moto()
    name = f"dr-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(Bucket=name)
    return server.url, name


def data_config(tmp: Path, bucket: tuple[str, str] | None, **data: Any) -> dict[str, Any]:
    conf = base_config(
        run={"command": APP + " --db data/app.db"},
        data={"backup": BACKUP, "restore": RESTORE, "every": "1h", **data},
    )
    (tmp / "offsite").mkdir(exist_ok=True)
    conf["stores"] = [{"name": "offsite", "type": "dir", "path": str(tmp / "offsite")}]
    if bucket is not None:
        conf["stores"].append(
            {"name": "s3-dr", "type": "s3", "bucket": bucket[1], "endpoint": bucket[0]}
        )
    return conf


@pytest.fixture
def world(project: Path) -> Iterator[Any]:
    engines: list[Engine] = []

    def make(conf: dict[str, Any]) -> Engine:
        path = write_config(project, conf)
        engine = Engine(cfg.load(path, project / ".failover"))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
    for config in project.glob("*.yaml"):
        cleanup(config)


def address(engine: Engine) -> str:
    active = engine.store.service("web").active
    assert active is not None
    return f"http://{active['address']}:8080/"


def visit(engine: Engine, times: int = 1) -> int:
    for _ in range(times):
        with urllib.request.urlopen(urllib.request.Request(address(engine), data=b""), timeout=5):
            pass
    return visits(engine)


def visits(engine: Engine) -> int:
    with urllib.request.urlopen(address(engine), timeout=5) as answer:
        found = re.search(r"visits: (\d+)", answer.read().decode())
    assert found
    return int(found.group(1))


def host_db(engine: Engine) -> Path:
    active = engine.store.service("web").active
    assert active is not None
    root = engine.config.state_dir
    assert root is not None
    return root / "local" / active["provider"] / "hosts" / active["host_id"] / "root/data/app.db"


def rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, at FROM visits ORDER BY id").fetchall()


def cut_off(engine: Engine, provider: str, service: str = "web") -> None:
    """The provider suspends the account and the host dies (kill + suspend)."""
    active = engine.store.service(service).active
    assert active is not None and active["provider"] == provider
    root = engine.config.state_dir / "local" / provider  # type: ignore[operator]
    (root / "SUSPENDED").write_text("closed\n")
    meta = json.loads((root / "hosts" / active["host_id"] / "host.json").read_text())
    os.killpg(int(meta["pid"]), signal.SIGKILL)


def fail_over(engine: Engine) -> Any:
    for _ in range(40):
        (verdict,) = engine.check(["web"])
        if verdict.action == "failover":
            return verdict
        time.sleep(0.2)
    raise AssertionError(f"no failover: {verdict.message}")


def step(engine: Engine, kind: str, name: str = "restore") -> str:
    event = next(e for e in engine.store.events("web", limit=5) if e["kind"] == kind)
    detail: str = next(s["detail"] for s in event["steps"] if s["name"] == name)
    return detail


def test_data_survives_the_loss_of_its_provider(world: Any, project: Path, bucket: Any) -> None:
    conf = data_config(project, bucket)
    engine = world(conf)
    outcome = engine.run("web", "deploy", reason="test", to="alpha")
    assert outcome.ok, outcome.message
    assert "no backup yet" in step(engine, "deploy")
    assert visit(engine, 3) == 3
    taken = take_backup(engine, "web")
    assert taken["stores"] == {"offsite": "ok", "s3-dr": "ok"}
    held = rows(host_db(engine))
    assert len(held) == 3
    assert visit(engine, 2) == 5  # written after the backup: lost with alpha

    cut_off(engine, "alpha")
    verdict = fail_over(engine)
    assert "beta" in verdict.message
    assert rows(host_db(engine)) == held  # exactly what the backup held
    assert visits(engine) == 3
    detail = step(engine, "failover")
    assert f"restored backup {taken['id']} from store offsite" in detail
    assert "sha256 verified" in detail

    # Write on beta, back up, lose the first store, write again; move back: the move's
    # final backup from beta goes to the store left, and nothing written is lost.
    assert visit(engine) == 4
    take_backup(engine, "web")
    shutil.rmtree(project / "offsite")
    assert visit(engine) == 5
    (engine.config.state_dir / "local/alpha/SUSPENDED").unlink()  # type: ignore[operator]
    engine = world(conf)  # a later command: alpha answers again
    moved = engine.run("web", "move", reason="test", to="alpha")
    assert moved.ok, moved.message
    assert visits(engine) == 5
    final = re.search(r"final backup (\S+) taken from the old host", step(engine, "move"))
    assert final, step(engine, "move")
    assert f"restored backup {final.group(1)} from store s3-dr" in step(engine, "move")


def test_a_flipped_byte_is_refused_and_the_previous_backup_restored(
    world: Any, project: Path
) -> None:
    engine = world(data_config(project, None))
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    visit(engine)
    first = take_backup(engine, "web")
    visit(engine)
    second = take_backup(engine, "web")
    store = plane(engine).store("offsite")
    (newest, _older) = list_backups(store, "web")
    assert newest.id == second["id"]
    key = stored_key(newest, 0)
    damaged = bytearray(store.get(key))
    damaged[len(damaged) // 2] ^= 0x20
    store.put(key, bytes(damaged))

    outcome = engine.drill("web", "beta")
    assert outcome.ok, outcome.message
    detail = step(engine, "drill")
    assert f"restored backup {first['id']}" in detail
    assert f"refused first: backup {second['id']} in store offsite: chunk 0" in detail
    # The drill document reports the recovery point and the restore time.
    from failover.output import drill_doc
    from failover.output import junit_xml

    doc = drill_doc(outcome)
    assert doc["restore"]["backup"] == first["id"] and doc["restore"]["age_s"] >= 0
    assert doc["restore"]["restore_s"] >= 0
    assert 'name="restore.age_s"' in junit_xml(doc)


def test_a_wrong_key_is_a_clear_error_naming_store_and_backup(world: Any, project: Path) -> None:
    engine = world(data_config(project, None, encryption_key="the-right-key-0123456789"))
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    visit(engine)
    taken = take_backup(engine, "web")
    stored = (project / "offsite").rglob("*")
    assert all(
        b"INSERT" not in p.read_bytes() for p in stored if p.is_file()
    )  # sealed before it left

    other = world(data_config(project, None, encryption_key="another-key-9876543210"))
    outcome = other.drill("web", "beta")
    assert not outcome.ok
    message = step(other, "drill")
    assert f"backup {taken['id']} in store offsite was encrypted with a different" in message
    assert "the-right-key" not in message and "another-key" not in message


def test_an_upload_killed_halfway_is_never_restored(world: Any, project: Path) -> None:
    # The second backup writes 9 MB (many chunks' worth) and then hangs: the watcher is
    # killed with chunks stored and no manifest.
    conf = data_config(project, None)
    engine = world(conf)
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    visit(engine)
    good = take_backup(engine, "web")
    conf["services"]["web"]["data"]["backup"] = (
        "head -c 9000000 /dev/urandom; sleep 60"  # many chunks, then hangs
    )
    path = write_config(project, conf, "killed.yaml")
    proc = subprocess.Popen(
        [FAILOVER, "backup", "-c", str(path), "--state-dir", str(project / ".failover")],
        env=env_for(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: len(list((project / "offsite/_dedup/web/chunks").glob("*"))) >= 3,
            timeout=30,
            what="the upload to start",
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Its chunks and its marker are left (collected once the marker expires); no manifest.
    assert [p.name for p in (project / "offsite/web").iterdir()] == [good["id"]]
    assert list((project / "offsite/_dedup/web/writing").iterdir())
    outcome = engine.drill("web", "beta")
    assert outcome.ok, outcome.message
    assert f"restored backup {good['id']}" in step(engine, "drill")


def test_cli_backup_and_backups(project: Path) -> None:
    conf = data_config(project, None)
    conf["services"]["web"]["data"]["encryption_key"] = "${FAILOVER_DATA_KEY}"
    path = write_config(project, conf)
    env = env_for({"FAILOVER_DATA_KEY": "key-from-the-environment-42"})
    run = lambda *a: subprocess.run(  # noqa: E731
        [FAILOVER, *a, "-c", str(path)], env=env, capture_output=True, text=True, timeout=120
    )
    try:
        assert run("deploy").returncode == 0
        proc = run("backup", "--json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert set(doc) == {
            "service",
            "id",
            "taken_at",
            "bytes",
            "sha256",
            "stores",
            "new_bytes",
            "chunks",
        }
        assert doc["stores"] == {"offsite": "ok"} and doc["bytes"] > 0
        listed = json.loads(run("backups", "--json").stdout)
        assert [b["id"] for b in listed["backups"]] == [doc["id"]]
        assert listed["backups"][0]["stores"] == ["offsite"]
        # Issue 26's figures: what the backup added, its chunks, what the store holds.
        assert doc["new_bytes"] > 0 and doc["chunks"] >= 1
        assert {k: listed["backups"][0][k] for k in ("new_bytes", "chunks")} == {
            "new_bytes": doc["new_bytes"],
            "chunks": doc["chunks"],
        }
        status = json.loads(run("status", "--json").stdout)["services"][0]
        assert status["data"]["last_backup"]["id"] == doc["id"]
        assert status["data"]["stores"]["offsite"]["ok"] is True
        assert status["data"]["stores"]["offsite"]["bytes"] >= doc["new_bytes"]
        text = run("backups").stdout
        assert doc["id"] in text and "key-from-the-environment" not in text
        assert f"data: last backup {doc['id']}" in run("status").stdout
        assert "stores: offsite ok" in run("status").stdout
    finally:
        cleanup(path)


def test_config_errors_name_their_path(project: Path) -> None:
    conf = data_config(project, None, stores=["nowhere"], every="soon")
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.parse(yaml.safe_dump(conf))
    text = "\n".join(caught.value.problems)
    assert "services.web.data.every:" in text
    conf = data_config(project, None, stores=["nowhere"])
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.parse(yaml.safe_dump(conf))
    assert "services.web.data.stores[0]: no store named 'nowhere' in `stores`" in (
        caught.value.problems
    )
    conf = data_config(project, None)
    conf["stores"].append({"name": "x", "type": "s3"})
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.parse(yaml.safe_dump(conf))
    assert any(p.startswith("stores[1]") and "bucket" in p for p in caught.value.problems)


def test_the_demo_shows_the_data_following_the_service(project: Path) -> None:
    from failover.demo import run_demo

    lines: list[str] = []
    doc = run_demo(lines.append, keep=project / "demo")
    assert doc["to"] == "beta"
    assert doc["data"]["visits_before"] == 3 and doc["data"]["visits_after"] == 3
    assert any(f"restored backup {doc['data']['backup']} from store offsite" in x for x in lines)


def test_a_warm_standby_takes_the_newest_backup_at_failover(world: Any, project: Path) -> None:
    """The standby was restored when it was made; the failover onto it restores the
    backup taken since, so it serves what the service held at the last backup."""
    conf = data_config(project, None)
    conf["services"]["web"]["health"]["fall"] = 1
    conf["services"]["web"]["policy"]["standby"] = "warm"
    engine = world(conf)
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    assert visit(engine, 3) == 3
    first = take_backup(engine, "web")
    (verdict,) = engine.check(["web"])  # makes the standby on beta, from the first backup
    made = next(e for e in engine.store.events("web", limit=5) if e["kind"] == "standby")
    assert made["status"] == "succeeded", verdict.message
    assert f"restored backup {first['id']}" in step(engine, "standby")
    assert visit(engine, 2) == 5
    second = take_backup(engine, "web")

    cut_off(engine, "alpha")
    verdict = fail_over(engine)
    assert "beta" in verdict.message
    assert visits(engine) == 5  # the newest backup, not the one the standby was made from
    detail = step(engine, "failover")
    assert f"restored backup {second['id']} from store offsite" in detail
    provision = step(engine, "failover", "provision")
    assert "warm standby" in provision
