"""`check`/`watch` take a backup every `data.every` and copy every complete backup to
every store; `check` turns WARNING when the data is at risk; status, doctor, metrics."""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover import config as cfg
from failover.data.backup import BackupReader
from failover.data.backup import Sealer
from failover.data.backup import list_backups
from failover.data.plane import FAILING_ROUNDS
from failover.data.plane import plane
from failover.data.plane import problems
from failover.engine import OK
from failover.engine import WARNING
from failover.engine import Engine
from failover.engine.views import warnings
from tests.doubles.moto_server import free_port
from tests.helpers import APP
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import write_config
from tests.test_data_e2e import BACKUP
from tests.test_data_e2e import RESTORE

pytestmark = pytest.mark.timeout(120)


def two_stores(tmp: Path, **data: Any) -> dict[str, Any]:
    conf = base_config(
        run={"command": APP + " --db data/app.db"},
        data={"backup": BACKUP, "restore": RESTORE, "every": "1h", **data},
    )
    for name in ("offsite", "second"):
        (tmp / name).mkdir(exist_ok=True)
    conf["stores"] = [
        {"name": "offsite", "type": "dir", "path": str(tmp / "offsite")},
        {"name": "second", "type": "dir", "path": str(tmp / "second"), "retry_attempts": 1},
    ]
    return conf


@pytest.fixture
def engine(project: Path) -> Iterator[Engine]:
    path = write_config(project, two_stores(project))
    made = Engine(cfg.load(path, project / ".failover"))
    assert made.run("web", "deploy", reason="test", to="alpha").ok
    yield made
    made.close()
    cleanup(path)


def later(engine: Engine, seconds: float) -> None:
    """As if ``seconds`` had passed since the data plane last acted (no sleeping)."""
    doc = engine.store.data_state("web") or {}
    for key in ("last_sync", "last_attempt"):
        if doc.get(key):
            doc[key] -= seconds
    if doc.get("last_backup"):
        doc["last_backup"]["taken"] -= seconds
    engine.store.set_data_state("web", doc)


def ids(engine: Engine, store: str) -> list[str]:
    return [m.id for m in list_backups(plane(engine).store(store), "web")]


def test_check_backs_up_when_due_and_replicates(engine: Engine, project: Path) -> None:
    (verdict,) = engine.check(["web"])
    assert verdict.exit_code == OK, verdict.message
    first = ids(engine, "offsite")
    assert len(first) == 1 and ids(engine, "second") == first
    (verdict,) = engine.check(["web"])  # not due again within `every`
    assert ids(engine, "offsite") == first
    # A store that lost its copy gets it back by the next sync, checksum verified.
    shutil.rmtree(project / "second")
    (project / "second").mkdir()
    engine.check(["web"])
    assert ids(engine, "second") == []  # a round between syncs asks no store
    doc = engine.store.data_state("web") or {}
    doc["last_sync"] -= 3600
    engine.store.set_data_state("web", doc)
    engine.check(["web"])
    assert ids(engine, "second") == first and ids(engine, "offsite") == first
    later(engine, 3600)
    engine.check(["web"])  # `every` passed: a new backup, copied to both
    assert len(ids(engine, "offsite")) == 2 and ids(engine, "second") == ids(engine, "offsite")
    first = ids(engine, "offsite")[:1]
    doc = engine.status(["web"], refresh=False)[0]["data"]
    assert doc["last_backup"]["id"] == first[0]
    held = doc["stores"]["offsite"]["bytes"]  # both backups' chunks, once (issue 26)
    assert held > 0
    assert doc["stores"] == {
        "offsite": {"ok": True, "newest": first[0], "bytes": held},
        "second": {"ok": True, "newest": first[0], "bytes": held},
    }


def test_a_store_that_keeps_failing_makes_check_warning(engine: Engine, project: Path) -> None:
    engine.check(["web"])
    shutil.rmtree(project / "second")
    (project / "second").write_text("not a folder any more")
    for _ in range(FAILING_ROUNDS - 1):
        later(engine, 3600)
        (verdict,) = engine.check(["web"])
        assert verdict.exit_code == OK, verdict.message
    later(engine, 3600)
    (verdict,) = engine.check(["web"])
    assert verdict.exit_code == WARNING
    assert f"store second failed {FAILING_ROUNDS} rounds" in verdict.message
    status = engine.status(["web"], refresh=False)[0]["data"]
    assert status["stores"]["second"]["ok"] is False
    assert status["stores"]["offsite"]["ok"] is True


