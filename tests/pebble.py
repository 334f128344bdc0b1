"""Pebble (Let's Encrypt's ACME test server, Debian's ``pebble``) for the certificate tests.

Its own HTTPS uses a test authority made here (``ca_file``), and it validates DNS-01
challenges against the DNS server it is given (the test BIND).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import need_binary
from tests.servers import free_port
from tests.servers import stop_process


@dataclass
class Pebble:
    url: str  # the ACME directory
    management: str
    ca_file: str  # trust for its own HTTPS

    def root(self) -> str:
        """The root its certificates chain to (changes at every start)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(f"{self.management}/roots/0", context=context) as answer:
            return str(answer.read().decode())


def test_authority(base: Path) -> str:
    """A CA and a 127.0.0.1/localhost certificate for Pebble's HTTPS; the CA's path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble test ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    import ipaddress

    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (base / "ca.pem").write_bytes(ca.public_bytes(pem))
    (base / "cert.pem").write_bytes(leaf.public_bytes(pem))
    (base / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(base / "ca.pem")


@contextlib.contextmanager
def pebble_server(
    base: Path, dns: str, validity: int = 0, eab: dict[str, str] | None = None
) -> Iterator[Pebble]:
    """Pebble validating DNS-01 against ``dns`` (host:port); ``validity``: the seconds
    its certificates last (0: its default); ``eab``: the external account binding keys
    it requires (kid: base64url HMAC key)."""
    binary = need_binary("pebble")
    base.mkdir(parents=True, exist_ok=True)
    ca_file = test_authority(base)
    port, management = free_port(), free_port()
    config: dict[str, object] = {
        "listenAddress": f"127.0.0.1:{port}",
        "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(base / "cert.pem"),
        "privateKey": str(base / "key.pem"),
        "httpPort": free_port(),
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": bool(eab),
        "externalAccountMACKeys": eab or {},
    }
    if validity:
        config["certificateValidityPeriod"] = validity
    (base / "pebble.json").write_text(json.dumps({"pebble": config}))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    log = (base / "pebble.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-config", str(base / "pebble.json"), "-dnsserver", dns],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    server = Pebble(f"https://127.0.0.1:{port}/dir", f"https://127.0.0.1:{management}", ca_file)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.root()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((base / "pebble.log").read_text()[-2000:]) from None
                time.sleep(0.1)
        yield server
    finally:
        stop_process(proc)
        log.close()
