"""``failover dns sync``: every DNS provider's records set to the active host now
(contract section 12). ``cli.py`` declares the command; its body is here."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from failover.clikit import Exit
from failover.clikit import err
from failover.clikit import load
from failover.clikit import open_engine
from failover.clikit import service_names
from failover.clikit import show
from failover.engine.dnssync import ServiceSync
from failover.engine.dnssync import sync
from failover.exitcodes import ExitCode


def sync_command(
    config: Path | None,
    state_dir: Path | None,
    service: str | None,
    *,
    force: bool,
    yes: bool,
    as_json: bool,
) -> int:
    conf = load(config, state_dir)
    names = service_names(conf, service)

    def confirm(overwrites: list[str]) -> bool:
        # Records a newer move wrote: named before anything is written over them.
        for line in overwrites:
            err(f"would overwrite: {line}")
        if yes:
            return True
        if not sys.stdin.isatty():
            raise Exit(ExitCode.USAGE, "refusing to overwrite without --yes when not on a terminal")
        return typer.confirm("overwrite these records?")

    with open_engine(conf, quiet=True) as engine:
        results = sync(engine, names, force=force, confirm=confirm)
    doc = {"services": [r.to_dict() for r in results]}
    show(as_json, doc, lambda: _lines(results))
    return ExitCode.of(all(r.ok() for r in results))


def _lines(results: list[ServiceSync]) -> list[str]:
    out = []
    for r in results:
        if not r.domains:
            out.append(f"{r.service}: not live (or a run is in progress): nothing to sync")
        for domain, providers in r.domains.items():
            errors = r.errors.get(domain, {})
            parts = [
                f"{p} {state}" + (f" ({errors[p]})" if p in errors else "")
                for p, state in providers.items()
            ]
            out.append(f"{r.service} {domain}: " + ", ".join(parts))
    return out
