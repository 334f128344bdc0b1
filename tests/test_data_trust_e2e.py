"""Issue 20, end to end: the demo app counts visits in SQLite on local hosts, backups go
to folders (a tmpfs mount where root allows) and to S3 (moto's server). Whatever a
store holds or lost, a move never comes up with less than the newest backup the state
knows of without failing first and leaving the old host running."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from failover.data.backup import MANIFEST
from failover.data.backup import Sealer
from failover.data.backup import list_backups
from failover.data.backup import new_id
from failover.data.plane import plane
from failover.data.plane import take_backup
from failover.data.recover import final_backup
from failover.engine import OK
from failover.engine import UNKNOWN
from failover.engine import WARNING
from failover.engine import Engine
from tests.helpers import FAILOVER
from tests.helpers import env_for
from tests.helpers import wait_for
from tests.helpers import write_config
from tests.receivers import http_receiver
from tests.test_data_e2e import aws_env  # noqa: F401 - a fixture
from tests.test_data_e2e import bucket  # noqa: F401 - a fixture
from tests.test_data_e2e import cut_off
from tests.test_data_e2e import data_config
from tests.test_data_e2e import fail_over
from tests.test_data_e2e import step
from tests.test_data_e2e import visit
from tests.test_data_e2e import visits
from tests.test_data_e2e import world  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(240)
KEY = "the-watchers-key-0123456789"


@contextlib.contextmanager
def small_disk(where: Path, size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``where``: a disk that fills, a mount that goes away."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def answers(address: str) -> bool:
    try:
        socket.create_connection((address, 8080), 1.0).close()
    except OSError:
        return False
    return True


def old_host(engine: Engine) -> dict[str, Any]:
    active = engine.store.service("web").active
    assert active is not None
    return dict(active)


def still_serves(engine: Engine, host: dict[str, Any], count: int) -> None:
    """The old host is the live one, answers and holds its data: the run left it alone."""
    assert old_host(engine)["host_id"] == host["host_id"]
    assert visits(engine) == count
    events = engine.store.events("web", limit=1)
    assert all(s["name"] not in ("cutover", "fence") for s in events[0]["steps"])


def forge(engine: Engine, store: str, **changes: Any) -> str:
    """A manifest written into one store by someone without the key: copied from a real
    one (its key_check too), a newer id, no chunks."""
    target = plane(engine).store(store)
    real = next(k for k in target.list("web/") if k.endswith(MANIFEST))
    doc = json.loads(target.get(real))
    forged_id = new_id(time.time() + 30)  # newer than every real one, not in the future
    doc.update(id=forged_id, bytes=0, chunks=[], sha256=hashlib.sha256(b"").hexdigest())
    doc.update(changes)
    target.put(f"web/{doc['id']}/{MANIFEST}", json.dumps(doc).encode())
    return str(doc["id"])


def ids(engine: Engine, store: str) -> list[str]:
    return [m.id for m in list_backups(plane(engine).store(store), "web", Sealer(KEY))]


def test_forged_manifests_in_one_store_lose_no_backup_anywhere(
    world: Any,  # noqa: F811
    project: Path,
    bucket: Any,  # noqa: F811
) -> None:
    """Item 1: with keep 2, two forged manifests used to prune the store's real backups
    on the next backup, travel to the other store on the next check, prune it too, and
    make the move fail. Item 4: a forged newer, empty backup was restored."""
    engine = world(data_config(project, bucket, keep=2, encryption_key=KEY))
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    visit(engine, 2)
    take_backup(engine, "web")
    assert visit(engine) == 3
    second = take_backup(engine, "web")
    forged = [forge(engine, "offsite"), forge(engine, "offsite", version=1)]
    third = take_backup(engine, "web")
    assert ids(engine, "offsite") == [third["id"], second["id"]]
    (verdict,) = engine.check(["web"])
    assert verdict.exit_code == WARNING and f"skipped backup {forged[0]}" in verdict.message
    assert ids(engine, "s3-dr") == [third["id"], second["id"]]
    s3 = plane(engine).store("s3-dr").list("web/")
    assert not any(f in key for f in forged for key in s3)  # never copied
    moved = engine.run("web", "move", reason="test", to="beta")
    assert moved.ok, moved.message
    assert visits(engine) == 3  # not the empty forgery
    assert not any(f in step(engine, "move") for f in forged)


def test_a_malformed_manifest_blocks_nothing(world: Any, project: Path) -> None:  # noqa: F811
    """Item 3: `"chunks": [[1]]` made every deploy, move and failover fail, and
    `"taken": "yesterday"` made `backups` an internal error."""
    engine = world(data_config(project, None))
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    visit(engine, 2)
    taken = take_backup(engine, "web")
    bad = [forge(engine, "offsite", chunks=[[1]]), forge(engine, "offsite", taken="yesterday")]
    from failover.data.plane import catalog
    from failover.data.plane import status

    assert [r["id"] for r in catalog(engine, "web")] == [taken["id"]]
    outcome = engine.drill("web", "beta")
    assert outcome.ok, outcome.message
    assert f"restored backup {taken['id']}" in step(engine, "drill")
    (verdict,) = engine.check(["web"])
    assert verdict.exit_code == WARNING and "is malformed" in verdict.message
    problems = status(engine, "web")["problems"]  # type: ignore[index]
    assert sum(f"backup {b} in store offsite is malformed" in p for b in bad for p in problems) == 2


def failed_failover(engine: Engine) -> dict[str, Any]:
    for _ in range(40):
        engine.check(["web"])
        events = [e for e in engine.store.events("web", limit=5) if e["kind"] == "failover"]
        if events and events[0]["status"] in ("succeeded", "failed"):
            return events[0]
    raise AssertionError("no failover")


def test_a_store_emptied_fails_the_move_and_leaves_the_old_host(
    world: Any,  # noqa: F811
    project: Path,
) -> None:
    """Item 2: its backups deleted, the store answered "no backup yet: starting empty"
    and the fence destroyed the only live copy."""
    conf = data_config(project, None)
    engine = world(conf)
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    assert visit(engine, 3) == 3
    take_backup(engine, "web")
    shutil.rmtree(project / "offsite" / "web")
    before = old_host(engine)
    conf["services"]["web"]["data"]["backup"] = "exit 3"  # and no final backup either
    engine = world(conf)
    moved = engine.run("web", "move", reason="test", to="beta")
    assert not moved.ok
    assert "no final backup from the old host" in moved.message
    assert "offsite: holds no backup of web" in moved.message
    assert "not starting web empty" in moved.message
    still_serves(engine, before, 3)


def test_an_unmounted_store_fails_the_failover_before_cutover(
    world: Any,  # noqa: F811
    project: Path,
) -> None:
    """Item 2: the mount went away, the empty mount point stayed; the old host is dead
    and its provider blocked: the failover fails, the old host is never fenced."""
    conf = data_config(project, None)
    with small_disk(project / "offsite", "1m"):
        engine = world(conf)
        assert engine.run("web", "deploy", reason="test", to="alpha").ok
        assert visit(engine, 3) == 3
        taken = take_backup(engine, "web")
        assert taken["stores"] == {"offsite": "ok"}
    assert not list((project / "offsite").iterdir())  # the empty mount point
    before = old_host(engine)
    cut_off(engine, "alpha")
    event = failed_failover(engine)
    assert event["status"] == "failed"
    assert "offsite: holds no backup of web" in (event["reason"] or "")
    assert old_host(engine)["host_id"] == before["host_id"]
    assert all(s["name"] not in ("cutover", "fence") for s in event["steps"])


def test_a_store_of_a_blocked_provider_is_still_read(world: Any, project: Path) -> None:  # noqa: F811
    """Item 2: the only store shares fate with alpha; alpha is blocked: it was skipped
    and the failover started empty. Reads are tried (bounded); writes skip it."""
    conf = data_config(project, None)
    conf["stores"][0].update(provider="alpha", retry_attempts=2)
    engine = world(conf)
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    assert visit(engine, 3) == 3
    taken = take_backup(engine, "web")
    cut_off(engine, "alpha")
    fail_over(engine)
    assert engine.store.provider_states()["alpha"]["state"] == "blocked"
    assert visits(engine) == 3
    assert f"restored backup {taken['id']} from store offsite" in step(engine, "failover")


def test_a_store_that_cannot_be_reached_never_prevents_a_restore_from_a_good_one(
    world: Any,  # noqa: F811
    project: Path,
) -> None:
    """Item 9: a bad store (first in order, nothing listening) costs its retries only."""
    conf = data_config(project, None)
    conf["stores"].insert(
        0,
        {
            "name": "nowhere",
            "type": "s3",
            "bucket": "dr-nowhere",
            "endpoint": "http://127.0.0.1:9",
            "retry_attempts": 1,
        },
    )
    engine = world(conf)
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    visit(engine, 2)
    taken = take_backup(engine, "web")
    assert taken["stores"]["offsite"] == "ok" and taken["stores"]["nowhere"] != "ok"
    outcome = engine.drill("web", "beta")
    assert outcome.ok, outcome.message
    assert f"restored backup {taken['id']} from store offsite" in step(engine, "drill")


def test_a_full_disk_is_no_backup_and_leaves_no_chunks(world: Any, project: Path) -> None:  # noqa: F811
    """Item 6: the manifest write failed with ENOSPC, yet the state recorded the backup
    as the newest, `check` said OK and the orphan chunks kept the store full."""
    with small_disk(project / "offsite", "256k") as disk:
        conf = data_config(project, None)
        engine = world(conf)
        assert engine.run("web", "deploy", reason="test", to="alpha").ok
        visit(engine)
        first = take_backup(engine, "web")
        stat = os.statvfs(disk)
        free = stat.f_bavail * stat.f_frsize  # the chunk fits exactly; the manifest does not
        # Random: compression must not make it fit.
        conf["services"]["web"]["data"]["backup"] = f"head -c {free} /dev/urandom"
        engine = world(conf)
        doc = None
        with pytest.raises(Exception, match="No space left"):
            doc = take_backup(engine, "web")
        assert doc is None
        state = engine.store.data_state("web") or {}
        assert state["last_backup"]["id"] == first["id"]
        assert [p.name for p in (disk / "web").iterdir()] == [first["id"]]
        (kept,) = list_backups(plane(engine).store("offsite"), "web")
        chunks = {p.name for p in (disk / "_dedup/web/chunks").iterdir()}
        assert chunks == {name for _, name in kept.chunks}  # its chunks gone
        (verdict,) = engine.check(["web"])
        assert verdict.exit_code == WARNING and "the last backup failed" in verdict.message


def test_a_missing_newest_backup_is_said_everywhere(world: Any, project: Path) -> None:  # noqa: F811
    """Item 7: the newest backup gone, the older one was restored and nobody was told."""
    with http_receiver() as hook:
        conf = data_config(project, None)
        conf["notify"] = [{"type": "webhook", "url": hook.url}]
        engine = world(conf)
        assert engine.run("web", "deploy", reason="test", to="alpha").ok
        visit(engine, 3)
        first = take_backup(engine, "web")
        assert visit(engine, 5) == 8
        second = take_backup(engine, "web")
        shutil.rmtree(project / "offsite" / "web" / second["id"])
        cut_off(engine, "alpha")
        fail_over(engine)
        assert visits(engine) == 3
        detail = step(engine, "failover")
        assert f"restored backup {first['id']}" in detail
        said = f"NOT THE NEWEST: restored backup {first['id']} although backup {second['id']}"
        assert said in detail
        (verdict,) = engine.check(["web"])
        assert verdict.exit_code == WARNING and f"although backup {second['id']}" in (
            verdict.message
        )
        from failover.data.plane import status

        problems = status(engine, "web")["problems"]  # type: ignore[index]
        assert sum(f"although backup {second['id']}" in p for p in problems) == 1
        assert engine.notifier.drain(60)
        wait_for(
            lambda: any(second["id"] in r.body.decode() for r in hook.requests),
            30,
            "the notification",
        )


def test_a_move_never_restores_an_older_backup_than_the_newest_known(
    world: Any,  # noqa: F811
    project: Path,
) -> None:
    """The issue's "done when": the old host still holds everything, so a move that
    could only restore an older backup fails and leaves it serving."""
    conf = data_config(project, None)
    engine = world(conf)
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    visit(engine, 3)
    take_backup(engine, "web")
    assert visit(engine, 2) == 5
    newest = take_backup(engine, "web")
    shutil.rmtree(project / "offsite" / "web" / newest["id"])
    before = old_host(engine)
    conf["services"]["web"]["data"]["backup"] = "exit 3"  # no final backup
    engine = world(conf)
    moved = engine.run("web", "move", reason="test", to="beta")
    assert not moved.ok
    assert f"backup {newest['id']} (the newest known) cannot be restored" in moved.message
    still_serves(engine, before, 5)


def test_every_store_refusing_a_backup_is_a_warning_not_unknown(
    world: Any,  # noqa: F811
    project: Path,
) -> None:
    """Item 8: a ProviderError escaped where a DataError was caught: every check was
    UNKNOWN; `backup --json` printed nothing. Item 10: the folder is never made."""
    conf = data_config(project, None, every="1s")
    conf["stores"][0]["retry_attempts"] = 1
    engine = world(conf)
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    shutil.rmtree(project / "offsite")
    (verdict,) = engine.check(["web"])
    assert verdict.exit_code not in (UNKNOWN, OK)
    assert verdict.exit_code == WARNING and "data:" in verdict.message
    assert not (project / "offsite").exists()
    path = write_config(project, conf)
    proc = subprocess.run(
        [FAILOVER, "backup", "--json", "-c", str(path)],
        env=env_for(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["id"] is None and "does not exist" in doc["error"]
    assert "does not exist" in doc["stores"]["offsite"]
    assert not (project / "offsite").exists()


def test_a_relative_store_path_is_the_config_folders(project: Path, tmp_path: Path) -> None:
    """Item 11: cron runs `failover backup` from $HOME: it saw another store."""
    conf = data_config(project, None)
    conf["stores"][0]["path"] = "offsite"
    path = write_config(project, conf)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    run = lambda *a: subprocess.run(  # noqa: E731
        [FAILOVER, *a, "-c", str(path)],
        env=env_for(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=elsewhere,
    )
    assert run("deploy").returncode == 0
    proc = run("backup", "--json")
    assert proc.returncode == 0, proc.stderr
    taken = json.loads(proc.stdout)["id"]
    assert (project / "offsite" / "web" / taken / MANIFEST).exists()
    assert not (elsewhere / "offsite").exists()


def test_a_move_takes_a_final_backup_after_quiesce(world: Any, project: Path) -> None:  # noqa: F811
    """Item 12: a planned move restored the last periodic backup: every write since was
    lost. Now the old host is quiesced, backed up, and that backup restored."""
    conf = data_config(project, None, quiesce=f"touch {project}/quiesced-{{host_id}}")
    engine = world(conf)
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    visit(engine, 3)
    periodic = take_backup(engine, "web")
    assert visit(engine, 4) == 7  # written after the last backup
    before = old_host(engine)
    moved = engine.run("web", "move", reason="test", to="beta")
    assert moved.ok, moved.message
    assert visits(engine) == 7
    detail = step(engine, "move")
    assert f"taken from the old host {before['host_id']} after quiesce" in detail
    assert periodic["id"] not in detail
    assert (project / f"quiesced-{before['host_id']}").exists()


def test_a_move_whose_old_provider_refuses_commands_says_which_backup(
    world: Any,  # noqa: F811
    project: Path,
) -> None:
    """Item 12: during the day's notice the provider refuses API calls (no command runs
    on its host) while the host still serves: the newest backup, and the detail says so."""
    engine = world(data_config(project, None))
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    visit(engine, 2)
    periodic = take_backup(engine, "web")
    (engine.config.state_dir / "local/alpha/SUSPENDED").write_text("notice\n")  # type: ignore[operator]
    moved = engine.run("web", "move", reason="test", to="beta")
    assert moved.ok, moved.message
    detail = step(engine, "move")
    assert "no final backup from the old host" in detail and "suspended" in detail
    assert f"restored backup {periodic['id']}" in detail
    assert visits(engine) == 2


def test_a_failover_whose_old_host_answers_takes_its_final_backup(
    world: Any,  # noqa: F811
    project: Path,
) -> None:
    """Item 12: bounded, and said: the detail names the backup that was used."""
    engine = world(data_config(project, None))
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    visit(engine, 2)
    host = old_host(engine)
    origin = SimpleNamespace(**host)
    said = final_backup(engine, "web", "failover", origin)
    assert said.startswith("final backup ") and host["host_id"] in said
    newest = (engine.store.data_state("web") or {})["last_backup"]["id"]
    assert newest in said
    cut_off(engine, "alpha")
    wait_for(lambda: not answers(host["address"]), 30, "the old host to stop answering")
    assert final_backup(engine, "web", "failover", origin).startswith(
        "the old host does not answer"
    )
