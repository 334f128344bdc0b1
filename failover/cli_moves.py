"""The bodies of ``deploy``, ``move``, ``plan`` and ``drill``: the commands that put a
service somewhere (or rehearse it); ``cli.py`` declares them and calls these."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from failover import output
from failover.clikit import Exit
from failover.clikit import check_provider
from failover.clikit import emit_json
from failover.clikit import err
from failover.clikit import lines
from failover.clikit import one_service
from failover.clikit import open_engine
from failover.clikit import report_outcome
from failover.clikit import show
from failover.exitcodes import ExitCode

if TYPE_CHECKING:
    from failover.engine import Engine


def deploy_command(
    config: Path | None,
    state_dir: Path | None,
    service: str | None,
    provider: str | None,
    *,
    yes: bool,
    every: bool,
    as_json: bool,
) -> int:
    if every:
        from failover.deploy_all import command

        return command(config, state_dir, service, provider, as_json)
    conf, name = one_service(config, state_dir, service)
    check_provider(conf, provider)
    with open_engine(conf, quiet=as_json) as engine:
        active = engine.store.service(name).active
        if provider and active and active["provider"] != provider and not yes:
            # Live elsewhere: this is a move, and asks what `move` asks.
            _confirm_move(engine, name, provider, "deploy")
        outcome = engine.run(name, "deploy", reason="deploy", to=provider)
    return report_outcome(outcome, as_json)


def move_command(
    config: Path | None,
    state_dir: Path | None,
    service: str | None,
    to: str,
    *,
    yes: bool,
    as_json: bool,
) -> int:
    conf, name = one_service(config, state_dir, service)
    check_provider(conf, to, required=True)
    with open_engine(conf, quiet=as_json) as engine:
        if not yes:
            _confirm_move(engine, name, to, "move")
        outcome = engine.run(name, "move", reason=f"planned move to {to}", to=to)
    return report_outcome(outcome, as_json)


def plan_command(
    config: Path | None,
    state_dir: Path | None,
    service: str | None,
    to: str | None,
    *,
    as_json: bool,
) -> int:
    conf, name = one_service(config, state_dir, service, notify=False)
    check_provider(conf, to)
    with open_engine(conf, quiet=True) as engine:
        row = engine.store.service(name)
        kind = "move" if to else ("failover" if row.active else "deploy")
        result = engine.plan(name, kind, to)
    show(as_json, result, lambda: output.plan_lines(result))
    return ExitCode.of(result["possible"])


def drill_command(
    config: Path | None,
    state_dir: Path | None,
    service: str | None,
    to: str,
    *,
    junit: Path | None,
    html: Path | None,
    cold: bool,
    as_json: bool,
) -> int:
    conf, name = one_service(config, state_dir, service)
    check_provider(conf, to, required=True)
    with open_engine(conf, quiet=as_json) as engine:
        outcome = engine.drill(name, to, cold=cold)
    doc = output.drill_doc(outcome)
    if junit is not None:
        from failover.redact import redact_doc

        junit.write_text(output.junit_xml(redact_doc(doc)))
    if html is not None:
        from failover.statuspage import drill_html

        drill_html(doc, outcome.event, html)
    if as_json:
        emit_json(doc)
    else:
        lines(output.drill_lines(doc, to))
        if not outcome.ok:
            err(f"drill failed: {outcome.message}")
    return ExitCode.of(outcome.ok)


def _confirm_move(engine: Engine, name: str, to: str, command: str) -> None:
    """Show the plan and ask; without a terminal, refuse unless --yes was given."""
    if not sys.stdin.isatty():
        live = engine.store.service(name).active or {}
        where = f" (live on {live['provider']})" if live else ""
        raise Exit(
            ExitCode.USAGE,
            f"refusing to move {name}{where} to {to} without --yes when not on a terminal"
            if command == "deploy"
            else "refusing to move without --yes when not on a terminal",
        )
    lines(output.plan_lines(engine.plan(name, "move", to)))
    if not typer.confirm(f"move {name} to {to}?"):
        raise Exit(ExitCode.FAILED)
