"""Probes against real servers on loopback."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from failover.config import DnsProbe
from failover.config import HealthConfig
from failover.config import HttpProbe
from failover.config import TcpProbe
from failover.config import TlsProbe
from failover.probes import Target
from failover.probes import probe_all
from failover.probes import probe_target
from failover.probes import reach

SEEN_HOSTS: list[str] = []


class Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops the SYNs of a larger concurrent round.
    request_queue_size = 128
    daemon_threads = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        SEEN_HOSTS.append(self.headers.get("Host", ""))
        if self.path == "/hang":
            threading.Event().wait(5)
        status = 503 if self.path == "/down" else 200
        body = b"hello from the app"
        self.send_response(status)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", httpd.server_address[1]
    httpd.shutdown()


def target(address: str, port: int, **health: object) -> Target:
    return Target(
        "web", address, port, "www.example.test", HealthConfig(interval=1, timeout=0.5, **health)
    )  # type: ignore[arg-type]


def run(t: Target) -> list[object]:
    return asyncio.run(probe_target(t))  # type: ignore[arg-type]


def test_http_status_body_and_host_header(server: tuple[str, int]) -> None:
    (ok,) = run(target(*server, http=HttpProbe(path="/", body="from the")))
    assert ok.ok, ok.error  # type: ignore[attr-defined]
    assert SEEN_HOSTS[-1] == "www.example.test"
    (bad,) = run(target(*server, http=HttpProbe(path="/down")))
    assert not bad.ok and "HTTP 503" in bad.error  # type: ignore[attr-defined]
    (accepted,) = run(target(*server, http=HttpProbe(path="/down", expect_status=[503])))
    assert accepted.ok  # type: ignore[attr-defined]
    (nomatch,) = run(target(*server, http=HttpProbe(body="^nope$")))
    assert not nomatch.ok and "does not match" in nomatch.error  # type: ignore[attr-defined]
    (chunked,) = run(target(*server, http=HttpProbe(path="/chunked", body="hello world")))
    assert chunked.ok, chunked.error  # type: ignore[attr-defined]


def test_timeout_and_refused(server: tuple[str, int]) -> None:
    (hung,) = run(target(*server, http=HttpProbe(path="/hang")))
    assert not hung.ok and "no answer within 0.5s" in hung.error  # type: ignore[attr-defined]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    (refused,) = run(target("127.0.0.1", free, tcp=TcpProbe()))
    assert not refused.ok and "refused" in refused.error  # type: ignore[attr-defined]


def test_all_targets_of_a_round_run_concurrently(server: tuple[str, int]) -> None:
    # Ten hung targets and one good one: every result comes back, each bounded by its own
    # timeout (structure, not wall-clock: gather returns all eleven).
    targets = [target(*server, http=HttpProbe(path="/hang")) for _ in range(10)]
    targets.append(target(*server, http=HttpProbe()))
    results = asyncio.run(probe_all(targets))
    assert [r[0].ok for r in results] == [False] * 10 + [True]


def test_outside_allowed_networks_is_not_probed(
    server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAILOVER_PROBE_NETWORKS", "127.0.0.0/8")
    (res,) = run(target("192.0.2.1", 80, tcp=TcpProbe()))
    assert not res.ok and "outside FAILOVER_PROBE_NETWORKS" in res.error  # type: ignore[attr-defined]


def test_dns_probe_with_resolver(server: tuple[str, int]) -> None:
    t = target(*server, dns=DnsProbe())
    t.resolver = lambda: (["127.0.0.1"], 30)
    (ok,) = run(t)
    assert ok.ok  # type: ignore[attr-defined]
    t.resolver = lambda: (["127.0.0.2"], 30)
    (bad,) = run(t)
    assert not bad.ok and "answers 127.0.0.2" in bad.error  # type: ignore[attr-defined]


def _cert(tmp_path: Path, days: int) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    return ctx


@pytest.mark.parametrize(("days", "ok"), [(90, True), (3, False)])
def test_tls_days_before_expiry(tmp_path: Path, days: int, ok: bool) -> None:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.socket = _cert(tmp_path, days).wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        (res,) = run(target("127.0.0.1", port, tls=TlsProbe(min_days=14)))
        assert res.ok is ok, res.error  # type: ignore[attr-defined]
        if not ok:
            assert "expires in" in res.error  # type: ignore[attr-defined]
        (https,) = run(target("127.0.0.1", port, http=HttpProbe(scheme="https")))
        assert https.ok, https.error  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()


def test_canary(server: tuple[str, int]) -> None:
    assert asyncio.run(reach(f"http://{server[0]}:{server[1]}/down", 1))[0] is True
    assert asyncio.run(reach(f"{server[0]}:{server[1]}", 1))[0] is True
    ok, why = asyncio.run(reach("127.0.0.1:9", 0.5))
    assert not ok and "canary 127.0.0.1:9" in why
