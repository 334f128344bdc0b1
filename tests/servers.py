"""Real servers for integration tests, started unprivileged from a temp directory.

``bind_server(tmp_path)`` runs BIND's ``named`` in the foreground on a random high port
of 127.0.0.1, with a fresh copy of the test zone ``example.test`` and a TSIG key that
may update it. Nothing is written outside ``tmp_path``.

Two details that make this work on CI runners as well as on a laptop:

* ``named`` is run from a copy of the binary inside ``tmp_path``. Ubuntu ships an
  AppArmor profile for ``/usr/sbin/named`` that only lets it read ``/etc/bind`` and
  write ``/var/cache/bind``; a copy at another path is not confined by that profile.
* No ``-u``: as root (CI) named keeps running as root, which is fine on a loopback
  port; as a normal user it needs no privilege at all (port > 1024, files in tmp).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from tests.conftest import need_binary

if TYPE_CHECKING:
    from providers.dns.rfc2136 import Rfc2136Dns

ZONE = "example.test"
KEY_NAME = "failover-test-key"
# A second key the server knows but grants nothing: updates signed with it are REFUSED.
READONLY_KEY_NAME = "readonly-test-key"
READONLY_KEY_SECRET = base64.b64encode(b"readonly-test-key-not-a-secret!!").decode()

ZONE_TEMPLATE = """$TTL 60
@       IN SOA  ns1.{zone}. hostmaster.{zone}. 1 60 60 3600 30
@       IN NS   ns1.{zone}.
ns1     IN A    127.0.0.1
www     IN A    127.77.0.1
api     IN A    127.77.0.1
api     IN A    127.77.0.2
"""

CONF_TEMPLATE = """
key "{key_name}" {{ algorithm hmac-sha256; secret "{secret}"; }};
key "{ro_name}" {{ algorithm hmac-sha256; secret "{ro_secret}"; }};
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-query {{ any; }};
    allow-transfer {{ none; }};
}};
controls {{ }};
zone "{zone}" {{
    type primary;
    file "{dir}/{zone}.zone";
    update-policy {{ grant {key_name} zonesub ANY; }};
}};
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP right now (a DNS server needs both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


def _soa_answers(host: str, port: int, zone: str) -> bool:
    import dns.exception
    import dns.message
    import dns.query

    try:
        response = dns.query.tcp(dns.message.make_query(zone, "SOA"), host, port=port, timeout=0.5)
    except (OSError, dns.exception.DNSException):
        return False
    return bool(response.answer)


@contextlib.contextmanager
def bind_server(tmp_path: Path) -> Iterator[tuple[str, int, str, str, str]]:
    """Start ``named``; yield ``(host, port, key_name, key_secret, zone)``; stop it."""
    named = need_binary("named", "/usr/sbin")
    base = Path(tmp_path) / "bind"
    base.mkdir(parents=True, exist_ok=True)
    binary = base / "named"
    shutil.copy2(named, binary)  # out of reach of the AppArmor profile (see above)
    secret = base64.b64encode(os.urandom(32)).decode()
    host = "127.0.0.1"
    (base / f"{ZONE}.zone").write_text(ZONE_TEMPLATE.format(zone=ZONE))
    last_log = ""
    for _attempt in range(3):
        port = free_port(host)
        conf = base / "named.conf"
        conf.write_text(
            CONF_TEMPLATE.format(
                key_name=KEY_NAME,
                secret=secret,
                ro_name=READONLY_KEY_NAME,
                ro_secret=READONLY_KEY_SECRET,
                dir=base,
                port=port,
                zone=ZONE,
            )
        )
        log = (base / "named.log").open("wb")
        proc = subprocess.Popen(
            [str(binary), "-g", "-n", "1", "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=base,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            if _soa_answers(host, port, ZONE):
                break
            time.sleep(0.05)
        if proc.poll() is None and _soa_answers(host, port, ZONE):
            try:
                yield host, port, KEY_NAME, secret, ZONE
            finally:
                stop_process(proc)
                log.close()
            return
        stop_process(proc)
        log.close()
        last_log = (base / "named.log").read_text(errors="replace")
        if "address in use" not in last_log.lower():
            break
    raise RuntimeError(f"named did not start; its log:\n{last_log[-3000:]}")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """End a server started in its own session: SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def rfc2136_backend(
    bind: tuple[str, int, str, str, str], state_dir: Path, **overrides: Any
) -> Rfc2136Dns:
    """An ``Rfc2136Dns`` on the BIND of ``bind_server``, with short test timeouts."""
    from providers.base import ProviderContext
    from providers.dns.rfc2136 import Rfc2136Dns
    from providers.dns.rfc2136 import Rfc2136Settings

    host, port, key_name, secret, zone = bind
    raw: dict[str, Any] = {
        "type": "rfc2136",
        "zone": zone,
        "server": f"{host}:{port}",
        "key_name": key_name,
        "key_secret": secret,
        "timeout": 1,
        "propagation_timeout": 5,
        "poll_interval": 0,
        "retry_attempts": 2,
        "retry_max_time": 5,
    }
    raw.update(overrides)
    settings = Rfc2136Settings.model_validate(raw)
    return Rfc2136Dns(settings, ProviderContext(state_dir=state_dir))
