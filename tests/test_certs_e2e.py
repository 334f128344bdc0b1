"""Certificates follow the service (contract section 13), against real servers: Pebble
(Let's Encrypt's ACME test server) validating DNS-01 against the test BINDs, local hosts
serving HTTPS with the installed files, a dir store holding the sealed certificate."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.certs_store import CertStore
from failover.engine import Engine
from failover.engine.health import OK
from failover.engine.health import WARNING
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import host_records
from tests.helpers import pid_alive
from tests.helpers import state_dir
from tests.helpers import wait_for
from tests.helpers import write_config
from tests.pebble import Pebble
from tests.pebble import pebble_server
from tests.receivers import http_receiver
from tests.servers import bind_server
from tests.servers import free_port

pytest.importorskip("acme")

WWW = "www.example.test"
KEY = "cert-key-" + "k" * 24
HTTPS_APP = "{python} -m tests.apps.https --port {port} --bind {address}"


@dataclass
class Rig:
    tmp: Path
    binds: list[tuple[str, int, str, str, str]]
    pebbles: list[Pebble]
    monkeypatch: pytest.MonkeyPatch
    stack: contextlib.ExitStack
    engines: list[Engine] = field(default_factory=list)
    path: Path | None = None

    def write(
        self,
        authorities: list[dict[str, Any]],
        dns_servers: list[str],
        webhook: str = "",
        standby: bool = False,
    ) -> Path:
        data = base_config(
            run={"command": HTTPS_APP},
            # Verified against both authorities' roots: a probe passes on a chain they made.
            health={"http": {"scheme": "https", "ca_file": self.roots()}},
            tls={"reload": "kill -HUP $(cat app.pid)"},
        )
        fast = {"timeout": "500ms", "retry_attempts": 1, "retry_max_time": "1s"}
        data["dns"] = [
            {
                "name": f"b{i + 1}",
                "type": "rfc2136",
                "zone": "example.test",
                "ttl": 5,
                "server": server,
                "key_name": bind[2],
                "key_secret": bind[3],
                "poll_interval": "0s",
                "propagation_timeout": "5s",
                **fast,
            }
            for i, (server, bind) in enumerate(zip(dns_servers, self.binds, strict=True))
        ]
        (self.tmp / "offsite").mkdir(exist_ok=True)
        data["stores"] = [{"name": "offsite", "type": "dir", "path": str(self.tmp / "offsite")}]
        data["certificates"] = {
            "email": "ops@example.test",
            "authorities": authorities,
            "renew_before": "30d",
            "encryption_key": KEY,
        }
        if standby:
            data["services"]["web"]["policy"]["standby"] = "warm"
        if webhook:
            data["notify"] = [{"type": "webhook", "url": webhook}]
        self.path = write_config(self.tmp, data)
        return self.path

    def roots(self) -> str:
        path = self.tmp / "roots.pem"
        path.write_text("".join(p.root() for p in self.pebbles))
        return str(path)

    def engine(self) -> Engine:
        assert self.path is not None
        self.monkeypatch.setenv("FAILOVER_PROBE_NETWORKS", "127.0.0.0/8")
        engine = Engine(cfg.load(self.path))
        self.engines.append(engine)
        return engine


def authority(pebble: Pebble) -> dict[str, Any]:
    return {"url": pebble.url, "ca_file": pebble.ca_file}


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    with contextlib.ExitStack() as stack:
        b1 = stack.enter_context(bind_server(tmp_path / "b1"))
        b2 = stack.enter_context(bind_server(tmp_path / "b2"))
        # Pebble asks the second BIND: the tests cut the first off.
        dns = f"{b2[0]}:{b2[1]}"
        p1 = stack.enter_context(pebble_server(tmp_path / "p1", dns))
        # The second one's certificates last a week: less than `renew_before` (30d).
        p2 = stack.enter_context(pebble_server(tmp_path / "p2", dns, validity=7 * 86400))
        rig = Rig(tmp_path, [b1, b2], [p1, p2], monkeypatch, stack)
        try:
            yield rig
        finally:
            for engine in rig.engines:
                engine.close()
            if rig.path is not None:
                cleanup(rig.path)


def served(address: str, port: int, root: str) -> str:
    """The serial (hex) of the certificate ``address`` serves for WWW, verified
    against ``root``."""
    context = ssl.create_default_context(cadata=root)
    with (
        socket.create_connection((address, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=WWW) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    assert der is not None
    return f"{x509.load_der_x509_certificate(der).serial_number:x}"


def live(engine: Engine) -> dict[str, Any]:
    row = engine.store.service("web").active
    assert row is not None
    return row


def servers(rig: Rig) -> list[str]:
    return [f"{b[0]}:{b[1]}" for b in rig.binds]


def test_deploy_issues_and_a_failover_installs_the_same_certificate(rig: Rig) -> None:
    path = rig.write([authority(rig.pebbles[0])], servers(rig))
    engine = rig.engine()
    outcome = engine.run("web", "deploy", reason="test", to="alpha")
    assert outcome.ok, outcome.message
    cert, stores = CertStore(engine).load("web")
    assert cert is not None and stores == {"offsite": "ok"}
    assert cert.authority == rig.pebbles[0].url and cert.names == [WWW]
    first = live(engine)
    root = rig.pebbles[0].root()
    assert served(first["address"], 8080, root) == cert.serial
    host_dir = next(h for h in host_records(path) if h["id"] == first["host_id"])
    (key_file,) = state_dir(path).glob(f"local/*/hosts/{first['host_id']}/root/tls/privkey.pem")
    assert key_file.stat().st_mode & 0o777 == 0o600
    pid = (key_file.parent.parent / "app.pid").read_text()
    assert b"FAILOVER_TLS_KEY" not in Path(f"/proc/{pid}/environ").read_bytes()
    # The TXT records are gone from both DNS providers.
    fan = engine.fanout()
    assert [fan.backend(n).get_txt("_acme-challenge." + WWW) for n in ("b1", "b2")] == [None] * 2
    # No authority answers any more: a failover cannot place an order, and needs none.
    rig.pebbles[0] = rig.pebbles[1] = Pebble("https://127.0.0.1:1/dir", "", "")
    os.killpg(int(host_dir["pid"]), signal.SIGKILL)
    wait_for(lambda: not pid_alive(int(host_dir["pid"])), what="the host to die")
    verdicts: list[Any] = []

    def moved() -> bool:
        verdicts.extend(engine.check(["web"]))
        return verdicts[-1].action in ("failover", "failover_failed")

    wait_for(moved, timeout=90, what="a failover")
    assert verdicts[-1].action == "failover", verdicts[-1].message
    second = live(engine)
    assert second["host_id"] != first["host_id"]
    assert served(second["address"], 8080, root) == cert.serial
    (event,) = engine.store.events("web", limit=1, kinds=("failover",))
    provision = next(s for s in event["steps"] if s["name"] == "provision")
    assert f"certificate {cert.serial} from the stores" in provision["detail"]
    # The https probe verified the chain against the authority's root and names it.
    (verdict,) = engine.check(["web"])
    (http,) = [p for p in verdict.probes if p.kind == "http"]
    assert http.ok, http.error
    assert http.detail["serial"] == cert.serial and http.detail["not_after"] == cert.not_after


def test_first_authority_down_falls_back_to_the_second(rig: Rig) -> None:
    dead = {"url": f"https://127.0.0.1:{free_port()}/dir", "ca_file": rig.pebbles[0].ca_file}
    rig.write([dead, authority(rig.pebbles[1])], servers(rig))
    engine = rig.engine()
    outcome = engine.run("web", "deploy", reason="test", to="alpha")
    assert outcome.ok, outcome.message
    cert, _ = CertStore(engine).load("web")
    assert cert is not None and cert.authority == rig.pebbles[1].url
    (event,) = engine.store.events("web", limit=1, kinds=("deploy",))
    provision = next(s for s in event["steps"] if s["name"] == "provision")
    assert f"skipped {dead['url']}: unreachable" in provision["detail"], provision["detail"]
    assert served(live(engine)["address"], 8080, rig.pebbles[1].root()) == cert.serial


def test_one_dns_provider_cut_off_still_issues(rig: Rig) -> None:
    # b1 stops answering (its company is gone); b2, which the authority asks, takes it.
    rig.write([authority(rig.pebbles[0])], [f"127.0.0.1:{free_port()}", servers(rig)[1]])
    engine = rig.engine()
    outcome = engine.run("web", "deploy", reason="test", to="alpha")
    assert outcome.ok, outcome.message
    cert, _ = CertStore(engine).load("web")
    assert cert is not None
    assert served(live(engine)["address"], 8080, rig.pebbles[0].root()) == cert.serial


def test_secrets_stay_out_of_state_journal_and_stores(rig: Rig) -> None:
    path = rig.write([authority(rig.pebbles[0])], servers(rig))
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    cert, _ = CertStore(engine).load("web")
    assert cert is not None
    body = "".join(cert.key_pem.splitlines()[1:-1])[:40]
    account = CertStore(engine).account_key(rig.pebbles[0].url)
    assert account is not None
    for where in (rig.tmp / "offsite", state_dir(path)):
        for file in where.rglob("*"):
            # The hosts' own folders hold the key: that is where it is installed.
            if file.is_file() and "hosts" not in file.relative_to(where).parts:
                text = file.read_bytes()
                assert body.encode() not in text, file
                assert b"PRIVATE KEY" not in text, file
                assert account[20:60].encode() not in text, file
    doc = engine.store.events("web", limit=5)
    assert body not in str(doc) and "PRIVATE KEY" not in str(doc)
    listed = failover_json("certs", config=path)
    (row,) = listed["certificates"]
    assert row["serial"] == cert.serial and row["stores"] == {"offsite": "ok"}
    assert row["authority"] == rig.pebbles[0].url and "issued" not in row
    status = failover_json("status", config=path)
    (web,) = status["services"]
    assert web["certificate"]["serial"] == cert.serial
    assert web["certificate"]["not_after"] == cert.not_after
    from failover.certs_renew import certificate_status
    from failover.watch import Metrics

    metrics = Metrics(free_port(), "127.0.0.1")
    try:
        metrics.certificate("web", certificate_status(engine, "web"))
        port = metrics.server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            scraped = answer.read().decode()
    finally:
        metrics.close()
    series = 'failover_certificate_expiry_timestamp_seconds{service="web"} '
    (line,) = [x for x in scraped.splitlines() if x.startswith(series)]
    assert float(line.removeprefix(series)) == cert.not_after and body not in scraped
    outputs = [failover(*a, config=path) for a in (["certs"], ["status"], ["history", "web"])]
    for proc in outputs:
        assert body not in proc.stdout + proc.stderr and "PRIVATE KEY" not in proc.stdout


class Later:
    """The certificate round's clock (only that module's ``time``), ``ahead`` seconds
    ahead: a certificate is due only after two thirds of its life, Pebble issues it
    now, and a test cannot wait days nor set the machine's clock (root, and every
    other process on the machine would see it)."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def time(self) -> float:
        return time.time() + self.ahead

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_check_renews_a_short_lived_certificate_and_reloads_the_live_host(rig: Rig) -> None:
    from failover import certs_renew

    hook = rig.stack.enter_context(http_receiver())
    rig.write([authority(rig.pebbles[1])], servers(rig), webhook=hook.url)
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    old, _ = CertStore(engine).load("web")
    assert old is not None
    address = live(engine)["address"]
    root = rig.pebbles[1].root()
    assert served(address, 8080, root) == old.serial
    # A week-long certificate under a 30-day `renew_before` is not due when issued (nor
    # WARNING): it is renewed with a third of its life left, not ordered every round.
    (verdict,) = engine.check(["web"])
    assert verdict.exit_code == OK, verdict.message
    assert CertStore(engine).load("web")[0].serial == old.serial  # type: ignore[union-attr]
    # Five and a half days later it is due. Another watcher holds the certificate
    # lock: this one leaves the renewal to it.
    rig.monkeypatch.setattr(certs_renew, "time", Later(5.5 * 86400))
    other = rig.engine()
    held = other.store.acquire("certificate:web", 60)
    engine.check(["web"])
    assert CertStore(engine).load("web")[0].serial == old.serial  # type: ignore[union-attr]
    other.store.release(held)  # type: ignore[arg-type]
    engine = rig.engine()
    engine.check(["web"])
    new, stores = CertStore(engine).load("web")
    assert new is not None and stores == {"offsite": "ok"}
    assert new.serial != old.serial and new.not_after >= old.not_after
    # The service loads its files at start only: serving the new serial means `reload` ran.
    wait_for(lambda: served(address, 8080, root) == new.serial, what="the renewed certificate")
    # Six and a half days in (the other watcher renewing), what is left is less than
    # half of the window: WARNING.
    rig.monkeypatch.setattr(certs_renew, "time", Later(6.5 * 86400))
    held = other.store.acquire("certificate:web", 60)
    (verdict,) = rig.engine().check(["web"])
    other.store.release(held)  # type: ignore[arg-type]
    assert verdict.exit_code == WARNING and f"certificate {new.serial} expires" in verdict.message
    rig.monkeypatch.setattr(certs_renew, "time", time)
    engine.check(["web"])  # the renewed one is not due: no order
    assert engine.notifier.drain(30)
    said = [r.json() for r in hook.requests if r.json().get("event") == "certificate_renewed"]
    assert [(n["serial"], n["status"]) for n in said] == [(new.serial, "succeeded")]
    assert all(b"PRIVATE KEY" not in r.body for r in hook.requests)
    assert CertStore(engine).load("web")[0].serial == new.serial  # type: ignore[union-attr]
    # A `check` from cron is a new process every minute: it does not order again either.
    rig.engine().check(["web"])
    assert CertStore(engine).load("web")[0].serial == new.serial  # type: ignore[union-attr]