def test_an_old_backup_makes_check_warning(engine: Engine) -> None:
    engine.check(["web"])
    doc = engine.store.data_state("web")
    assert doc is not None
    doc["last_backup"]["taken"] -= 4 * 3600  # as if the last one was taken 4h ago
    engine.store.set_data_state("web", doc)
    (verdict,) = engine.check(["web"], dry_run=True)  # judged from the state only
    assert verdict.exit_code == WARNING
    assert "newest backup" in verdict.message and "max_age 10800s" in verdict.message
    assert problems(engine, "web")


def test_a_failed_backup_command_leaves_no_backup(project: Path) -> None:
    conf = two_stores(project)
    conf["services"]["web"]["data"]["backup"] = "echo partial; exit 3"
    path = write_config(project, conf)
    engine = Engine(cfg.load(path, project / ".failover"))
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").ok
        (verdict,) = engine.check(["web"])
        assert verdict.exit_code == WARNING and "no backup yet" in verdict.message
        files = [p for p in (project / "offsite").rglob("*") if p.is_file()]
        assert ids(engine, "offsite") == [] and files == []
        state = engine.store.data_state("web") or {}
        assert "exited with status 3" in state["last_error"]
    finally:
        engine.close()
        cleanup(path)


def test_doctor_warns_when_every_store_is_at_one_company(project: Path) -> None:
    conf = two_stores(project)
    conf["stores"] = [
        {"name": "s3-a", "type": "s3", "bucket": "acme-a"},
        {"name": "s3-b", "type": "s3", "bucket": "acme-b", "region": "eu-west-1"},
    ]
    engine = Engine(cfg.load(write_config(project, conf), project / ".failover"))
    try:
        found = [w for w in warnings(engine) if "every store" in w]
        assert found == [
            "web: every store (s3-a, s3-b) is at aws: if that account is closed the backups "
            "go with it; add a store at another company"
        ]
        conf["stores"].append({"name": "own", "type": "dir", "path": str(project)})
        engine2 = Engine(cfg.load(write_config(project, conf), project / ".failover"))
        assert not [w for w in warnings(engine2) if "every store" in w]
        engine2.close()
    finally:
        engine.close()


def test_metrics_show_backup_age_bytes_and_store_failures(engine: Engine) -> None:
    from failover.watch import Metrics

    engine.check(["web"])
    metrics = Metrics(free_port(), "127.0.0.1")
    try:
        metrics.data("web", engine.store.data_state("web"))
        port = metrics.server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    finally:
        metrics.close()
    assert 'failover_backup_age_seconds{service="web"}' in text
    assert 'failover_backup_bytes{service="web"}' in text
    assert 'failover_store_failures{service="web",store="second"} 0.0' in text


def test_the_backup_runs_in_the_hosts_folder_and_environment(project: Path) -> None:
    conf = two_stores(project)
    conf["services"]["web"]["run"]["env"] = {"GREETING": "hello"}
    conf["services"]["web"]["data"]["backup"] = 'printf "%s %s" "$GREETING" "$(pwd)"'
    path = write_config(project, conf)
    engine = Engine(cfg.load(path, project / ".failover"))
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").ok
        from failover.data.plane import take_backup

        take_backup(engine, "web")
        store = plane(engine).store("offsite")
        (manifest,) = list_backups(store, "web")
        data = BackupReader(store, manifest, Sealer(None)).read()
        active = engine.store.service("web").active
        assert active is not None
        assert data.decode().startswith("hello ") and data.decode().endswith(
            f"/hosts/{active['host_id']}/root"
        )
    finally:
        engine.close()
        cleanup(path)


def test_backups_list_newest_first_and_keep_holds(project: Path) -> None:
    from failover.data.plane import catalog
    from failover.data.plane import take_backup

    path = write_config(project, two_stores(project, keep=2))
    engine = Engine(cfg.load(path, project / ".failover"))
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").ok
        made = [take_backup(engine, "web")["id"] for _ in range(3)]
        assert ids(engine, "offsite") == [made[2], made[1]]
        assert ids(engine, "second") == [made[2], made[1]]
        rows = catalog(engine, "web")
        assert [r["id"] for r in rows] == [made[2], made[1]]
        assert rows[0]["stores"] == ["offsite", "second"]
    finally:
        engine.close()
        cleanup(path)


