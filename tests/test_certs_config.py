"""``certificates:`` and ``services.*.tls`` (contract section 13): defaults, and every
mistake named by its path."""

from __future__ import annotations

from typing import Any

import pytest

from failover import config as cfg
from tests.helpers import base_config

KEY = "a-certificate-key-" + "x" * 16


def document(**changes: Any) -> dict[str, Any]:
    data = base_config(tls={})
    data["stores"] = [{"name": "offsite", "type": "dir", "path": "/tmp/offsite"}]
    data["certificates"] = {
        "email": "ops@example.test",
        "authorities": [{"url": "https://127.0.0.1:14000/dir"}],
        "encryption_key": KEY,
        **changes,
    }
    return data


def problems(data: dict[str, Any]) -> list[str]:
    import yaml

    with pytest.raises(cfg.ConfigError) as caught:
        cfg.parse(yaml.safe_dump(data))
    return caught.value.problems


def test_defaults() -> None:
    import yaml

    conf = cfg.parse(yaml.safe_dump(document(renew_before="30d")))
    certs = conf.certificates
    assert certs is not None and certs.renew_before == 30 * 86400 and certs.stores is None
    tls = conf.services["web"].tls
    assert tls is not None and (tls.cert_file, tls.key_file) == (
        "tls/fullchain.pem",
        "tls/privkey.pem",
    )
    assert tls.names == [] and tls.reload is None


@pytest.mark.parametrize(
    ("changes", "tls", "expected"),
    [
        ({"encryption_key": None}, {}, "certificates.encryption_key: "),
        ({"authorities": []}, {}, "certificates.authorities: must have at least one entry"),
        ({"authorities": [{"url": "http://x/dir"}]}, {}, "certificates.authorities[0].url: "),
        (
            {"authorities": [{"url": "https://x/dir", "eab_kid": "k"}]},
            {},
            "certificates.authorities[0]: eab_kid and eab_hmac_key go together",
        ),
        ({"stores": ["nowhere"]}, {}, "certificates.stores[0]: no store named 'nowhere'"),
        ({"renew_before": "soon"}, {}, "certificates.renew_before: "),
        ({}, {"key_file": "../key.pem"}, "services.web.tls.key_file: "),
        ({}, {"cert_file": "/etc/cert.pem"}, "services.web.tls.cert_file: "),
        ({}, {"names": ["www.elsewhere.org"]}, "services.web.tls.names[0]: 'www.elsewhere.org'"),
        ({}, {"cert_file": "a.pem", "key_file": "a.pem"}, "services.web.tls.key_file: must differ"),
    ],
)
def test_mistakes_are_named_by_path(
    changes: dict[str, Any], tls: dict[str, Any], expected: str
) -> None:
    data = document(**changes)
    data["certificates"] = {k: v for k, v in data["certificates"].items() if v is not None}
    data["services"]["web"]["tls"] = tls
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_tls_without_certificates_is_named() -> None:
    data = document()
    del data["certificates"]
    assert problems(data) == ["services.web.tls: needs a `certificates` section (authorities, key)"]


def test_the_encryption_key_never_shows_in_an_error() -> None:
    data = document(email=["not", "an", "email"])
    assert not any(KEY in p for p in problems(data))
