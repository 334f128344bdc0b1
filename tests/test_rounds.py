"""Many services, one watcher (issue 16): bounded probe rounds, batched counters and
provider look-ups, failovers side by side. Real servers and real local hosts; every
assertion is a count or an order, never a duration."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.config import HealthConfig
from failover.config import HttpProbe
from failover.engine import Engine
from failover.probes import Target
from failover.probes import probe_round
from failover.state import Lease
from failover.state import RoundRecord
from tests.helpers import ROOT
from tests.helpers import base_config
from tests.helpers import dns_values
from tests.helpers import host_records
from tests.helpers import live_hosts
from tests.helpers import pid_alive
from tests.helpers import write_config
from tests.servers import free_port


@contextlib.contextmanager
def counting_server(delay: float, addresses: int = 1) -> Iterator[tuple[list[str], int]]:
    """``tests/apps/counting.py`` in its own process: ``(addresses, port)``."""
    from tests.apps.counting import addresses as spread

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.apps.counting",
            "--port",
            str(port),
            "--addresses",
            str(addresses),
            "--delay",
            str(delay),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield spread("127.9", addresses), port
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def stats(address: str, port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{address}:{port}/stats", timeout=5) as answer:
        data: dict[str, int] = json.loads(answer.read())
    return data


def targets(addresses: list[str], port: int, count: int, timeout: float) -> list[Target]:
    health = HealthConfig(interval=max(timeout, 1.0), timeout=timeout, http=HttpProbe())
    return [
        Target(f"s{i}", addresses[i % len(addresses)], port, "www.example.test", health)
        for i in range(count)
    ]


def test_a_round_larger_than_the_cap_passes_with_a_tight_timeout() -> None:
    """3,000 probes, 100 at once, a 20 ms answer each and a 1 s timeout: every probe
    passes and the server never sees more than the cap open at once (uncapped, the
    whole round starves its own loop and every probe times out: issue 16)."""
    with counting_server(delay=0.02, addresses=4) as (addresses, port):
        done = asyncio.run(probe_round(targets(addresses, port, 3000, 1.0), in_flight=100))
        seen = stats(addresses[0], port)
    results = [r for row in done for r in row]
    assert len(results) == 3000
    assert [r.error for r in results if not r.ok] == []
    assert seen["served"] == 3000
    assert 2 <= seen["max_open"] <= 100


def test_probes_a_round_could_not_start_are_not_run_rather_than_failed() -> None:
    """One probe at a time, 0.3 s an answer, a 1 s budget: a few run and pass, the rest
    are reported as not run (and not as failures)."""
    with counting_server(delay=0.3) as (addresses, port):
        done = asyncio.run(probe_round(targets(addresses, port, 10, 1.0), in_flight=1, budget=1.0))
    results = [r for row in done for r in row]
    ran = [r for r in results if r.ran]
    skipped = [r for r in results if not r.ran]
    assert len(ran) + len(skipped) == 10
    assert 1 <= len(ran) <= 5 and all(r.ok for r in ran)
    assert skipped and all(not r.ok and "not run" in (r.error or "") for r in skipped)
    assert all(r.to_dict()["ran"] is False for r in skipped)


def test_a_service_whose_probes_did_not_run_is_unknown_and_not_counted(project: Path) -> None:
    """Through the engine: a round whose budget is spent leaves the service UNKNOWN, its
    failure counter untouched, and moves nothing."""
    path = write_config(project, base_config(health={"fall": 1}))
    engine = Engine(cfg.load(path))
    try:
        assert engine.run("web", "deploy", reason="test").status == "succeeded"
        for host in host_records(path):  # the host is dead: a probe that ran would fail
            os.killpg(int(host["pid"]), signal.SIGKILL)
        svc = engine.config.services["web"]
        # A budget of 0: the next round was due before the first probe could start.
        svc.health = svc.health.model_copy(update={"interval": 0.0})
        (verdict,) = engine.check(["web"])
        assert verdict.state == "unknown" and int(verdict.exit_code) == 3
        assert verdict.action == "none" and "not run" in verdict.message
        row = engine.store.service("web")
        assert row.failures == 0 and row.generation == 1 and row.last_check is not None
        assert [e["kind"] for e in engine.history("web", 10)] == ["deploy"]
    finally:
        engine.close()


def test_record_rounds_writes_a_round_in_one_call_and_skips_a_moved_service(
    project: Path,
) -> None:
    path = write_config(project, base_config())
    engine = Engine(cfg.load(path))
    try:
        assert engine.run("web", "deploy", reason="test").status == "succeeded"
        rows = engine.store.record_rounds(
            [
                RoundRecord("web", 1, False, 0.1, fall=2, rise=1),
                RoundRecord("web", 1, False, 0.1, fall=2, rise=1),
                RoundRecord("web", 7, True, 0.1, fall=2, rise=1),  # another generation
                RoundRecord("nothing", 0, True, None, fall=2, rise=1),
            ]
        )
        assert rows["web"].failures == 2 and rows["web"].health_state == "down"
        assert rows["nothing"].active is None
    finally:
        engine.close()


def many(count: int, **service: Any) -> dict[str, Any]:
    data = base_config(**service)
    svc = data["services"].pop("web")
    for i in range(count):
        data["services"][f"s{i}"] = {**svc, "domain": f"s{i}.example.test"}
    return data


def test_parallel_failovers_make_exactly_one_move_per_service(project: Path) -> None:
    """Ten services on alpha; alpha suspends the account and its hosts die; one check
    moves all ten to beta, side by side, each exactly once, the state consistent."""
    data = many(10, health={"fall": 1}, policy={"max_moves_per_hour": 10})
    data["watcher"] = {"parallel_moves": 4}
    path = write_config(project, data)
    names = [f"s{i}" for i in range(10)]
    workers: set[str] = set()

    def on_step(step: str, status: str, detail: str) -> None:
        if step == "provision" and status == "in_progress":
            import threading

            workers.add(threading.current_thread().name)

    engine = Engine(cfg.load(path), on_step=on_step)
    try:
        for name in names:
            assert engine.run(name, "deploy", reason="test", to="alpha").status == "succeeded"
        workers.clear()
        (project / ".failover" / "local" / "alpha" / "SUSPENDED").write_text("")
        for host in host_records(path):
            os.killpg(int(host["pid"]), signal.SIGKILL)
        verdicts = engine.check(names)
        assert [v.action for v in verdicts] == ["failover"] * 10, [v.message for v in verdicts]
        assert all("moved from alpha to beta" in v.message for v in verdicts)
        assert 2 <= len(workers) <= 4  # side by side, and no more than parallel_moves
        live = live_hosts(path)
        assert sorted(h["provider"] for h in live) == ["beta"] * 10
        assert len({h["address"] for h in live}) == 10
        by_service = {h["service"]: h for h in live}
        for name in names:
            row = engine.store.service(name)
            assert row.generation == 2 and row.active is not None
            assert row.active["provider"] == "beta"
            assert row.active["host_id"] == by_service[name]["id"]
            assert dns_values(path, f"{name}.example.test") == [row.active["address"]]
            history = engine.history(name, 10)
            assert [(e["kind"], e["status"]) for e in history] == [
                ("failover", "succeeded"),
                ("deploy", "succeeded"),
            ]
        for name in names:  # every service's lock was released
            lease = engine.store.acquire(f"service:{name}", 5)
            assert isinstance(lease, Lease)
            engine.store.release(lease)
    finally:
        engine.close()


def test_a_provider_one_move_finds_unusable_is_skipped_by_the_others(project: Path) -> None:
    """The round's blocklist: a provider put on it by one move (here by hand, as
    step_provision does on CapacityError) is skipped by the next, which goes on to the
    following provider instead of trying it."""
    data = base_config(health={"fall": 1})
    data["providers"].append({"name": "gamma", "type": "local"})
    path = write_config(project, data)
    engine = Engine(cfg.load(path))
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").status == "succeeded"
        sibling = engine.sibling()
        assert sibling.blocklist is engine.blocklist
        sibling.close()
        engine.blocklist.add("beta", "out of capacity (no zone could take it)")
        outcome = engine.run("web", "move", reason="test", to=None)
        assert outcome.status in ("succeeded", "noop")
        outcome = engine.run("web", "failover", reason="test")
        assert outcome.status == "succeeded", outcome.message
        row = engine.store.service("web")
        assert row.active is not None and row.active["provider"] == "gamma"
        assert [h["provider"] for h in host_records(path) if h["service"] == "web"].count(
            "beta"
        ) == 0
    finally:
        engine.close()


def test_provider_words_ask_a_batching_provider_once(project: Path) -> None:
    """Three live hosts on one local provider: one get_hosts call for the round."""
    path = write_config(project, many(3))
    engine = Engine(cfg.load(path))
    try:
        for name in ("s0", "s1", "s2"):
            assert engine.run(name, "deploy", reason="test", to="alpha").status == "succeeded"
        provider = engine.provider("alpha")
        calls: list[list[str]] = []
        real = provider.get_hosts

        def counted(ids: list[str]) -> Any:
            calls.append(ids)
            return real(ids)

        # Counting calls of a real provider: the only way to see how often it is asked.
        provider.get_hosts = counted  # type: ignore[method-assign,assignment]
        rows = engine.store.services(["s0", "s1", "s2"])
        words = engine.provider_words(rows)
        assert len(calls) == 1 and len(calls[0]) == 3
        assert sorted(w.word for w in words.values()) == ["alive"] * 3
        assert all(pid_alive(int(h["pid"])) for h in host_records(path))
    finally:
        engine.close()


@pytest.mark.parametrize("loader", ["CSafeLoader"])
def test_the_c_yaml_loader_is_used_when_present(loader: str) -> None:
    import yaml

    if not hasattr(yaml, loader):
        pytest.skip("PyYAML was built without libyaml")
    assert issubclass(cfg._Loader, getattr(yaml, loader))