def test_watch_goes_on_probing_while_a_long_backup_streams(project: Path) -> None:
    from failover.watch import Watcher

    gate = project / "go"
    conf = two_stores(project)
    # The backup blocks until the test opens the gate: if it ran inside the round,
    # `watch --rounds 6` could never finish.
    conf["services"]["web"]["data"]["backup"] = (
        f"while [ ! -e {gate} ]; do sleep 0.05; done; echo the data"
    )
    path = write_config(project, conf)
    loaded = cfg.load(path, project / ".failover")
    engine = Engine(loaded)
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").ok
        lines: list[str] = []
        assert Watcher(loaded, lines.append).run(rounds=6) == 0
        assert len([x for x in lines if " web up " in x]) == 6
        assert ids(engine, "offsite") == []  # still waiting at the gate
        gate.write_text("")
        for _ in range(1200):  # a loaded machine: generous; one store's manifest comes first
            if ids(engine, "offsite") and ids(engine, "second"):
                break
            time.sleep(0.05)
        (backup,) = ids(engine, "offsite")
        assert ids(engine, "second") == [backup]
    finally:
        engine.close()
        cleanup(path)


def test_a_store_sharing_fate_with_a_blocked_provider_is_skipped(project: Path) -> None:
    from failover.data.plane import take_backup

    conf = two_stores(project)
    conf["stores"][0]["provider"] = "beta"
    path = write_config(project, conf)
    engine = Engine(cfg.load(path, project / ".failover"))
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").ok
        engine.store.set_provider_state("beta", "blocked", "account closed")
        doc = take_backup(engine, "web")
        assert doc["stores"] == {"second": "ok", "offsite": "skipped: provider beta is blocked"}
        assert ids(engine, "offsite") == [] and ids(engine, "second") == [doc["id"]]
        engine.store.set_provider_state("beta", "available", None)
        from failover.data.plane import replicate

        results, _ = replicate(engine, "web")  # beta answers again: the store catches up
        assert results == {"offsite": "ok", "second": "ok"}
        assert ids(engine, "offsite") == [doc["id"]]
    finally:
        engine.close()
        cleanup(path)


def test_config_rejects_a_store_provider_that_does_not_exist(project: Path) -> None:
    conf = two_stores(project)
    conf["stores"][0]["provider"] = "nowhere"
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.parse(yaml.safe_dump(conf))
    assert "stores[0].provider: no provider named 'nowhere'" in caught.value.problems


CONTRACT_EXAMPLE = """
version: 1
providers: [{name: aws-main, type: local}]
stores:
  - {name: offsite, type: dir, path: /srv/failover-backups}
  - {name: s3-dr, type: s3, bucket: acme-dr, region: eu-west-1, provider: aws-main}
  - {name: gcs-dr, type: gcs, bucket: acme-dr, project: acme-123}
  - name: azure-dr
    type: azureblob
    account_url: "https://acme.blob.core.windows.net"
    container: dr
services:
  web:
    domain: www.example.test
    port: 8080
    run: {command: "app --port {port}"}
    data:
      backup: "sqlite3 data/app.db .dump"
      restore: "sqlite3 data/app.db"
      every: 5m
      stores: [offsite, s3-dr]
      keep: 24
      max_age: 15m
      encryption_key: ${FAILOVER_DATA_KEY}
"""


def test_the_contract_example_is_a_valid_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAILOVER_DATA_KEY", "a-long-enough-key-for-aes")
    conf = cfg.parse(CONTRACT_EXAMPLE)
    data = conf.services["web"].data
    assert data is not None and data.every == 300 and data.max_age == 900
    assert [s.type for s in conf.stores] == ["dir", "s3", "gcs", "azureblob"]
    from failover.redact import redact

    assert redact("key a-long-enough-key-for-aes") == "key ***"


def test_the_data_state_reads_back_the_same_from_sqlite_and_etcd(
    project: Path, etcd_cluster: Any
) -> None:
    import uuid

    from failover.state import SqliteStore
    from failover.state.etcd import EtcdStore
    from failover.state.gateway import Gateway

    doc = {
        "last_backup": {"id": "20261201T000000.000001Z-abc123", "taken": 1.5, "bytes": 10},
        "stores": {"offsite": {"ok": False, "error": "not mounted", "failures": 2}},
    }
    etcd = EtcdStore(Gateway(etcd_cluster.endpoints, timeout=1.0), f"/data-{uuid.uuid4().hex}/")
    sqlite = SqliteStore(project / "state")
    try:
        for state in (sqlite, etcd):
            assert state.data_state("web") is None
            state.set_data_state("web", doc)
            assert state.data_state("web") == doc
            assert state.data_state("api") is None
    finally:
        sqlite.close()
        etcd.close()