def test_a_move_without_a_stored_certificate_fails_and_issues_nothing(rig: Rig) -> None:
    rig.write([authority(rig.pebbles[0])], servers(rig))
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    first = live(engine)
    for file in (rig.tmp / "offsite" / "certs" / "web").iterdir():
        file.unlink()
    outcome = engine.run("web", "move", reason="test", to="beta")
    assert not outcome.ok
    assert "no store gives its certificate (offsite: missing)" in outcome.message
    assert live(engine)["host_id"] == first["host_id"]
    assert not (rig.tmp / "offsite" / "certs" / "web").joinpath("certificate.json").exists()


def test_check_warns_when_the_live_host_serves_another_certificate(rig: Rig) -> None:
    from failover.certs import issue

    rig.write([authority(rig.pebbles[0])], servers(rig))
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    (verdict,) = engine.check(["web"])
    assert verdict.exit_code == OK, verdict.message
    served_serial = CertStore(engine).load("web")[0].serial  # type: ignore[union-attr]
    stored = issue(engine, "web").certificate  # stored, never installed
    (verdict,) = rig.engine().check(["web"])
    assert verdict.exit_code == WARNING
    expected = f"the live host serves certificate {served_serial}, not the stored {stored.serial}"
    assert expected in verdict.message


def test_an_authority_that_refuses_is_skipped_and_eab_is_sent(rig: Rig) -> None:
    """An authority that requires external account binding refuses an account without
    it (skipped, said why); given the binding it issues."""
    hmac_key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
    dns = servers(rig)[1]
    eab = rig.stack.enter_context(pebble_server(rig.tmp / "eab", dns, eab={"kid-1": hmac_key}))
    rig.pebbles.append(eab)
    rig.write([authority(eab), authority(rig.pebbles[0])], servers(rig))
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    cert, _ = CertStore(engine).load("web")
    assert cert is not None and cert.authority == rig.pebbles[0].url
    (event,) = engine.store.events("web", limit=1, kinds=("deploy",))
    provision = next(s for s in event["steps"] if s["name"] == "provision")
    assert f"skipped {eab.url}: refused (externalAccountRequired)" in provision["detail"]
    bound = {**authority(eab), "eab_kid": "kid-1", "eab_hmac_key": hmac_key}
    rig.write([bound], servers(rig))
    listed = failover_json("certs", "--renew", config=rig.path)  # type: ignore[arg-type]
    (row,) = listed["certificates"]
    assert row["authority"] == eab.url and row["serial"] != cert.serial, row
    assert hmac_key not in json.dumps(listed)


