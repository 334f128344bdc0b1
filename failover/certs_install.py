"""The stored certificate written on a new host before its service starts (section 13).

Every deploy, failover, move, drill and standby asks :func:`prepare` for the service's
run settings: the certificate's chain and key ride in the host's environment (the
provider's own channel: the local host's process, SSH, cloud-init user-data) and a first
``setup`` command writes them to ``cert_file`` and ``key_file`` (mode 0600) in the
host's working directory, so the service loads them at start and an https probe checks
them at once. Only a deploy issues a missing certificate; a move never places an order
(an authority's weekly limit would end repeated drills), and a service whose certificate
no store gives fails the run rather than coming up without TLS.
"""

from __future__ import annotations

import base64
import shlex
from typing import TYPE_CHECKING
from typing import Any

from failover.redact import register_secret

if TYPE_CHECKING:
    from failover.certs_store import Certificate
    from failover.config import ServiceConfig
    from failover.engine import Engine

CERT_ENV, KEY_ENV = "FAILOVER_TLS_CERT", "FAILOVER_TLS_KEY"


class CertificateUnavailable(Exception):
    """No store gives the service's certificate (and this run may not issue one)."""


def prepare(engine: Engine, service: str, svc: ServiceConfig, kind: str) -> tuple[Any, str]:
    """``svc`` with its certificate installed by the first setup command, and what the
    step says about it ("" without ``tls``)."""
    if svc.tls is None:
        return svc, ""
    from failover.certs import IssueFailed
    from failover.certs import issue
    from failover.certs_store import CertStore

    cert, stores = CertStore(engine).load(service)
    note = f"; certificate {cert.serial} from the stores" if cert else ""
    if cert is None and kind == "deploy":
        try:
            issued = issue(engine, service)
        except IssueFailed as exc:
            raise CertificateUnavailable(f"{service}: {exc}") from None
        cert, note = issued.certificate, "; " + issued.detail()
    if cert is None:
        shown = ", ".join(f"{k}: {v}" for k, v in stores.items()) or "no store"
        raise CertificateUnavailable(
            f"{service}: no store gives its certificate ({shown}); nothing is issued on a "
            f"{kind}'s path: run `failover certs {service}` first"
        )
    return with_certificate(svc, cert), note


def with_certificate(svc: ServiceConfig, cert: Certificate) -> ServiceConfig:
    assert svc.tls is not None
    chain = base64.b64encode(cert.fullchain_pem.encode()).decode()
    key = base64.b64encode(cert.key_pem.encode()).decode()
    register_secret(key)
    run = svc.run.model_copy(
        update={
            "env": {**svc.run.env, CERT_ENV: chain, KEY_ENV: key},
            "setup": [write_command(svc.tls.cert_file, svc.tls.key_file), *svc.run.setup],
        }
    )
    return svc.model_copy(update={"run": run})


def write_command(cert_file: str, key_file: str) -> str:
    """A POSIX shell line writing both files, private from the first byte (no braces:
    setup commands take ``{port}``-style placeholders)."""
    cert, key = shlex.quote(cert_file), shlex.quote(key_file)
    return (
        f'umask 077 && mkdir -p "$(dirname {cert})" "$(dirname {key})" && '
        f'printf %s "${CERT_ENV}" | base64 -d > {cert} && '
        f'printf %s "${KEY_ENV}" | base64 -d > {key} && chmod 600 {cert} {key} && '
        # Local and ssh hosts run setup in the shell that then execs the service: the
        # service's environment keeps no copy of the key.
        f"unset {CERT_ENV} {KEY_ENV}"
    )
