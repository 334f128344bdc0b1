"""The SQLite state: lease as lock, fencing by token and generation, corruption."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from failover.state import Lease
from failover.state import LeaseLost
from failover.state import SqliteStore as Store
from failover.state import StateError


def test_lease_is_exclusive_and_expires(tmp_path: Path) -> None:
    a, b = Store(tmp_path), Store(tmp_path)
    lease = a.acquire("service:web", ttl=0.3)
    assert isinstance(lease, Lease)
    held = b.acquire("service:web", ttl=0.3)
    assert isinstance(held, dict) and held["pid"] == os.getpid()
    time.sleep(0.35)
    taken = b.acquire("service:web", ttl=30)
    assert isinstance(taken, Lease) and taken.token > lease.token
    # The first holder was paused past its lease: every write it tries is refused.
    with pytest.raises(LeaseLost):
        a.renew(lease)
    with pytest.raises(LeaseLost):
        a.start_event("web", "failover", "x", None, {}, lease)
    with pytest.raises(LeaseLost):
        a.cutover("web", 0, {"provider": "alpha"}, lease)


def test_lease_of_a_dead_process_is_taken_at_once(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from failover.state import SqliteStore as Store\n"
        f"Store(Path({str(tmp_path)!r})).acquire('service:web', ttl=600)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    lease = Store(tmp_path).acquire("service:web", ttl=30)
    assert isinstance(lease, Lease)


def test_cutover_is_a_compare_and_set_on_generation(tmp_path: Path) -> None:
    store = Store(tmp_path)
    lease = store.acquire("service:web", ttl=30)
    assert isinstance(lease, Lease)
    assert store.cutover("web", 0, {"provider": "alpha"}, lease) == 1
    assert store.cutover("web", 0, {"provider": "alpha"}, lease) == 1  # a resumed repeat
    assert store.cutover("web", 1, {"provider": "beta"}, lease) == 2
    with pytest.raises(LeaseLost, match="a newer move won"):
        store.cutover("web", 0, {"provider": "alpha"}, lease)
    assert store.service("web").active == {"provider": "beta"}


def test_rounds_count_only_for_the_current_generation(tmp_path: Path) -> None:
    store = Store(tmp_path)
    lease = store.acquire("service:web", ttl=30)
    assert isinstance(lease, Lease)
    store.cutover("web", 0, {"provider": "alpha"}, lease)
    row = store.record_round("web", 1, False, None, fall=2, rise=1)
    assert (row.failures, row.health_state) == (1, "up")
    row = store.record_round("web", 1, False, None, fall=2, rise=1)
    assert (row.failures, row.health_state) == (2, "down")
    stale = store.record_round("web", 0, True, None, fall=2, rise=1)  # about a replaced host
    assert stale.failures == 2
    row = store.record_round("web", 1, True, 0.01, fall=2, rise=1)
    assert (row.failures, row.successes, row.health_state) == (0, 1, "up")


def test_journal_steps_and_events(tmp_path: Path) -> None:
    store = Store(tmp_path)
    event = store.start_event("web", "deploy", "why", None, {"a": 1}, None)
    store.step(event, 0, "lock", "in_progress", None, None)
    store.step(event, 0, "lock", "succeeded", "ok", None)
    assert store.open_event("web")["id"] == event  # type: ignore[index]
    store.update_event(event, None, status="succeeded")
    assert store.open_event("web") is None
    (got,) = store.events("web")
    assert got["steps"][0]["name"] == "lock" and got["steps"][0]["status"] == "succeeded"
    assert got["duration_s"] is not None


@pytest.mark.parametrize("content", [b"garbage" * 200, b"SQLite format 3\x00" + b"\x00" * 50])
def test_corrupt_state_is_reported_not_reset(tmp_path: Path, content: bytes) -> None:
    Store(tmp_path).close()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"state.db{suffix}").unlink(missing_ok=True)
    (tmp_path / "state.db").write_bytes(content)
    with pytest.raises(StateError, match="Move it aside"):
        Store(tmp_path)
    assert (tmp_path / "state.db").read_bytes() == content


def test_truncated_state_is_detected(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for i in range(200):
        store.start_event("web", "drill", "x" * 200, None, {"i": i}, None)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = (tmp_path / "state.db").read_bytes()
    (tmp_path / "state.db").write_bytes(data[: len(data) // 2])
    with pytest.raises(StateError):
        Store(tmp_path).events("web", limit=500)
