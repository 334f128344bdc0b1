"""Certificates, their keys and the ACME accounts, sealed in the stores (section 13).

Layout in every store of ``certificates.stores``::

    certs/<service>/certificate.json   chain, private key, serial, expiry, authority
    certs/accounts/<sha256(url)[:16]>.json   an authority's ACME account key

Each object is sealed with AES-256-GCM by the backups' own :class:`Sealer`, under a key
derived from ``certificates.encryption_key``; the object's key is its associated data,
so one service's certificate cannot be passed off as another's. Any watcher with the key
reads them; a store without it holds nothing usable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

from failover.data.backup import Corrupt
from failover.data.backup import Sealer
from failover.data.plane import plane
from failover.data.stores import Store
from failover.redact import register_secret
from providers.base import NotFound
from providers.base import ProviderError

if TYPE_CHECKING:
    from failover.data.plane import EngineLike

PREFIX = "certs/"


@dataclass
class Certificate:
    """One issued certificate as kept: ``key_pem`` never leaves this object in clear
    except onto the service's own host."""

    service: str
    names: list[str]
    fullchain_pem: str
    key_pem: str
    serial: str
    not_after: float
    authority: str

    def public(self) -> dict[str, Any]:
        """What output, status and the journal may show."""
        return {
            "serial": self.serial,
            "not_after": self.not_after,
            "authority": self.authority,
            "names": list(self.names),
        }


def describe(fullchain_pem: str) -> tuple[str, float]:
    """The leaf's serial (hex) and expiry (epoch seconds)."""
    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(fullchain_pem.encode())
    return f"{leaf.serial_number:x}", leaf.not_valid_after_utc.timestamp()


class CertStore:
    """The sealed objects of ``certificates`` in its stores."""

    def __init__(self, engine: EngineLike) -> None:
        certs = engine.config.certificates
        assert certs is not None
        self.engine = engine
        self.sealer = Sealer(certs.encryption_key)
        self.names = certs.stores or [s.name for s in engine.config.stores]

    def stores(self) -> tuple[list[Store], dict[str, str]]:
        """Every configured store that opens, and why the others did not."""
        out, why = [], {}
        for name in self.names:
            try:
                out.append(plane(self.engine).store(name))
            except Exception as exc:  # an SDK refusing its settings: this store only
                why[name] = f"cannot open: {exc}"
        return out, why

    def _put(self, key: str, doc: dict[str, Any]) -> dict[str, str]:
        sealed = self.sealer.seal(PREFIX + key, 0, json.dumps(doc).encode())
        stores, result = self.stores()
        for store in stores:
            try:
                store.put(PREFIX + key, sealed)
                result[store.name] = "ok"
            except ProviderError as exc:
                result[store.name] = f"failed: {exc.kind}"
        return result

    def _get(self, key: str) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """The newest readable copy (by ``not_after`` when there is one)."""
        stores, result = self.stores()
        best: dict[str, Any] | None = None
        for store in stores:
            try:
                plain = self.sealer.open(PREFIX + key, 0, store.get(PREFIX + key))
                doc: dict[str, Any] = json.loads(plain)
            except NotFound:
                result[store.name] = "missing"
                continue
            except (ProviderError, Corrupt, ValueError) as exc:
                result[store.name] = f"unreadable: {getattr(exc, 'kind', 'corrupt')}"
                continue
            result[store.name] = "ok"
            if best is None or doc.get("not_after", 0) > best.get("not_after", 0):
                best = doc
        return best, result

    def save(self, cert: Certificate) -> dict[str, str]:
        return self._put(f"{cert.service}/certificate.json", asdict(cert))

    def load(self, service: str) -> tuple[Certificate | None, dict[str, str]]:
        doc, result = self._get(f"{service}/certificate.json")
        if doc is None:
            return None, result
        cert = Certificate(**doc)
        register_secret(cert.key_pem)
        return cert, result

    def account_key(self, url: str) -> str | None:
        doc, _ = self._get(_account(url))
        key = doc.get("key") if doc else None
        if isinstance(key, str):
            register_secret(key)
            return key
        return None

    def save_account_key(self, url: str, key: str) -> dict[str, str]:
        register_secret(key)
        return self._put(_account(url), {"url": url, "key": key})


def _account(url: str) -> str:
    return f"accounts/{hashlib.sha256(url.encode()).hexdigest()[:16]}.json"
