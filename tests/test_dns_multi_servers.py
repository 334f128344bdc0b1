"""The zone at several DNS companies, against real servers (contract section 12).

One config: two BIND servers (two "companies", each with its own TSIG key) and the
Cloudflare double serve example.test; Route 53 on moto serves example.org, the
alternate domain's zone. Every answer is asked of the provider itself: BIND over DNS
(no resolver), Cloudflare and Route 53 through their APIs, past our backends.

A provider "refusing us" is its server rejecting our key: the config's secret for it is
switched to another one, which the server answers with BADSIG, exactly as it answers a
key it has revoked. A provider that "times out" is its server address pointing at a
port where nothing listens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover import config as cfg
from failover.engine import Engine
from failover.engine.health import OK
from failover.engine.health import WARNING
from failover.probes import probe_target
from providers.dns.rfc2136 import query_authoritative
from tests.doubles.moto_server import MotoServer
from tests.doubles.moto_server import require_moto
from tests.doubles.moto_server import use_test_credentials
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import failover
from tests.helpers import host_records
from tests.helpers import pid_alive
from tests.helpers import wait_for
from tests.helpers import write_config
from tests.receivers import http_receiver
from tests.servers import bind_server
from tests.servers import free_port

WWW, ALT = "www.example.test", "www.example.org"
WRONG = base64.b64encode(b"a key no server of this test knows").decode()


@dataclass
class Rig:
    path: Path
    servers: dict[str, str]  # b1/b2 -> host:port
    keys: dict[str, str]
    cf: Any
    cf_token: str
    moto: MotoServer
    zone_id: str
    monkeypatch: pytest.MonkeyPatch
    engines: list[Engine] = field(default_factory=list)

    def env(self, **changes: str) -> dict[str, str]:
        env = {
            "B1_SERVER": self.servers["b1"],
            "B2_SERVER": self.servers["b2"],
            "B1_KEY": self.keys["b1"],
            "B2_KEY": self.keys["b2"],
            "CF_TOKEN": self.cf_token,
        }
        env.update(changes)
        return env

    def engine(self, **changes: str) -> Engine:
        """A fresh engine on the config as the environment ``changes`` make it."""
        for key, value in self.env(**changes).items():
            self.monkeypatch.setenv(key, value)
        engine = Engine(cfg.load(self.path))
        self.engines.append(engine)
        return engine

    def cli(self, *args: str, **changes: str) -> Any:
        return failover(*args, config=self.path, env=self.env(**changes))

    def served(self) -> dict[str, list[str]]:
        """What each provider itself answers for the service's names."""
        import boto3

        out = {n: query_authoritative(s, WWW, "A", 2)[0] for n, s in self.servers.items()}
        out["cf"] = sorted(r["content"] for r in self.cf.records(WWW, "A"))
        r53 = boto3.client("route53", endpoint_url=self.moto.url, region_name="us-east-1")
        sets = r53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]
        out["r53"] = next(
            (
                sorted(r["Value"] for r in s["ResourceRecords"])
                for s in sets
                if s["Name"] == ALT + "." and s["Type"] == "A"
            ),
            [],
        )
        return out


def config_for(cf_url: str, moto_url: str, zone_id: str) -> dict[str, Any]:
    data = base_config(domains=[WWW, ALT], port=free_port())
    del data["services"]["web"]["domain"]
    fast = {"timeout": "500ms", "retry_attempts": 2, "retry_max_time": "2s"}
    bind = {"type": "rfc2136", "zone": "example.test", "ttl": 30, "key_name": "failover-test-key"}
    bind.update(fast, poll_interval="0s", propagation_timeout="5s")
    data["dns_audit"] = "1s"
    data["dns"] = [
        {"name": "b1", **bind, "server": "${B1_SERVER}", "key_secret": "${B1_KEY}"},
        {
            "name": "b2",
            **bind,
            "server": "${B2_SERVER}",
            "key_secret": "${B2_KEY}",
            "vendor": "hetzner",
        },
        {
            "name": "cf",
            "type": "cloudflare",
            "zone": "example.test",
            "ttl": 60,
            "api_token": "${CF_TOKEN}",
            "endpoint": cf_url,
            **fast,
        },
        {
            "name": "r53",
            "type": "route53",
            "zone": "example.org",
            "zone_id": zone_id,
            "endpoint": moto_url,
            "retry_attempts": 2,
            "retry_max_time": "2s",
            "change_timeout": "5s",
        },
    ]
    return data


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    return require_moto()


