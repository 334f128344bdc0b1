"""A round's cutovers gathered into DNS batches (issue 16): the zone writer's group
commit, over the local zone file and through a whole `check` of parallel failovers.

Nothing is mocked. To make "these changes arrived while a request was in flight"
deterministic, the test holds the zone file's lock itself, as another writer of the
zone would: the first change's request waits on it, the others queue, and the counts
(requests sent, the zone's serial, changes per request) follow from that, not from
timing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from failover import config as cfg
from failover.engine import Engine
from failover.engine.zone import ZoneWriter
from providers.base import ConflictError
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange
from providers.dns.local import LocalDns
from providers.dns.local import LocalDnsSettings
from tests.helpers import base_config
from tests.helpers import dns_values
from tests.helpers import host_records
from tests.helpers import wait_for
from tests.helpers import write_config


@contextlib.contextmanager
def zone_held(dns: LocalDns) -> Iterator[Callable[[], None]]:
    """The zone file's lock held by the test until the yielded ``release`` is called."""
    dns.path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(dns.path.with_suffix(".lock"), "a+")  # noqa: SIM115 - released by hand
    fcntl.flock(fh, fcntl.LOCK_EX)
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    try:
        yield release
    finally:
        release()


def local_zone(tmp_path: Path) -> LocalDns:
    settings = LocalDnsSettings(type="local", zone="example.test", ttl=5)
    return LocalDns(settings, ProviderContext(state_dir=tmp_path, log=lambda m: None))


def write_all(
    writer: ZoneWriter, changes: list[RecordChange]
) -> tuple[list[threading.Thread], dict[str, Any]]:
    """Each change written from its own thread; results by record name."""
    results: dict[str, Any] = {}

    def one(change: RecordChange) -> None:
        try:
            results[change.name] = writer.write(change)
        except ProviderError as exc:
            results[change.name] = exc

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in changes]
    for thread in threads:
        thread.start()
    return threads, results


def change(i: int, new: str, old: list[str] | None) -> RecordChange:
    return RecordChange(f"s{i}.example.test", "A", [new], 5, old)


def test_changes_arriving_during_a_request_go_together_in_the_next(tmp_path: Path) -> None:
    dns = local_zone(tmp_path)
    dns.replace_records([change(i, "127.0.0.1", None) for i in range(8)])
    assert dns.serial() == 1  # eight records, one write
    writer = ZoneWriter(dns)
    with zone_held(dns) as release:
        first, results = write_all(writer, [change(0, "127.0.1.0", ["127.0.0.1"])])
        wait_for(lambda: writer.requests == 1, timeout=60, what="the first request to be sent")
        rest, more = write_all(
            writer, [change(i, f"127.0.1.{i}", ["127.0.0.1"]) for i in range(1, 8)]
        )
        wait_for(
            lambda: writer.queued == 7, timeout=60, what="seven changes queued behind the first"
        )
        release()
        for thread in first + rest:
            thread.join(30)
    results.update(more)
    assert (writer.requests, writer.changes) == (2, 8)
    assert dns.serial() == 3  # one write for the lone first change, one for the other seven
    assert results["s0.example.test"][1] == 1
    for i in range(1, 8):
        record, together = results[f"s{i}.example.test"]
        assert isinstance(record, Record) and record.values == [f"127.0.1.{i}"]
        assert together == 7
        assert dns.get_record(f"s{i}.example.test").values == [f"127.0.1.{i}"]  # type: ignore[union-attr]


def test_a_change_whose_record_moved_fails_alone_in_its_batch(tmp_path: Path) -> None:
    """Each change keeps its own condition: s2 was moved by someone else since, so its
    change is refused with ConflictError and the other four land in the same write."""
    dns = local_zone(tmp_path)
    dns.replace_records([change(i, "127.0.0.1", None) for i in range(5)])
    dns.set_record("s2.example.test", "A", ["127.0.9.9"], 5)
    results = dns.replace_records([change(i, "127.0.2.1", ["127.0.0.1"]) for i in range(5)])
    assert isinstance(results[2], ConflictError)
    assert "127.0.9.9" in str(results[2])
    assert [r.values for r in results if isinstance(r, Record)] == [["127.0.2.1"]] * 4
    assert dns.get_record("s2.example.test").values == ["127.0.9.9"]  # type: ignore[union-attr]
    assert dns.serial() == 3  # the set-up write, s2's move, and this one request
    again = dns.replace_records([change(i, "127.0.2.1", ["127.0.0.1"]) for i in (0, 1)])
    assert all(isinstance(r, Record) for r in again)  # already done: a resumed cutover


