"""Renewal in ``check``/``watch`` and on ``failover certs`` (contract section 13).

A certificate with less than its renewal window left (``renew_before``, at most a third
of its lifetime) is issued again (the authorities in order, :mod:`failover.certs`),
sealed in the stores, written on the live host through the provider's own channel
(``exec_on_host``, the files on its stdin: never on a command line) and the service's
``reload`` run. The verdict turns WARNING when the certificate
expires within half of that window.
"""

from __future__ import annotations

import functools
import io
import shlex
import time
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any

from failover.certs_store import Certificate
from failover.certs_store import CertStore
from failover.exitcodes import CheckCode

if TYPE_CHECKING:
    from failover.certs import Issued
    from failover.engine import Engine
    from failover.engine.health import Verdict

# A stored certificate is read again at most this often by a watcher's rounds.
REREAD = 300.0
# The certificate lock outlives a watcher that died renewing by this much.
LOCK_TTL = 600.0


def certs_round(
    engine: Engine, verdicts: dict[str, Verdict], *, dry_run: bool = False
) -> dict[str, Verdict]:
    """Each TLS service's certificate renewed when due; WARNING when it is close."""
    out = {}
    for service, verdict in verdicts.items():
        if engine.config.services[service].tls is None:
            continue
        try:
            out[service] = _round_one(engine, service, verdict, dry_run)
        except Exception as exc:  # a certificate at risk never stops the round's judging
            engine.log(f"{service}: certificate round failed: {type(exc).__name__}: {exc}")
    return out


def _round_one(engine: Engine, service: str, verdict: Verdict, dry_run: bool) -> Verdict:
    cert = _cached(engine, service)
    served = _served(verdict)
    if cert is not None and due(engine, cert) and not dry_run and _may_try(engine, service):
        renewed = renew(engine, service)
        served = None if renewed else served  # probed before the renewal
        cert = renewed or cert
    return _judge(engine, service, verdict, cert, served)


def _served(verdict: Verdict) -> str | None:
    """The serial the live host served to this round's https probe."""
    for probe in verdict.probes:
        if probe.kind == "http" and probe.ok and probe.detail.get("serial"):
            return str(probe.detail["serial"])
    return None


def _other(engine: Engine, service: str, cert: Certificate, served: str | None) -> str:
    """Why the live host's certificate is not the stored one ("" when it is)."""
    if served is None or served == cert.serial:
        return ""
    fresh, _ = CertStore(engine).load(service)  # another watcher may have renewed it
    if fresh is not None:
        _remember(engine, service, fresh)
        if fresh.serial == served:
            return ""
        cert = fresh
    return f"the live host serves certificate {served}, not the stored {cert.serial}"


def due(engine: Engine, cert: Certificate, now: float | None = None) -> bool:
    left = cert.not_after - (time.time() if now is None else now)
    return left < renew_window(engine, cert)


def renew_window(engine: Engine, cert: Certificate) -> float:
    """How long before its expiry ``cert`` is renewed: ``renew_before``, but at most a
    third of its lifetime (as certbot and Caddy do). A certificate that lives less
    than ``renew_before`` would otherwise be due again the moment it is issued, and be
    ordered anew every few minutes."""
    certs = engine.config.certificates
    assert certs is not None
    lifetime = cert.not_after - issued_at(cert.fullchain_pem)
    return min(certs.renew_before, lifetime / 3) if lifetime > 0 else certs.renew_before


@functools.lru_cache(maxsize=64)
def issued_at(fullchain_pem: str) -> float:
    """The leaf's ``notBefore`` (epoch seconds)."""
    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(fullchain_pem.encode())
    return leaf.not_valid_before_utc.timestamp()


def _cached(engine: Engine, service: str) -> Certificate | None:
    cache: dict[str, tuple[float, Certificate | None]] = engine.__dict__.setdefault(
        "_certificates", {}
    )
    hit = cache.get(service)
    if hit is None or time.monotonic() - hit[0] > REREAD:
        cert, _ = CertStore(engine).load(service)
        hit = cache[service] = (time.monotonic(), cert)
    return hit[1]


def certificate_status(engine: Engine, service: str) -> dict[str, Any] | None:
    """``status``'s and the metrics' view: serial, expiry, authority (no key); None
    without ``tls`` or when no store gives one."""
    if engine.config.services[service].tls is None:
        return None
    try:
        cert = _cached(engine, service)
    except Exception:  # a status line must not fail over a store
        return None
    if cert is None:
        return None
    doc = cert.public()
    doc.pop("names")
    return doc


def _may_try(engine: Engine, service: str) -> bool:
    """A renewal is tried again after ``REREAD``, not every round (each attempt costs
    every authority an order): the last attempt's time is kept in the state, so a
    ``check`` that cron starts every minute, a new process each time, waits too."""
    last = (engine.store.data_state(service) or {}).get("certificate_tried")
    return not (isinstance(last, (int, float)) and 0 <= time.time() - last < REREAD)


