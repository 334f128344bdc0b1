"""`check`/`watch` take a backup every `data.every` and copy every complete backup to
every store; `check` turns WARNING when the data is at risk; status, doctor, metrics."""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.data.backup import list_backups
from failover.data.plane import FAILING_ROUNDS, plane, problems
from failover.engine import OK, WARNING, Engine
from failover.engine.views import warnings
from tests.doubles.moto_server import free_port
from tests.helpers import APP, base_config, cleanup, write_config
from tests.test_data_e2e import BACKUP, RESTORE

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
    assert doc["stores"] == {
        "offsite": {"ok": True, "newest": first[0]},
        "second": {"ok": True, "newest": first[0]},
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
        assert ids(engine, "offsite") == [] and list((project / "offsite").rglob("*")) == []
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
        data = store.get(manifest.key("chunk-00000000"))
        active = engine.store.service("web").active
        assert active is not None
        assert data.decode().startswith("hello ") and data.decode().endswith(
            f"/hosts/{active['host_id']}/root"
        )
    finally:
        engine.close()
        cleanup(path)


def test_backups_list_newest_first_and_keep_holds(project: Path) -> None:
    from failover.data.plane import catalog, take_backup

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