def test_an_error_for_the_whole_request_reaches_every_change_and_frees_the_writer(
    tmp_path: Path,
) -> None:
    dns = local_zone(tmp_path)
    dns.replace_records([change(i, "127.0.0.1", None) for i in range(3)])
    writer = ZoneWriter(dns)
    with zone_held(dns) as release:
        first, results = write_all(writer, [change(0, "127.0.3.0", ["127.0.0.1"])])
        wait_for(lambda: writer.requests == 1, timeout=60, what="the first request to be sent")
        rest, more = write_all(writer, [change(i, "127.0.3.1", ["127.0.0.1"]) for i in (1, 2)])
        wait_for(lambda: writer.queued == 2, timeout=60, what="two changes queued")
        dns.path.write_text("{not json")  # the zone file breaks under everyone
        release()
        for thread in first + rest:
            thread.join(30)
    results.update(more)
    assert all(isinstance(r, ProviderError) for r in results.values()), results
    assert all("unreadable" in str(r) for r in results.values())
    assert writer.queued == 0
    dns.path.unlink()
    record, together = writer.write(change(0, "127.0.3.0", None))  # not stuck
    assert record.values == ["127.0.3.0"] and together == 1


def test_a_check_sends_the_cutovers_of_its_parallel_moves_in_one_request(project: Path) -> None:
    """Twelve services cut off together: each moves exactly once, and their twelve
    conditional cutovers reach the zone in two writes, not twelve."""
    data = base_config(health={"fall": 1}, policy={"max_moves_per_hour": 10})
    svc = data["services"].pop("web")
    names = [f"s{i}" for i in range(12)]
    for name in names:
        data["services"][name] = {**svc, "domain": f"{name}.example.test"}
    data["watcher"] = {"parallel_moves": 12}
    path = write_config(project, data)
    details: list[str] = []

    def on_step(step: str, status: str, detail: str) -> None:
        if step == "cutover" and status == "succeeded":
            details.append(detail)

    engine = Engine(cfg.load(path))
    try:
        for name in names:
            assert engine.run(name, "deploy", reason="test", to="alpha").status == "succeeded"
        dns = engine.dns()
        assert isinstance(dns, LocalDns)
        serial = dns.serial()
        (project / ".failover" / "local" / "alpha" / "SUSPENDED").write_text("")
        for host in host_records(path):
            os.killpg(int(host["pid"]), signal.SIGKILL)
        verdicts: list[Any] = []
        watcher: list[Engine] = []  # the check's engine, made in its thread (SQLite's rule)

        def check() -> None:
            other = Engine(cfg.load(path), on_step=on_step)
            watcher.append(other)
            try:
                verdicts.extend(other.check(names))
            finally:
                other.close()

        with zone_held(dns) as release:
            thread = threading.Thread(target=check)
            thread.start()
            wait_for(lambda: bool(watcher), timeout=60, what="the check to start")
            writer = watcher[0].zone()
            wait_for(
                lambda: writer.queued == 11 or not thread.is_alive(),
                timeout=60,
                what="11 cutovers queued",
            )
            release()
            thread.join(120)
        assert [v.action for v in verdicts] == ["failover"] * 12, [v.message for v in verdicts]
        assert (writer.requests, writer.changes) == (2, 12)
        assert dns.serial() == serial + 2
        assert sum("one DNS change with 10 other cutovers" in d for d in details) == 11
        for name in names:
            row = engine.store.service(name)
            assert row.active is not None and row.active["provider"] == "beta"
            assert dns_values(path, f"{name}.example.test") == [row.active["address"]]
    finally:
        engine.close()


def test_a_lone_cutover_is_sent_at_once_as_a_request_of_one(project: Path) -> None:
    path = write_config(project, base_config())
    engine = Engine(cfg.load(path))
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").status == "succeeded"
        assert (engine.zone().requests, engine.zone().changes) == (1, 1)
        assert engine.dns().serial() == 1  # type: ignore[attr-defined]
    finally:
        engine.close()


def test_siblings_borrow_thread_safe_backends_and_leave_them_open(project: Path) -> None:
    path = write_config(project, base_config())
    engine = Engine(cfg.load(path))
    try:
        sibling = engine.sibling()
        assert sibling.dns() is engine.dns()  # LocalDns may be shared across threads
        assert sibling.zone() is engine.zone()
        assert sibling.provider("alpha") is engine.provider("alpha")  # local: shareable
        sibling.close()
        assert engine.dns().get_record("www.example.test") is None  # still usable
        assert engine.provider("alpha").list_hosts("web") == []
    finally:
        engine.close()
