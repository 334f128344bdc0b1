"""``failover certs [SERVICE] [--renew] [--json]`` (contract section 13): issues what is
missing, renews what is due (everything with ``--renew``) and lists each certificate
with the stores that hold it. Never a private key in what it prints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

from failover.clikit import Exit
from failover.clikit import load
from failover.clikit import open_engine
from failover.clikit import show
from failover.exitcodes import ExitCode

if TYPE_CHECKING:
    from failover.engine import Engine


def certs_command(
    service: str | None, renew: bool, as_json: bool, config: Any, state_dir: Any
) -> int:
    conf = load(config, state_dir)
    names = [n for n, s in conf.services.items() if s.tls is not None]
    if service is not None:
        if service not in conf.services:
            raise Exit(ExitCode.USAGE, f"no service named {service!r}")
        if service not in names:
            raise Exit(ExitCode.USAGE, f"services.{service}.tls is not set: it has no certificate")
        names = [service]
    with open_engine(conf, quiet=True) as engine:
        rows = [one(engine, name, renew) for name in names]
    show(as_json, {"certificates": rows}, lambda: _lines(rows))
    return ExitCode.of(all(not r.get("error") for r in rows))


def one(engine: Engine, service: str, renew: bool) -> dict[str, Any]:
    """One service's row, after issuing or renewing it when needed."""
    from failover.certs import IssueFailed
    from failover.certs import issue
    from failover.certs import names_of
    from failover.certs_renew import announce_failed
    from failover.certs_renew import announce_renewed
    from failover.certs_renew import due
    from failover.certs_renew import install_live
    from failover.certs_store import CertStore

    cert, stores = CertStore(engine).load(service)
    row: dict[str, Any] = {"service": service, "names": names_of(engine, service)}
    if cert is None or renew or due(engine, cert):
        try:
            issued = issue(engine, service)
        except IssueFailed as exc:
            announce_failed(engine, service, exc)
            row["error"] = str(exc)
        else:
            cert, stores = issued.certificate, issued.stores
            row["issued"] = issued.detail()
            row["installed"] = install_live(engine, service, cert)
            announce_renewed(engine, service, issued, row["installed"])
    if cert is not None:
        row.update(cert.public())
    row["stores"] = stores
    return row


def _lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    import time

    for row in rows:
        if row.get("serial"):
            until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(row["not_after"]))
            yield f"{row['service']}: {row['serial']} until {until} from {row['authority']}"
        else:
            yield f"{row['service']}: no certificate"
        for key in ("issued", "installed", "error"):
            if row.get(key):
                yield f"  {key}: {row[key]}"
        stores = ", ".join(f"{k} {v}" for k, v in row["stores"].items())
        yield f"  stores: {stores or 'none'}"
