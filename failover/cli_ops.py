"""The bodies of the operator commands ``destroy``, ``systemd`` and ``state migrate``;
``cli.py`` declares them and calls these (imported when the command runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from failover.clikit import GLOBAL
from failover.clikit import Exit
from failover.clikit import emit_json
from failover.clikit import err
from failover.clikit import load
from failover.clikit import one_service
from failover.clikit import open_engine
from failover.clikit import out
from failover.clikit import show
from failover.exitcodes import ExitCode


def destroy_command(
    config: Path | None, state_dir: Path | None, service: str | None, *, yes: bool, as_json: bool
) -> int:
    from failover.engine.destroy import destroy_service

    conf, name = one_service(config, state_dir, service)
    if not yes:
        if not sys.stdin.isatty():
            raise Exit(ExitCode.USAGE, "refusing to destroy without --yes when not on a terminal")
        if not typer.confirm(f"destroy every host of {name} and forget it?"):
            return ExitCode.FAILED
    with open_engine(conf, quiet=True) as engine:
        doc = destroy_service(engine, name, unlisted_ok=yes)
    for warning in doc.get("warnings", []):
        err(f"warning: {warning}")
    lines = [f"destroyed {h['provider']} {h['host_id']}" for h in doc["destroyed"]]
    lines += [
        f"NOT destroyed: {h['provider']} {h['host_id'] or '(its hosts)'}: {h['error']}"
        for h in doc["failed"]
    ]
    lines.append(
        f"{name}: forgotten (the journal is kept; DNS is left as it is)"
        if doc["ok"]
        else f"{name}: {doc['why']}"
    )
    show(as_json, doc, lambda: lines)
    return ExitCode.of(doc["ok"])


def systemd_command(
    write: Path | None,
    config: Path | None,
    *,
    user: str,
    every: str,
    metrics_port: int | None,
) -> int:
    from failover import systemd as units

    path = config or GLOBAL["config"]
    where = path.resolve() if path else Path("/etc/failover/failover.yaml")
    try:
        made, warnings = units.for_config(
            units.executable(), where, user=user, every=every, metrics_port=metrics_port
        )
    except units.BadOption as exc:
        raise Exit(ExitCode.USAGE, str(exc)) from None
    for warning in warnings:
        err(f"warning: {warning}")
    if write is None:
        for name, text in made.files().items():
            out(f"# {name}\n{text}")
        return ExitCode.SUCCESS
    for written in units.write(made, write):
        out(f"wrote {written}")
    return ExitCode.SUCCESS


def migrate_command(
    config: Path | None, state_dir: Path | None, to: str, *, force: bool, as_json: bool
) -> int:
    from failover.state.migrate import Refused
    from failover.state.migrate import migrate_config

    try:
        doc = migrate_config(load(config, state_dir, notify=False), to, force=force)
    except Refused as exc:
        raise Exit(ExitCode.USAGE if exc.usage else ExitCode.FAILED, str(exc)) from None
    show(as_json, doc, lambda: [doc["message"]])
    return ExitCode.SUCCESS


def notify_test_command(config: Path | None, state_dir: Path | None, *, as_json: bool) -> int:
    from failover.delivery import Notifier

    conf = load(config, state_dir)
    notifier = Notifier(conf, err)
    if not notifier.targets:
        raise Exit(ExitCode.USAGE, f"{conf.path}: no `notify:` targets to test")
    results = notifier.test()
    show(
        as_json,
        {"results": results},
        lambda: (
            f"{r['target']} ({r['type']}): {'ok' if r['ok'] else 'FAILED'}: {r['detail']}"
            for r in results
        ),
    )
    return ExitCode.of(all(r["ok"] for r in results))


def demo_command(*, keep: Path | None, as_json: bool) -> int:
    from failover.demo import run_demo

    say = (lambda line: None) if as_json else (lambda line: out(line))
    doc = run_demo(say, keep=keep)
    if as_json:
        emit_json(doc)
    return ExitCode.of(doc.get("recovered_after_s") is not None)
