"""Several DNS providers and several domains (contract section 12), on the embedded
local zones: the config's forms and errors, the cutover on every provider of every zone,
the audit that sets back a record changed by hand, and what a newer move wrote.
Against real servers (two BINDs, the Cloudflare double, Route 53 on moto):
tests/test_dns_multi_servers.py."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.engine import Engine
from failover.engine.dnssync import sync
from failover.engine.fanout import block_key
from providers.base import RecordChange
from tests.conftest import ROOT
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import failover
from tests.helpers import host_records
from tests.helpers import pid_alive
from tests.helpers import state_dir
from tests.helpers import wait_for
from tests.helpers import write_config
from tests.receivers import http_receiver
from tests.servers import free_port

DOMAINS = ["www.example.test", "www.example.org"]


def multi_config(**extra: Any) -> dict[str, Any]:
    data = base_config(domains=DOMAINS)
    del data["services"]["web"]["domain"]
    data["dns"] = [
        {"name": "ns-a", "type": "local", "zone": "example.test", "ttl": 5},
        {"name": "ns-b", "type": "local", "zone": "example.test", "ttl": 5},
        {"name": "alt", "type": "local", "zone": "example.org", "ttl": 5},
    ]
    data.update(extra)
    return data


def zone_values(config: Path, provider: str, zone: str, name: str) -> list[str]:
    path = state_dir(config) / "dns" / provider / f"{zone}.json"
    return list(json.loads(path.read_text())["records"][f"{name} A"]["values"])


def everywhere(config: Path) -> dict[str, list[str]]:
    return {
        "ns-a": zone_values(config, "ns-a", "example.test", DOMAINS[0]),
        "ns-b": zone_values(config, "ns-b", "example.test", DOMAINS[0]),
        "alt": zone_values(config, "alt", "example.org", DOMAINS[1]),
    }


def kill_live(engine: Engine) -> None:
    active = engine.store.service("web").active
    assert active is not None
    for host in host_records(Path(str(engine.config.path))):
        if host["id"] == active["host_id"]:
            os.killpg(int(host["pid"]), signal.SIGKILL)
            wait_for(lambda h=host: not pid_alive(int(h["pid"])), what="host to die")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    path = write_config(tmp_path, multi_config(dns_audit="300ms"))
    engine = Engine(cfg.load(path))
    try:
        yield path, engine
    finally:
        engine.close()
        cleanup(path)


# --------------------------------------------------------------------------- config


def test_the_single_mapping_is_a_list_of_one_named_after_its_type(tmp_path: Path) -> None:
    conf = cfg.load(write_config(tmp_path, base_config()))
    (only,) = conf.dns_list()
    assert (only.name, only.type) == ("local", "local")
    assert conf.services["web"].domains == ["www.example.test"]
    conf = cfg.load(write_config(tmp_path, multi_config()))
    assert [d.name for d in conf.dns_list()] == ["ns-a", "ns-b", "alt"]
    assert conf.services["web"].domain == "www.example.test"
    assert conf.zones().providers_of("www.example.org") == ["alt"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["dns"][1].update(name="ns-a"),
            "dns[1].name: duplicate DNS provider name 'ns-a'",
        ),
        (
            lambda d: d["services"]["web"].update(domains=[*DOMAINS, "www.example.net"]),
            "services.web.domains[2]: www.example.net is in no configured zone",
        ),
        (lambda d: d.update(dns=[]), "dns: no DNS provider"),
        (
            lambda d: d["dns"].pop(2),
            "services.web.domains[1]: www.example.org is in no configured zone (example.test)",
        ),
        (lambda d: d["dns"][0].pop("zone"), "dns[0].zone: required"),
    ],
)
def test_invalid_dns_lists_name_the_path(tmp_path: Path, change: Any, message: str) -> None:
    data = multi_config()
    change(data)
    path = write_config(tmp_path, data)
    proc = failover("validate", config=path, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_service_domain_outside_the_single_zone_keeps_its_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, base_config(domain="www.example.net"))
    proc = failover("validate", config=path, check=False)
    assert proc.returncode == 2
    assert "services.web.domain: www.example.net is in no configured zone" in proc.stderr


# --------------------------------------------------------------------------- moves


def test_every_move_reaches_every_provider_of_every_domain(rig: tuple[Path, Engine]) -> None:
    path, engine = rig
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    first = engine.store.service("web").active
    assert first is not None
    assert everywhere(path) == {p: [first["address"]] for p in ("ns-a", "ns-b", "alt")}
    kill_live(engine)
    moved = None
    for _ in range(50):
        (verdict,) = engine.check(["web"])
        if verdict.action == "failover":
            moved = verdict
            break
        time.sleep(0.2)
    assert moved is not None
    now = engine.store.service("web").active
    assert now is not None and now["provider"] == "beta"
    assert everywhere(path) == {p: [now["address"]] for p in ("ns-a", "ns-b", "alt")}
    (event,) = engine.store.events("web", limit=1)
    cutover = next(s for s in event["steps"] if s["name"] == "cutover")
    assert "ns-a updated; ns-b updated; alt updated" in cutover["detail"]
    assert event["data"]["dns"] == {
        DOMAINS[0]: {"ns-a": "updated", "ns-b": "updated"},
        DOMAINS[1]: {"alt": "updated"},
    }
    status = engine.status(["web"])[0]
    assert [d["name"] for d in status["domains"]] == DOMAINS
    assert status["dns"]["providers"] == {
        "ns-a": {"values": [now["address"]], "state": "in_sync"},
        "ns-b": {"values": [now["address"]], "state": "in_sync"},
    }


def test_a_provider_blocked_this_round_is_skipped_by_the_other_moves(
    rig: tuple[Path, Engine],
) -> None:
    path, engine = rig
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    fan = engine.fanout()
    fan.mark("ns-b", "blocked", "refused by another move")
    change = RecordChange(DOMAINS[0], "A", ["127.0.0.9"], 0, None)
    writes, _ = fan.apply([change])
    assert {w.provider: w.label() for w in writes} == {"ns-a": "updated", "ns-b": "blocked"}
    assert zone_values(path, "ns-b", "example.test", DOMAINS[0]) != ["127.0.0.9"]


def test_the_audit_sets_back_a_record_changed_by_hand(tmp_path: Path) -> None:
    with http_receiver() as hook:
        data = multi_config(dns_audit="300ms", notify=[{"type": "webhook", "url": hook.url}])
        path = write_config(tmp_path, data)
        engine = Engine(cfg.load(path))
        try:
            assert engine.run("web", "deploy", reason="test", to="alpha").ok
            address = engine.store.service("web").active["address"]  # type: ignore[index]
            engine.check(["web"])  # the first round reads every provider
            engine.fanout().backend("ns-b").set_record(DOMAINS[0], "A", ["127.0.0.99"], 5)
            engine.fanout().backend("alt").set_record(DOMAINS[1], "A", ["127.0.0.98"], 5)
            wait_for(lambda: engine.check(["web"]) and everywhere(path)["ns-b"] == [address])
            assert everywhere(path) == {p: [address] for p in ("ns-a", "ns-b", "alt")}
            assert engine.store.provider_states()[block_key("ns-b")]["state"] == "in_sync"
            assert engine.notifier.drain(30)
        finally:
            engine.close()
            cleanup(path)
    events = [r.json()["event"] for r in hook.requests]
    assert events.count("dns_drift") == 1, events
    drift = next(r.json() for r in hook.requests if r.json()["event"] == "dns_drift")
    assert drift["service"] == "web" and "2 DNS record(s) set back" in drift["reason"]


def test_a_round_before_the_audit_is_due_reads_nothing(tmp_path: Path) -> None:
    path = write_config(tmp_path, multi_config(dns_audit="1h"))
    engine = Engine(cfg.load(path))
    try:
        assert engine.run("web", "deploy", reason="test", to="alpha").ok
        engine.check(["web"])  # the first audit
        engine.fanout().backend("ns-b").set_record(DOMAINS[0], "A", ["127.0.0.99"], 5)
        engine.check(["web"])
        assert everywhere(path)["ns-b"] == ["127.0.0.99"]  # found at the next audit only
    finally:
        engine.close()
        cleanup(path)


def test_what_a_newer_move_wrote_is_overwritten_only_by_force(rig: tuple[Path, Engine]) -> None:
    path, engine = rig
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    row = engine.store.service("web")
    # A newer move of the service (another watcher with its own state) wrote this.
    engine.store.set_host(
        "beta",
        "h-newer",
        service="web",
        generation=row.generation + 1,
        role="candidate",
        address="127.0.0.77",
        note=None,
    )
    engine.fanout().backend("ns-b").set_record(DOMAINS[0], "A", ["127.0.0.77"], 5)
    (result,) = sync(engine, ["web"])
    assert result.domains[DOMAINS[0]] == {"ns-a": "in_sync", "ns-b": "lagging"}
    assert "newer move" in result.errors[DOMAINS[0]]["ns-b"]
    assert everywhere(path)["ns-b"] == ["127.0.0.77"]
    asked: list[list[str]] = []
    (refused,) = sync(
        engine, ["web"], force=True, confirm=lambda lines: asked.append(lines) or False
    )
    assert asked and "ns-b" in asked[0][0] and everywhere(path)["ns-b"] == ["127.0.0.77"]
    assert not refused.ok()
    (forced,) = sync(engine, ["web"], force=True, confirm=lambda lines: True)
    assert forced.domains[DOMAINS[0]]["ns-b"] == "updated" and forced.ok()
    assert everywhere(path)["ns-b"] == [row.active["address"]]  # type: ignore[index]


def test_dns_sync_on_the_command_line(rig: tuple[Path, Engine]) -> None:
    path, engine = rig
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    address = engine.store.service("web").active["address"]  # type: ignore[index]
    engine.fanout().backend("alt").set_record(DOMAINS[1], "A", ["127.0.0.98"], 5)
    proc = failover("dns", "sync", "--json", config=path, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (web,) = doc["services"]
    assert web["service"] == "web"
    assert web["domains"] == [
        {"name": DOMAINS[0], "providers": {"ns-a": "in_sync", "ns-b": "in_sync"}, "errors": {}},
        {"name": DOMAINS[1], "providers": {"alt": "updated"}, "errors": {}},
    ]
    assert everywhere(path)["alt"] == [address]
    text = failover("dns", "sync", config=path, check=True).stdout
    assert f"web {DOMAINS[1]}: alt in_sync" in text


def test_txt_records_on_the_local_zones(rig: tuple[Path, Engine]) -> None:
    _path, engine = rig
    fan = engine.fanout()
    name = "_acme-challenge.www.example.test"
    writes = fan.set_txt(name, ["tok-1"], expect=[])
    assert {w.provider: w.state for w in writes} == {"ns-a": "updated", "ns-b": "updated"}
    assert fan.backend("ns-b").get_txt(name) == ["tok-1"]
    assert [w.state for w in fan.set_txt(name, ["tok-2"], expect=["other"])] == ["lagging"] * 2
    fan.set_txt(name, [], expect=["tok-1"])
    assert fan.backend("ns-a").get_txt(name) is None


def test_metrics_per_dns_provider(rig: tuple[Path, Engine]) -> None:
    from failover.watch import Metrics

    _path, engine = rig
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    engine.check(["web"])
    engine.fanout().backend("ns-b").set_record(DOMAINS[0], "A", ["127.0.0.99"], 5)
    (result,) = sync(engine, ["web"])
    assert result.repaired == 1
    metrics = Metrics(free_port(), "127.0.0.1")
    try:
        metrics.repaired(engine.fanout().take_repairs())
        metrics.providers(engine.store.provider_states())
        port = metrics.server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    finally:
        metrics.close()
    assert 'failover_dns_repairs_total{provider="ns-b"} 1.0' in text
    assert 'failover_provider_state{provider="dns:ns-a",state="in_sync"} 1.0' in text
    assert engine.fanout().take_repairs() == {}


def test_the_two_companies_example_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAILOVER_TSIG_SECRET", "c2VjcmV0")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "token")
    conf = cfg.load(ROOT / "examples" / "two-dns-companies" / "failover.yaml")
    assert conf.zones().providers_of("www.example.com") == ["own-ns", "cf"]
    assert conf.zones().providers_of("www.example.org") == ["r53-alt"]
