"""Each kind of notification target against a real local receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from failover import config as cfg
from failover.notify import EVENTS
from failover.notify import DeliveryFailed
from failover.notify import Notice
from failover.notify import NotifyTarget
from failover.notify import send
from failover.notify import signature
from tests.helpers import base_config
from tests.helpers import write_config
from tests.receivers import http_receiver
from tests.receivers import smtp_server

ADAPTER: TypeAdapter[Any] = TypeAdapter(NotifyTarget)


def target(**fields: Any) -> Any:
    return ADAPTER.validate_python(fields)


def notice(event: str = "failover", **fields: Any) -> Notice:
    base: dict[str, Any] = {
        "event": event,
        "service": "web",
        "status": "succeeded",
        "reason": "down on alpha: http: connection refused",
        "at": "2026-12-01T10:00:00Z",
        "generation": 2,
        "origin": {"provider": "alpha", "host_id": "a-1", "address": "127.0.0.2"},
        "to": {"provider": "beta", "host_id": "b-1", "address": "127.0.0.3"},
        "key": "failover:web:run-7",
        "incident": None,
    }
    return Notice(**{**base, **fields})


def test_webhook_body_is_the_contract_and_the_signature_verifies() -> None:
    with http_receiver() as rx:
        hook = target(type="webhook", url=rx.url + "/hook", secret="shared-secret-1")
        assert send(hook, notice()) == "HTTP 200"
    (req,) = rx.requests
    body = req.json()
    assert set(body) == {"event", "service", "status", "from", "to", "reason", "generation", "at"}
    assert body["event"] == "failover" and body["to"]["provider"] == "beta"
    # What a receiver does: recompute the HMAC over the raw body, compare in constant time.
    expected = "sha256=" + hmac.new(b"shared-secret-1", req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["X-Failover-Signature"], expected)
    assert signature("another-secret", req.body) != expected


def test_webhook_without_secret_sends_no_signature() -> None:
    with http_receiver() as rx:
        send(target(type="webhook", url=rx.url), notice())
    assert "X-Failover-Signature" not in rx.requests[0].headers


def test_a_500_is_retried_a_bounded_number_of_times_then_fails() -> None:
    with http_receiver("fail") as rx:
        hook = target(type="webhook", url=rx.url, retries=2, timeout="2s")
        with pytest.raises(DeliveryFailed, match="HTTP 500"):
            send(hook, notice())
    assert len(rx.requests) == 3  # the first try and two retries, then it stops


def test_a_4xx_is_not_retried_within_the_round() -> None:
    import http.server
    import threading

    hits: list[str] = []

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/gone"
        with pytest.raises(DeliveryFailed, match="HTTP 404"):
            send(target(type="webhook", url=url, retries=3), notice())
    finally:
        server.shutdown()
        server.server_close()
    assert hits == ["/gone"]  # a refusal is final: no retry within the round


def test_slack_gets_a_readable_line_with_from_to_and_reason() -> None:
    with http_receiver() as rx:
        send(target(type="slack", url=rx.url + "/services/T/B/X"), notice())
    text = rx.requests[0].json()["text"]
    assert "web" in text and "from alpha (127.0.0.2) to beta (127.0.0.3)" in text
    assert "connection refused" in text


def test_pagerduty_trigger_then_resolve_share_one_dedup_key() -> None:
    with http_receiver() as rx:
        pd = target(type="pagerduty", routing_key="R0UTING-KEY", url=rx.url + "/v2/enqueue")
        trigger = notice("failover_failed", status="failed", incident="web-incident-1")
        assert send(pd, trigger) == "HTTP 202"
        resolve = notice("resolve", status="resolved", incident="web-incident-1", action="resolve")
        send(pd, resolve)
    first, second = (r.json() for r in rx.requests)
    assert first["event_action"] == "trigger" and first["routing_key"] == "R0UTING-KEY"
    assert first["payload"]["severity"] == "critical" and first["payload"]["summary"]
    assert second == {
        "routing_key": "R0UTING-KEY",
        "event_action": "resolve",
        "dedup_key": "web-incident-1",
    }
    assert first["dedup_key"] == second["dedup_key"]


def test_email_over_starttls_with_login(tmp_path: Path) -> None:
    pytest.importorskip("aiosmtpd", reason="pip install aiosmtpd (the test extra)")
    with smtp_server(tmp_path) as box:
        mail = target(
            type="email",
            server=f"127.0.0.1:{box.port}",
            **{"from": "failover@example.test"},
            to=["ops@example.test", "oncall@example.test"],
            username="ops",
            password="s3cret-pass",
            ca_file=str(box.ca),
        )
        assert "accepted" in send(mail, notice())
    (message,) = box.messages
    assert message["tls"] is True and box.logins == ["ops"]
    assert message["to"] == ["ops@example.test", "oncall@example.test"]
    assert "failover succeeded" in message["data"] and '"generation": 2' in message["data"]


def test_email_refuses_a_server_whose_certificate_it_cannot_verify(tmp_path: Path) -> None:
    pytest.importorskip("aiosmtpd", reason="pip install aiosmtpd (the test extra)")
    with smtp_server(tmp_path) as box:
        mail = target(
            type="email",
            server=f"127.0.0.1:{box.port}",
            **{"from": "failover@example.test"},
            to=["ops@example.test"],
            username="ops",
            password="s3cret-pass",
            retries=0,
        )
        with pytest.raises(DeliveryFailed, match="STARTTLS"):
            send(mail, notice())
    assert box.messages == [] and box.logins == []


def test_apprise_url_through_the_apprise_library() -> None:
    pytest.importorskip("apprise", reason="pip install 'failover[apprise]'")
    with http_receiver() as rx:
        send(target(type="apprise", urls=[f"json://127.0.0.1:{rx.port}/apprise"]), notice())
    (req,) = rx.requests
    assert req.path == "/apprise" and "failover" in json.dumps(req.json())


def test_notify_config_errors_name_their_path(tmp_path: Path) -> None:
    data = base_config()
    data["notify"] = [
        {"type": "webhook", "url": "ftp://x"},
        {"type": "email", "server": "smtp", "from": "a@b", "to": ["c@d"]},
        {"type": "slak", "url": "http://127.0.0.1:9/"},
    ]
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(write_config(tmp_path, data))
    text = "\n".join(err.value.problems)
    assert "notify[0].url: must be an http:// or https:// URL" in text
    assert "notify[1].server: 'smtp' is not host:port" in text
    assert "notify[2].type: required, one of: webhook, slack, pagerduty, email, apprise" in text


def test_notify_defaults(tmp_path: Path) -> None:
    data = base_config()
    data["notify"] = [
        {"type": "webhook", "url": "http://127.0.0.1:9/x"},
        {"type": "pagerduty", "routing_key": "abcd"},
    ]
    conf = cfg.load(write_config(tmp_path, data))
    hook, pd = conf.notify
    assert len(hook.events) == len(EVENTS)  # service_down, resolved and the DNS ones included
    assert pd.events == [
        "failover_failed",
        "circuit_breaker",
        "quorum_lost",
        "backup_stale",
        "service_down",
    ]


def test_the_store_claims_a_delivery_once_and_bounds_its_rounds(tmp_path: Path) -> None:
    from failover.state import SqliteStore

    store = SqliteStore(tmp_path)
    other = SqliteStore(tmp_path)  # a second process's connection, as a later `check`
    try:
        fields: dict[str, Any] = {
            "event": "failover",
            "service": "web",
            "body": {"event": "failover"},
            "incident": None,
            "retry_rounds": 1,
        }
        first = store.claim_delivery("k1", "hook", **fields)
        assert first is not None and first["rounds"] == 1 and first["status"] == "sending"
        assert other.claim_delivery("k1", "hook", **fields) is None  # in flight
        store.finish_delivery("k1", "hook", "failed", "HTTP 500")
        again = other.claim_delivery("k1", "hook", **fields)
        assert again is not None and again["rounds"] == 2
        other.finish_delivery("k1", "hook", "failed", "HTTP 500")
        assert store.claim_delivery("k1", "hook", **fields) is None  # rounds used up
        assert store.claim_delivery("k2", "hook", **fields) is not None
        store.finish_delivery("k2", "hook", "sent", "HTTP 200")
        assert other.claim_delivery("k2", "hook", **fields) is None  # never twice
        assert [r["key"] for r in store.deliveries(status="sent")] == ["k2"]
        assert store.deliveries(status="failed")[0]["body"] == {"event": "failover"}
    finally:
        store.close()
        other.close()
