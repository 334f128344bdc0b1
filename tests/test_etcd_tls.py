"""etcd over TLS (a CA of the test's own, a client certificate offered) with a user and
password: the `state:` options end to end, against one real etcd member started here."""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from failover.state import StateError
from failover.state.etcd import EtcdStore
from failover.state.gateway import TLS
from failover.state.gateway import Gateway
from failover.state.gateway import StoreUnreachable
from tests.conftest import need_binary
from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import write_config
from tests.servers import free_port
from tests.servers import stop_process

PASSWORD = "etcd-test-password-9f2c"


def _certs(base: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (base / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (base / f"{name}-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def make(cn: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool):  # type: ignore[no-untyped-def]
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer[0] if issuer else name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
        return name, key, cert

    ca_name, ca_key, ca_cert = make("failover test CA", None, True)
    write("ca", ca_cert, ca_key)
    _, key, cert = make("127.0.0.1", (ca_name, ca_key), False)
    write("server", cert, key)
    _, key, cert = make("failover-client", (ca_name, ca_key), False)
    write("client", cert, key)


def _call(url: str, path: str, body: dict[str, object], base: Path, token: str = "") -> dict:  # type: ignore[type-arg]
    import ssl

    ctx = ssl.create_default_context(cafile=str(base / "ca.pem"))
    ctx.load_cert_chain(base / "client.pem", base / "client-key.pem")
    req = urllib.request.Request(url + path, json.dumps(body).encode(), method="POST")
    if token:
        req.add_header("Authorization", token)
    with urllib.request.urlopen(req, context=ctx, timeout=5) as response:
        return dict(json.loads(response.read()))


@pytest.fixture(scope="module")
def secure_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    binary = need_binary("etcd", "/usr/bin")
    base = tmp_path_factory.mktemp("etcd-tls")
    _certs(base)
    port, peer = free_port(), free_port()
    url = f"https://127.0.0.1:{port}"
    log = (base / "etcd.log").open("wb")
    proc = subprocess.Popen(
        [
            binary, "--name", "solo", "--data-dir", str(base / "data"),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"solo=http://127.0.0.1:{peer}",
            "--cert-file", str(base / "server.pem"), "--key-file", str(base / "server-key.pem"),
            # No --client-cert-auth: etcd 3.4 refuses a password login through its
            # gateway when the client also presents a certificate it checks.
            "--trusted-ca-file", str(base / "ca.pem"),
            "--log-level", "warn",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                _call(url, "/v3/maintenance/status", {}, base)
                break
            except OSError:
                time.sleep(0.05)
        for path, body in (
            ("/v3/auth/user/add", {"name": "root", "password": PASSWORD}),
            ("/v3/auth/role/add", {"name": "root"}),
            ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
            ("/v3/auth/enable", {}),
        ):
            _call(url, path, body, base)
        yield url, base
    finally:
        stop_process(proc)
        log.close()


def gateway(url: str, base: Path, password: str = PASSWORD, cert: bool = True) -> Gateway:
    tls = TLS(str(base / "ca.pem"), None, None)
    if cert:
        tls = TLS(str(base / "ca.pem"), str(base / "client.pem"), str(base / "client-key.pem"))
    return Gateway([url], tls=tls, username="root", password=password)


def test_tls_and_a_password_open_the_store(secure_etcd: tuple[str, Path]) -> None:
    url, base = secure_etcd
    s = EtcdStore(gateway(url, base), "/tls-test/")
    assert s.cutover("web", 0, {"host_id": "h-1", "address": "127.77.0.1"}, None) == 1
    assert s.service("web").generation == 1


def test_a_wrong_password_is_refused_by_name_and_never_shown(
    secure_etcd: tuple[str, Path],
) -> None:
    url, base = secure_etcd
    with pytest.raises(StateError) as caught:
        EtcdStore(gateway(url, base, password="not-the-password"), "/tls-test/").service("web")
    assert not isinstance(caught.value, StoreUnreachable)
    assert "etcd refused the user 'root'" in str(caught.value)
    assert "not-the-password" not in str(caught.value)


def test_a_server_the_ca_did_not_sign_is_not_spoken_to(
    secure_etcd: tuple[str, Path], tmp_path: Path
) -> None:
    url, base = secure_etcd
    _certs(tmp_path)  # another CA
    tls = TLS(str(tmp_path / "ca.pem"), None, None)
    gw = Gateway([url], tls=tls, username="root", password=PASSWORD)
    with pytest.raises(StoreUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        EtcdStore(gw, "/tls-test/").service("web")
    # The right CA, no client certificate: etcd with a trusted CA file asks for one.
    with pytest.raises(StoreUnreachable):
        EtcdStore(gateway(url, base, cert=False), "/tls-test/").service("web")


def test_the_config_options_end_to_end(secure_etcd: tuple[str, Path], project: Path) -> None:
    url, base = secure_etcd
    data = base_config()
    data["state"] = {
        "backend": "etcd",
        "endpoints": [url],
        "prefix": "/tls-e2e/",
        "ca_file": str(base / "ca.pem"),
        "cert_file": str(base / "client.pem"),
        "key_file": str(base / "client-key.pem"),
        "username": "root",
        "password": "${ETCD_TEST_PASSWORD}",
    }
    config = write_config(project, data)
    env = {"ETCD_TEST_PASSWORD": PASSWORD}
    deploy = failover("deploy", "web", config=config, env=env)
    assert deploy.returncode == 0, deploy.stderr
    check = failover("check", config=config, env=env)
    assert check.returncode == 0, check.stdout
    doc = failover_json("doctor", config=config, env=env)
    assert any("etcd has 1 member(s)" in w for w in doc["warnings"]), doc["warnings"]
    for proc in (deploy, check):
        assert PASSWORD not in proc.stdout + proc.stderr
    assert PASSWORD not in json.dumps(doc)