def test_the_warm_standby_gets_the_certificate_and_its_renewal(rig: Rig) -> None:
    from failover.certs_cli import one
    from failover.certs_store import describe
    from failover.engine import standby

    path = rig.write([authority(rig.pebbles[0])], servers(rig), standby=True)
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    cert, _ = CertStore(engine).load("web")
    assert cert is not None

    def spare_serial() -> str | None:
        engine.check(["web"])
        spare = standby.current(engine, "web")
        if spare is None:
            return None
        found = list(state_dir(path).glob(f"local/*/hosts/{spare['host_id']}/root/tls/*"))
        chain = [f for f in found if f.name == "fullchain.pem"]
        return describe(chain[0].read_text())[0] if chain else None

    wait_for(lambda: spare_serial() == cert.serial, timeout=90, what="a standby with it")
    row = one(engine, "web", True)
    assert row["serial"] != cert.serial and row["installed"].count("installed on") == 2, row
    assert spare_serial() == row["serial"]


def test_a_drill_host_serves_the_stored_certificate(rig: Rig) -> None:
    rig.write([authority(rig.pebbles[0])], servers(rig))
    engine = rig.engine()
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    cert, _ = CertStore(engine).load("web")
    assert cert is not None
    outcome = engine.run("web", "drill", reason="test", to="beta")
    assert outcome.ok, outcome.message
    (event,) = engine.store.events("web", limit=1, kinds=("drill",))
    steps = {s["name"]: s["detail"] for s in event["steps"]}
    assert f"certificate {cert.serial} from the stores" in steps["provision"]
    assert CertStore(engine).load("web")[0].serial == cert.serial  # type: ignore[union-attr]
