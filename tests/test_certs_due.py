"""When a certificate is due: ``renew_before`` before its expiry, but never more than a
third of its lifetime, so a certificate that lives less than ``renew_before`` is not
due again the moment it is issued (and ordered anew at every retry). Real
certificates, made and signed with ``cryptography``."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from failover import config as cfg
from failover.certs_renew import due
from failover.certs_store import Certificate
from failover.certs_store import describe
from tests.test_certs_config import document

DAY = 86400.0
NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def certificate(lifetime_days: float) -> Certificate:
    """A self-signed leaf issued at NOW that lives ``lifetime_days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test")])
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=lifetime_days))
        .sign(key, hashes.SHA256())
    )
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    serial, not_after = describe(pem)
    return Certificate("web", ["www.example.test"], pem, "", serial, not_after, "test")


def engine(renew_before: str) -> SimpleNamespace:
    """What due() reads of an engine: its config (a real, parsed one)."""
    return SimpleNamespace(config=cfg.parse(yaml.safe_dump(document(renew_before=renew_before))))


@pytest.mark.parametrize(
    ("lifetime", "renew_before", "window"),
    [
        (90, "30d", 30 * DAY),  # Let's Encrypt's 90 days: renew_before as given
        (7, "30d", 7 * DAY / 3),  # shorter than renew_before: a third of it
        (6, "1d", 1 * DAY),  # renew_before is the smaller one
        (0.25, "30d", 0.25 * DAY / 3),  # a 6-hour certificate
    ],
)
def test_the_window_is_renew_before_at_most_a_third_of_the_lifetime(
    lifetime: float, renew_before: str, window: float
) -> None:
    from failover.certs_renew import renew_window

    cert = certificate(lifetime)
    assert renew_window(engine(renew_before), cert) == pytest.approx(window)  # type: ignore[arg-type]


def test_a_week_long_certificate_is_not_due_when_issued_but_is_near_its_end() -> None:
    cert, e = certificate(7), engine("30d")
    issued = NOW.timestamp()
    assert not due(e, cert, now=issued)  # type: ignore[arg-type]
    assert not due(e, cert, now=issued + 4 * DAY)  # type: ignore[arg-type]
    assert due(e, cert, now=issued + 5 * DAY)  # type: ignore[arg-type]


def test_a_long_certificate_is_due_renew_before_ahead() -> None:
    cert, e = certificate(90), engine("30d")
    issued = NOW.timestamp()
    assert not due(e, cert, now=issued + 59 * DAY)  # type: ignore[arg-type]
    assert due(e, cert, now=issued + 61 * DAY)  # type: ignore[arg-type]
