"""Engine pgbackrest with an S3 repository: moto's server behind TLS with a CA made by
the test (pgBackRest speaks only HTTPS to S3 and verifies it against the store's
``ca_file``), beside a ``dir`` store. WAL reaches both; with the ``dir`` store gone, the
failover restores from S3 and keeps every row acknowledged well before the cut-off."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover.data.plane import status
from tests.conftest import need
from tests.doubles.moto_server import free_port
from tests.doubles.moto_server import moto_available
from tests.doubles.moto_server import shared_moto
from tests.doubles.moto_server import use_test_credentials
from tests.test_data_e2e import cut_off
from tests.test_pgbackrest import ARCHIVE_TIMEOUT
from tests.test_pgbackrest import PUSH
from tests.test_pgbackrest import Writer
from tests.test_pgbackrest import deployed
from tests.test_pgbackrest import dsn
from tests.test_pgbackrest import fail_over
from tests.test_pgbackrest import pg_config
from tests.test_pgbackrest import pg_root  # noqa: F401 - a fixture
from tests.test_pgbackrest import query
from tests.test_pgbackrest import step
from tests.test_pgbackrest import wait_rows
from tests.test_pgbackrest import world  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(600)


def make_certs(base: Path) -> None:
    """A test CA and a server certificate for 127.0.0.1. pgBackRest (2.45) matches the
    endpoint against DNS names only, Python's ssl against IP addresses: the certificate
    names 127.0.0.1 as both."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(name: str, key: Any, issuer: tuple[x509.Name, Any] | None) -> x509.Certificate:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer[0] if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        )
        if issuer:
            where = [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address(name))]
            builder = builder.add_extension(x509.SubjectAlternativeName(where), False)
        return builder.sign(issuer[1] if issuer else key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("failover test CA", ca_key, None)
    pem = serialization.Encoding.PEM
    (base / "ca.pem").write_bytes(ca.public_bytes(pem))
    (base / "cert.pem").write_bytes(cert("127.0.0.1", key, (ca.subject, ca_key)).public_bytes(pem))
    (base / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


class TlsFront(threading.Thread):
    """A TLS terminator in front of moto's plain HTTP server: each connection piped to
    moto, and closed with TLS's close_notify (moto's own TLS ends connections without
    one, which pgBackRest's OpenSSL 3 reports as an error)."""

    def __init__(self, context: ssl.SSLContext, backend: int) -> None:
        super().__init__(daemon=True)
        self.context, self.backend, self.port = context, backend, free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    def run(self) -> None:
        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ssl.SSLError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        async def main() -> None:
            server = await asyncio.start_server(serve, "127.0.0.1", self.port, ssl=self.context)
            self.ready.set()
            async with server:
                await server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            self.loop.run_until_complete(main())

    def stop(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            self.loop.call_soon_threadsafe(task.cancel)
        self.join(10)


@pytest.fixture(scope="module")
def tls_moto() -> Iterator[tuple[str, Path]]:
    """moto's server behind the test's TLS front; its URL and the CA file (readable by
    postgres)."""
    need(moto_available(), "moto[server] is not installed (pip install 'moto[server]')")
    base = Path(f"/tmp/failover-s3tls-{os.urandom(4).hex()}")
    base.mkdir(mode=0o755)
    make_certs(base)
    (base / "ca.pem").chmod(0o644)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(base / "cert.pem", base / "key.pem")
    moto = shared_moto()
    front = TlsFront(context, moto.port)
    front.start()
    front.ready.wait(30)
    try:
        yield f"https://127.0.0.1:{front.port}", base / "ca.pem"
    finally:
        front.stop()
        shutil.rmtree(base, ignore_errors=True)


def s3_config(root: Path, url: str, ca: Path, bucket: str) -> dict[str, Any]:
    import boto3

    boto3.client("s3", endpoint_url=url, region_name="us-east-1", verify=str(ca)).create_bucket(
        Bucket=bucket
    )
    conf = pg_config(root)
    conf["stores"][1] = {
        "name": "s3",
        "type": "s3",
        "bucket": bucket,
        "endpoint": url,
        "ca_file": str(ca),
        "prefix": "pg",
    }
    # The host's keys, as pgBackRest reads them; the watcher's come from the SDK's chain.
    keys = {"PGBACKREST_REPO2_S3_KEY": "testing", "PGBACKREST_REPO2_S3_KEY_SECRET": "testing"}
    conf["services"]["db"]["run"]["env"] = keys
    return conf


def test_wal_reaches_a_dir_and_an_s3_store_and_s3_restores_when_the_dir_is_gone(
    world: Any,  # noqa: F811 - the fixture imported above
    pg_root: Path,  # noqa: F811
    tls_moto: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_test_credentials(monkeypatch)
    url, ca = tls_moto
    engine = deployed(world, pg_root, s3_config(pg_root, url, ca, "pg-dr-1"))
    second_store_takes_over(engine, pg_root, "s3")


def second_store_takes_over(engine: Any, root: Path, name: str) -> None:
    """Writes go on until WAL has reached the ``dir`` store and store ``name``; then the
    provider is cut off and the ``dir`` store removed: the failover restores from
    ``name`` with every row acknowledged before the recovery point."""
    writer = Writer(dsn(engine))
    writer.start()
    wait_rows(writer, 100)
    # Each round lists both repositories' archives: WAL has reached both.
    for _ in range(100):
        engine.check(["db"])
        doc = status(engine, "db")
        assert doc is not None
        if set(doc["rpo_s"]) == {"one", name}:
            break
        time.sleep(ARCHIVE_TIMEOUT)
    assert doc["stores"]["one"]["ok"] and doc["stores"][name]["ok"], doc
    assert set(doc["rpo_s"]) == {"one", name}, doc
    wait_rows(writer, 100)
    began = time.time()
    while time.time() - began < ARCHIVE_TIMEOUT + PUSH + 5:
        time.sleep(0.2)

    cut = time.time()
    cut_off(engine, "alpha", "db")
    writer.join(30)
    (root / "r1").rename(root / "r1.gone")  # the posix repository is gone too
    acked = dict(writer.acked)
    fail_over(engine)
    detail = step(engine, "failover")
    assert f"from store {name} (repository 2)" in detail and "WAL replayed to" in detail, detail
    present = {int(r[0]) for r in query(engine, "SELECT id FROM t")}
    must = {i for i, at in acked.items() if at < cut - ARCHIVE_TIMEOUT - PUSH}
    assert len(must) >= 200 and must <= present, sorted(must - present)[:5]
