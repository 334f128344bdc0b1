"""Pebble (Let's Encrypt's ACME test server, Debian's ``pebble``) for the certificate tests.

Its own HTTPS uses a test authority made here (``ca_file``), and it validates DNS-01
challenges against the DNS server it is given (the test BIND).
"""

from __future__ import annotations

import contextlib
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
from tests.receivers import make_ca
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
    """A CA and a 127.0.0.1/localhost certificate for Pebble's HTTPS (ca.pem, cert.pem,
    key.pem in ``base``); the CA's path."""
    ca, _cert, _key = make_ca(base)
    return str(ca)


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
