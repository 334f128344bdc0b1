"""Issuing a service's certificate through ACME DNS-01 (RFC 8555; contract section 13).

certbot's own ``acme`` and ``josepy`` libraries speak the protocol; what is ours is the
challenge's path and the fallback. The ``_acme-challenge`` TXT records go through the
DNS fan-out, so they land on every provider of the zone that does not refuse us (one
company holding them is enough for the authority to see them), and are removed after.
The authorities of ``certificates.authorities`` are tried in order: one that cannot be
reached, rate-limits or refuses is skipped for the next, and why is returned (journaled
by the caller). The ACME account key of each authority is made once and sealed in the
stores (:mod:`failover.certs_store`), so every watcher uses the same account.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from failover.certs_store import Certificate
from failover.certs_store import CertStore
from failover.certs_store import describe
from failover.redact import register_secret

if TYPE_CHECKING:
    from failover.certs_config import Authority
    from failover.engine import Engine

# How long one authority gets to validate and issue before the next is tried.
ORDER_SECONDS = 90.0


class IssueFailed(Exception):
    """No authority issued; ``skipped`` says why each was passed over."""

    def __init__(self, message: str, skipped: list[str]) -> None:
        super().__init__(message)
        self.skipped = skipped


@dataclass
class Issued:
    certificate: Certificate
    skipped: list[str] = field(default_factory=list)  # "<url>: <why>" per authority passed
    stores: dict[str, str] = field(default_factory=dict)

    def detail(self) -> str:
        cert = self.certificate
        out = f"certificate {cert.serial} from {cert.authority}"
        if self.skipped:
            out += " (" + "; ".join(f"skipped {why}" for why in self.skipped) + ")"
        return out


def names_of(engine: Engine, service: str) -> list[str]:
    svc = engine.config.services[service]
    assert svc.tls is not None
    return list(svc.tls.names or svc.domains)


def issue(engine: Engine, service: str) -> Issued:
    """A new certificate for ``service`` from the first authority that gives one, sealed
    in the stores. Raises :class:`IssueFailed` when none does."""
    certs = engine.config.certificates
    assert certs is not None
    kept = CertStore(engine)
    names = names_of(engine, service)
    skipped: list[str] = []
    for authority in certs.authorities:
        try:
            chain, key_pem = _order(engine, kept, authority, names)
        except Exception as exc:  # each authority's failure is its own: the next one
            skipped.append(f"{authority.url}: {_why(exc)}")
            continue
        serial, not_after = describe(chain)
        cert = Certificate(service, names, chain, key_pem, serial, not_after, authority.url)
        stores = kept.save(cert)
        if "ok" not in stores.values():
            raise IssueFailed(f"issued {serial} but no store took it: {stores}", skipped)
        return Issued(cert, skipped, stores)
    raise IssueFailed("no authority issued: " + "; ".join(skipped), skipped)


def _why(exc: Exception) -> str:
    """An authority's refusal in a line: the ACME problem type when there is one."""
    from acme import messages

    if isinstance(exc, messages.Error):
        kind = (exc.typ or "").rsplit(":", 1)[-1]
        return f"refused ({kind}): {exc.detail or exc.title or ''}".rstrip(": ")
    name = type(exc).__name__
    if name in ("ConnectionError", "SSLError", "Timeout", "ConnectTimeout", "ReadTimeout"):
        return f"unreachable: {name}"
    return f"{name}: {exc}"[:300]


def _client(kept: CertStore, authority: Authority, email: str | None) -> tuple[Any, Any]:
    """An ACME client with this authority's account (made once, its key kept sealed)."""
    from acme import client
    from acme import errors
    from acme import messages
    from cryptography.hazmat.primitives.asymmetric import rsa
    from josepy.jwk import JWKRSA

    stored = kept.account_key(authority.url)
    if stored is None:
        key = JWKRSA(key=rsa.generate_private_key(65537, 2048))
        kept.save_account_key(authority.url, key.json_dumps())
    else:
        key = JWKRSA.json_loads(stored)
    verify: Any = True
    if authority.ca_file:
        base = kept.engine.config.path
        found = Path(authority.ca_file)
        verify = str(found if found.is_absolute() or base is None else base.parent / found)
    net = client.ClientNetwork(key, user_agent="failover", verify_ssl=verify, timeout=30)
    directory = client.ClientV2.get_directory(authority.url, net)
    acme = client.ClientV2(directory, net)
    eab = None
    if authority.eab_kid and authority.eab_hmac_key:
        eab = messages.ExternalAccountBinding.from_data(
            account_public_key=key.public_key(),
            kid=authority.eab_kid,
            hmac_key=authority.eab_hmac_key,
            directory=directory,
        )
    contact = {"email": email} if email else {}
    new = messages.NewRegistration.from_data(
        terms_of_service_agreed=True, external_account_binding=eab, **contact
    )
    try:
        net.account = acme.new_account(new)
    except errors.ConflictError as exc:  # the key's account exists: use it
        net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
    return acme, key


def _order(
    engine: Engine, kept: CertStore, authority: Authority, names: list[str]
) -> tuple[str, str]:
    """One order at one authority: (full chain PEM, private key PEM)."""
    from acme import crypto_util
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    certs = engine.config.certificates
    assert certs is not None
    acme, account = _client(kept, authority, certs.email)
    private = ec.generate_private_key(ec.SECP256R1())
    key_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    register_secret(key_pem)
    order = acme.new_order(crypto_util.make_csr(key_pem.encode(), names))
    written: dict[str, list[str]] = {}
    try:
        answers = _challenges(engine, order, account, written)
        for challenge, response in answers:
            acme.answer_challenge(challenge, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_SECONDS)
        done = acme.poll_and_finalize(order, deadline)
    finally:
        fan = engine.fanout()
        for name, values in written.items():
            fan.set_txt(name, [], expect=values)
    return str(done.fullchain_pem), key_pem


def _challenges(
    engine: Engine, order: Any, account: Any, written: dict[str, list[str]]
) -> list[tuple[Any, Any]]:
    """Every authorization's DNS-01 TXT record written (several names may share one
    ``_acme-challenge`` name: a wildcard and its apex); the challenges to answer."""
    from acme import challenges
    from acme import messages

    answers: list[tuple[Any, Any]] = []
    wanted: dict[str, list[str]] = {}
    for authz in order.authorizations:
        if authz.body.status == messages.STATUS_VALID:
            continue  # the authority reused an earlier validation of this name
        domain = authz.body.identifier.value
        dns01 = next(
            (c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01)), None
        )
        if dns01 is None:
            raise RuntimeError(f"{domain}: the authority offers no dns-01 challenge")
        response, validation = dns01.chall.response_and_validation(account)
        wanted.setdefault(dns01.chall.validation_domain_name(domain), []).append(validation)
        answers.append((dns01, response))
    fan = engine.fanout()
    for name, values in wanted.items():
        writes = fan.set_txt(name, values, expect=None)
        if not any(w.holds_new for w in writes):
            shown = "; ".join(f"{w.provider} {w.label(why=True)}" for w in writes)
            raise RuntimeError(f"no DNS provider took {name}: {shown or 'no provider'}")
        written[name] = values
    return answers