@pytest.fixture
def rig(tmp_path: Path, moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    pytest.importorskip("cloudflare")
    import boto3

    from tests.doubles.cloudflare import CloudflareDouble

    use_test_credentials(monkeypatch)
    moto.set_auth(False)
    r53 = boto3.client("route53", endpoint_url=moto.url, region_name="us-east-1")
    made = r53.create_hosted_zone(Name="example.org", CallerReference=str(uuid.uuid4()))
    zone_id = str(made["HostedZone"]["Id"]).split("/")[-1]
    token = "cf-multi-" + os.urandom(8).hex()
    with contextlib.ExitStack() as stack:
        b1 = stack.enter_context(bind_server(tmp_path / "b1"))
        b2 = stack.enter_context(bind_server(tmp_path / "b2"))
        double = stack.enter_context(CloudflareDouble(token=token))
        double.add_zone("example.test")
        double.add_record("example.test", WWW, "A", "127.77.0.1")
        path = write_config(tmp_path, config_for(double.base_url, moto.url, zone_id))
        rig = Rig(
            path,
            {"b1": f"{b1[0]}:{b1[1]}", "b2": f"{b2[0]}:{b2[1]}"},
            {"b1": b1[3], "b2": b2[3]},
            double,
            token,
            moto,
            zone_id,
            monkeypatch,
        )
        try:
            yield rig
        finally:
            for engine in rig.engines:
                engine.close()
            cleanup(path)


def active(engine: Engine) -> dict[str, Any]:
    row = engine.store.service("web").active
    assert row is not None
    return row


def kill_live(engine: Engine) -> str:
    """The live host dies (its company cut it off); its address."""
    live = active(engine)
    for host in host_records(Path(str(engine.config.path))):
        if host["id"] == live["host_id"]:
            os.killpg(int(host["pid"]), signal.SIGKILL)
            wait_for(lambda h=host: not pid_alive(int(h["pid"])), what="host to die")
    return str(live["address"])


def fail_over(engine: Engine) -> Any:
    moved: list[Any] = []

    def round_moved() -> bool:
        (verdict,) = engine.check(["web"])
        moved.append(verdict)
        return verdict.action in ("failover", "failover_failed")

    wait_for(round_moved, timeout=60, what="a failover")
    return moved[-1]


def cutover_detail(engine: Engine) -> tuple[str, dict[str, Any]]:
    (event,) = engine.store.events("web", limit=1, kinds=("failover", "move"))
    step = next(s for s in event["steps"] if s["name"] == "cutover")
    return step["detail"], event


# --------------------------------------------------------------------------- tests


def test_every_provider_answers_the_new_address_after_a_cutoff(rig: Rig) -> None:
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    first = active(engine)["address"]
    assert rig.served() == {p: [first] for p in ("b1", "b2", "cf", "r53")}
    kill_live(engine)
    verdict = fail_over(engine)
    assert verdict.action == "failover", verdict.message
    new = active(engine)["address"]
    assert new != first
    assert rig.served() == {p: [new] for p in ("b1", "b2", "cf", "r53")}
    detail, event = cutover_detail(engine)
    assert "b1 updated; b2 updated; cf updated; r53 updated" in detail, detail
    assert event["data"]["dns"][ALT] == {"r53": "updated"}


def test_a_provider_refusing_our_key_is_blocked_then_brought_back(rig: Rig) -> None:
    with http_receiver() as hook:
        data = yaml.safe_load(rig.path.read_text())
        write_config(rig.path.parent, {**data, "notify": [{"type": "webhook", "url": hook.url}]})
        blocked_then_brought_back(rig)
        for engine in rig.engines:
            assert engine.notifier.drain(30)
    events = [r.json() for r in hook.requests]
    blocked = [e for e in events if e["event"] == "dns_provider_blocked"]
    assert len(blocked) == 1 and blocked[0]["reason"].startswith("b2: "), events


def blocked_then_brought_back(rig: Rig) -> None:
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    old = active(engine)["address"]
    engine = rig.engine(B2_KEY=WRONG)  # b2 revoked our key
    kill_live(engine)
    verdict = fail_over(engine)
    assert verdict.action == "failover", verdict.message
    new = active(engine)["address"]
    assert rig.served() == {"b1": [new], "b2": [old], "cf": [new], "r53": [new]}
    detail, event = cutover_detail(engine)
    assert "b2 blocked" in detail and event["data"]["dns"][WWW]["b2"] == "blocked"
    status = engine.status(["web"])[0]
    assert status["dns"]["providers"]["b2"]["state"] == "blocked"
    assert status["dns"]["providers"]["b1"] == {"values": [new], "state": "in_sync"}
    (warned,) = engine.check(["web"])
    assert warned.exit_code == WARNING, warned.message
    assert "b2 refuses us" in warned.message and "registrar" in warned.message
    (warned,) = engine.check(["web"])  # retried every round, still refused
    assert warned.exit_code == WARNING and rig.served()["b2"] == [old]
    # Its key accepted again: the next round, without any command, brings it in line.
    engine = rig.engine()
    (healed,) = engine.check(["web"])
    assert rig.served() == {p: [new] for p in ("b1", "b2", "cf", "r53")}
    assert healed.exit_code == OK, healed.message
    assert engine.store.provider_states()["dns:b2"]["state"] == "in_sync"


def test_dns_sync_and_check_on_the_command_line(rig: Rig) -> None:
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    live = active(engine)["address"]
    engine.check(["web"])
    # Somebody changed b2 by hand; then b2 refuses our key.
    engine.fanout().backend("b2").set_record(WWW, "A", ["127.0.0.99"], 30)
    refused = rig.cli("dns", "sync", "web", "--json", B2_KEY=WRONG)
    assert refused.returncode == 1, refused.stderr
    (doc,) = json.loads(refused.stdout)["services"]
    www = next(d for d in doc["domains"] if d["name"] == WWW)
    assert www["providers"] == {"b1": "in_sync", "b2": "blocked", "cf": "in_sync"}
    assert "BADSIG" in www["errors"]["b2"] or "signature" in www["errors"]["b2"]
    check = rig.cli("check", B2_KEY=WRONG)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "b2 refuses us" in check.stdout and "example.test's delegation" in check.stdout
    synced = rig.cli("dns", "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    (doc,) = json.loads(synced.stdout)["services"]
    www = next(d for d in doc["domains"] if d["name"] == WWW)
    assert www["providers"] == {"b1": "in_sync", "b2": "updated", "cf": "in_sync"}
    assert rig.served() == {p: [live] for p in ("b1", "b2", "cf", "r53")}
    assert rig.cli("check").returncode == 0


def test_the_audit_sets_back_a_record_changed_by_hand(rig: Rig) -> None:
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    live = active(engine)["address"]
    engine.check(["web"])
    rig.cf.add_record("example.test", "api.example.test", "A", "127.0.0.5")  # not ours
    for record in rig.cf.records(WWW, "A"):
        rig.cf.state.records[record["id"]]["content"] = "127.0.0.98"
    engine.fanout().backend("b1").set_record(WWW, "A", ["127.0.0.99"], 30)
    wait_for(lambda: engine.check(["web"]) and rig.served()["cf"] == [live], what="the audit")
    assert rig.served() == {p: [live] for p in ("b1", "b2", "cf", "r53")}
    assert [r["content"] for r in rig.cf.records("api.example.test", "A")] == ["127.0.0.5"]


def test_every_provider_refusing_leaves_the_old_host_in_dns(rig: Rig) -> None:
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    old = active(engine)["address"]
    engine = rig.engine(B1_KEY=WRONG, B2_KEY=WRONG, CF_TOKEN="cf-revoked")
    outcome = engine.run("web", "move", reason="planned", to="beta")
    assert not outcome.ok
    assert "every DNS provider refuses us" in outcome.message, outcome.message
    # Route 53 (the other zone) took the new address; it was set back.
    assert "set back: r53 www.example.org updated" in outcome.message, outcome.message
    assert rig.served() == {p: [old] for p in ("b1", "b2", "cf", "r53")}
    assert active(engine)["address"] == old
    assert engine.healthy("web", old)
    assert [h["provider"] for h in host_records(rig.path) if pid_alive(int(h["pid"]))] == ["alpha"]


def test_a_move_cut_after_cutover_with_a_provider_lagging_is_finished(rig: Rig) -> None:
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    old = active(engine)["address"]
    dead = f"127.0.0.1:{free_port()}"  # b2 stops answering
    cut = rig.cli(
        "move", "--to", "beta", "--yes", B2_SERVER=dead, FAILOVER_FAILPOINT="after:cutover"
    )
    assert cut.returncode == 137, cut.stdout + cut.stderr
    served = rig.served()
    new = served["b1"][0]
    assert new != old and served == {"b1": [new], "b2": [old], "cf": [new], "r53": [new]}
    detail, event = cutover_detail(engine)
    assert event["status"] == "in_progress"
    assert event["data"]["dns"][WWW]["b2"].startswith("lagging: "), event["data"]["dns"]
    assert "b2 lagging" in detail
    # b2 answers again; the next check finishes the run and brings b2 in line.
    assert rig.cli("check").returncode in (0, 1)
    (event,) = engine.store.events("web", limit=1, kinds=("move",))
    assert event["status"] == "succeeded"
    assert rig.served() == {p: [new] for p in ("b1", "b2", "cf", "r53")}


def test_doctor_names_a_delegation_that_leaves_out_a_provider(rig: Rig) -> None:
    # Cloudflare's apex NS set names only its own servers; the BINDs' only theirs.
    rig.cf.add_record("example.test", "example.test", "NS", "ada.ns.cloudflare.com")
    proc = rig.cli("doctor", "--json")
    doc = json.loads(proc.stdout)
    found = {p["name"]: p["ns"] for p in doc["dns"]["providers"]}
    assert found["b1"] == ["ns1.example.test"] and found["cf"] == ["ada.ns.cloudflare.com"]
    assert any("names no server of cf" in w for w in doc["warnings"]), doc["warnings"]
    assert not any("every DNS provider of example.test" in w for w in doc["warnings"])
    assert any("every DNS provider of example.org is run by aws" in w for w in doc["warnings"])


def test_txt_records_on_every_backend_with_conditions(rig: Rig) -> None:
    """What an ACME DNS-01 challenge needs (section 13): a TXT set written on every
    provider of the zone, read back as written, refused when somebody else holds
    another value, and removed."""
    fan = rig.engine().fanout()
    www, alt = "_acme-challenge." + WWW, "_acme-challenge." + ALT
    writes = fan.set_txt(www, ["tok-1"], expect=[]) + fan.set_txt(alt, ["tok-2"], expect=[])
    assert {w.provider: w.state for w in writes} == {
        "b1": "updated",
        "b2": "updated",
        "cf": "updated",
        "r53": "updated",
    }
    for name in ("b1", "b2", "cf"):
        assert fan.backend(name).get_txt(www) == ["tok-1"], name
    assert fan.backend("r53").get_txt(alt) == ["tok-2"]
    assert query_authoritative(rig.servers["b1"], www, "TXT", 2)[0] == ['"tok-1"']
    # Somebody else's token on b2: our conditional change leaves it there.
    fan.backend("b2").set_txt(www, ["theirs"], 30)
    again = fan.set_txt(www, ["tok-3"], expect=["tok-1"])
    assert {w.provider: w.state for w in again} == {
        "b1": "updated",
        "b2": "lagging",
        "cf": "updated",
    }
    assert fan.backend("b2").get_txt(www) == ["theirs"]
    removed = fan.set_txt(www, [], expect=["tok-3"]) + fan.set_txt(alt, [], expect=["tok-2"])
    assert {w.provider: w.state for w in removed if w.provider != "b2"} == {
        "b1": "updated",
        "cf": "updated",
        "r53": "updated",
    }
    for name in ("b1", "cf"):
        assert fan.backend(name).get_txt(www) is None, name
    assert fan.backend("r53").get_txt(alt) is None


def test_the_dns_probe_asks_every_provider(rig: Rig) -> None:
    data = yaml.safe_load(rig.path.read_text())
    data["services"]["web"]["health"]["dns"] = {}
    write_config(rig.path.parent, data)
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    live = active(engine)["address"]

    def dns_probe() -> Any:
        probes = asyncio.run(probe_target(engine.target("web", live)))
        return next(p for p in probes if p.kind == "dns")

    assert dns_probe().ok
    # One provider of example.test serving another address: the name still resolves.
    engine.fanout().backend("b2").set_record(WWW, "A", ["127.0.0.99"], 30)
    assert dns_probe().ok
    # The alternate domain's only provider serving another address: nobody reaches it.
    engine.fanout().backend("r53").set_record(ALT, "A", ["127.0.0.98"], 30)
    failed = dns_probe()
    assert not failed.ok
    assert f"{ALT}: no DNS provider answers {live} (r53: 127.0.0.98)" in failed.error