def _tried(engine: Engine, service: str) -> None:
    doc = engine.store.data_state(service) or {"stores": {}}
    doc["certificate_tried"] = time.time()
    engine.store.set_data_state(service, doc)


def _remember(engine: Engine, service: str, cert: Certificate) -> None:
    engine.__dict__.setdefault("_certificates", {})[service] = (time.monotonic(), cert)


def _judge(
    engine: Engine, service: str, verdict: Verdict, cert: Certificate | None, served: str | None
) -> Verdict:
    if cert is None:
        why = "no certificate in the stores (run `failover certs`)"
    elif cert.not_after - time.time() < renew_window(engine, cert) / 2:
        why = (
            f"certificate {cert.serial} expires {_iso(cert.not_after)}: less than half of "
            "its renewal window left"
        )
    else:
        why = _other(engine, service, cert, served)
    if not why:
        return verdict
    row = engine.store.service(service)
    if verdict.exit_code != CheckCode.OK or row is None or not row.active:
        return verdict
    return replace(verdict, exit_code=CheckCode.WARNING, message=f"{verdict.message}; {why}")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def renew(engine: Engine, service: str) -> Certificate | None:
    """Issue, store, install on the live host and reload, under the service's
    certificate lock (one watcher renews); None when another watcher holds it or no
    authority issued (logged and announced as ``certificate_failed``)."""
    from failover.state import Lease

    lease = engine.store.acquire(f"certificate:{service}", LOCK_TTL)
    if not isinstance(lease, Lease):
        engine.log(f"{service}: another watcher is renewing its certificate")
        return None
    try:
        fresh, _ = CertStore(engine).load(service)  # renewed by another watcher meanwhile?
        if fresh is not None and not due(engine, fresh):
            _remember(engine, service, fresh)
            return fresh
        return _renew(engine, service)
    finally:
        engine.store.release(lease)


def _renew(engine: Engine, service: str) -> Certificate | None:
    from failover.certs import IssueFailed
    from failover.certs import issue

    _tried(engine, service)
    try:
        issued = issue(engine, service)
    except IssueFailed as exc:
        announce_failed(engine, service, exc)
        return None
    cert = issued.certificate
    _remember(engine, service, cert)
    announce_renewed(engine, service, issued, install_live(engine, service, cert))
    return cert


def announce_failed(engine: Engine, service: str, exc: Exception) -> None:
    engine.log(f"{service}: certificate not issued: {exc}")
    engine.announce("certificate_failed", service, status="failed", reason=str(exc))


def announce_renewed(engine: Engine, service: str, issued: Issued, installed: str) -> None:
    """Said once per certificate (its serial is the notice's key)."""
    cert = issued.certificate
    engine.log(f"{service}: {issued.detail()}; {installed}")
    engine.announce(
        "certificate_renewed",
        service,
        status="succeeded",
        reason=f"{issued.detail()}; {installed}",
        key=f"certificate-{cert.serial}",
        serial=cert.serial,
        not_after=cert.not_after,
        authority=cert.authority,
    )


def install_live(engine: Engine, service: str, cert: Certificate) -> str:
    """``cert`` written on the live host (``reload`` run there) and on the warm standby;
    what happened. A host that cannot take it is said; ``check`` then warns that the
    live host serves another certificate than the stored one."""
    from failover.engine import standby

    row = engine.store.service(service)
    active: dict[str, Any] | None = row.active if row is not None else None
    if not active:
        return "no live host to install it on"
    said = [_install(engine, service, active, cert, reload=True)]
    spare = standby.current(engine, service) if standby.wanted(engine, service) else None
    if spare is not None:
        said.append(_install(engine, service, spare, cert, reload=False))
    return "; ".join(said)


def _install(
    engine: Engine, service: str, host: dict[str, Any], cert: Certificate, *, reload: bool
) -> str:
    tls = engine.config.services[service].tls
    assert tls is not None
    provider = engine.provider(str(host["provider"]))
    host_id = str(host["host_id"])
    try:
        for path, text in ((tls.cert_file, cert.fullchain_pem), (tls.key_file, cert.key_pem)):
            _write(provider, host_id, path, text)
        if reload and tls.reload:
            result = provider.exec_on_host(host_id, tls.reload, timeout=60)
            if result.status != 0:
                return f"installed on {host_id}; reload exited {result.status}"
    except Exception as exc:  # the host cannot take it (gone, no exec channel): said
        return f"not installed on {host_id}: {type(exc).__name__}: {exc}"
    return f"installed on {host_id}" + ("; reloaded" if reload and tls.reload else "")


def _write(provider: Any, host: str, path: str, text: str) -> None:
    quoted, part = shlex.quote(path), shlex.quote(path + ".new")
    command = (
        f'umask 077 && mkdir -p "$(dirname {quoted})" && cat > {part} && '
        f"chmod 600 {part} && mv {part} {quoted}"
    )
    result = provider.exec_on_host(host, command, stdin=io.BytesIO(text.encode()), timeout=60)
    if result.status != 0:
        raise RuntimeError(f"writing {path} exited {result.status}: {result.stderr[-200:]}")
