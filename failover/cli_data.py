"""The bodies of ``backup`` and ``backups``; ``cli.py`` declares them and calls these
(imported when the command runs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from failover import output
from failover.clikit import Exit
from failover.clikit import load
from failover.clikit import open_engine
from failover.clikit import service_names
from failover.clikit import show
from failover.exitcodes import ExitCode

if TYPE_CHECKING:
    from failover.config import Config


def backup_command(
    config: Path | None, state_dir: Path | None, service: str | None, *, as_json: bool
) -> int:
    from failover.data.report import backup_document
    from failover.data.report import backup_lines

    conf = load(config, state_dir)
    names = _data_services(conf, service)
    if len(names) > 1:
        raise Exit(ExitCode.USAGE, f"name the service: {', '.join(names)} have data")
    with open_engine(conf, quiet=as_json) as engine:  # a terminal: bytes, rate on stderr
        doc = backup_document(engine, names[0])
    show(as_json, doc, lambda: backup_lines(doc))
    ok = doc.get("error") is None and all(v == "ok" for v in doc["stores"].values())
    return ExitCode.of(ok)


def backups_command(
    config: Path | None, state_dir: Path | None, service: str | None, *, as_json: bool
) -> int:
    from failover.data.plane import catalog

    conf = load(config, state_dir, notify=False)
    with open_engine(conf, quiet=True) as engine:
        rows = [row for n in _data_services(conf, service) for row in catalog(engine, n)]
    rows.sort(key=lambda r: r["id"], reverse=True)
    show(as_json, {"backups": rows}, lambda: output.backups_lines(rows))
    return ExitCode.SUCCESS


def _data_services(conf: Config, service: str | None) -> list[str]:
    names = [n for n in service_names(conf, service) if conf.services[n].data is not None]
    if not names:
        where = f"services.{service}.data" if service else "no service has a `data` section"
        raise Exit(ExitCode.USAGE, f"{where}: nothing to back up (see README, Data)")
    return names
