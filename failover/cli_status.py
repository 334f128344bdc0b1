"""The bodies of ``doctor``, ``status``, ``check``, ``watch`` and ``history``: the
commands that look (and, for ``check`` and ``watch``, act as the policy says); ``cli.py``
declares them and calls these."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from failover import output
from failover.clikit import Exit
from failover.clikit import emit_json
from failover.clikit import load
from failover.clikit import open_engine
from failover.clikit import out
from failover.clikit import service_names
from failover.clikit import show
from failover.clikit import tty
from failover.exitcodes import CheckCode
from failover.exitcodes import ExitCode


def doctor_command(config: Path | None, state_dir: Path | None, *, as_json: bool) -> int:
    with open_engine(load(config, state_dir, notify=False), quiet=True) as engine:
        report = engine.doctor()
    show(as_json, report, lambda: output.doctor_lines(report))
    return ExitCode.of(report["ok"])


def status_command(
    config: Path | None,
    state_dir: Path | None,
    service: str | None,
    *,
    html: str | None,
    as_json: bool,
) -> int:
    import shutil

    if html is not None and as_json:
        raise Exit(
            ExitCode.USAGE,
            "--html and --json: give one (the page's status.json is what --json prints)",
        )
    conf = load(config, state_dir, notify=False)
    names = service_names(conf, service)
    if html is not None:
        from failover.statuspage import status_html

        return status_html(conf, names, None if html == "-" else Path(html))
    from failover.watcher_report import watcher_lines

    with open_engine(conf, quiet=True) as engine:
        doc = engine.status(names)
        watchers = engine.watchers.document()  # None with one watcher (SQLite)
    full: dict[str, Any] = {"services": doc}
    if watchers is not None:
        full["watchers"] = watchers
    show(
        as_json,
        full,
        lambda: [
            *(
                [output.status_table(doc, shutil.get_terminal_size().columns)]
                if tty()
                else output.status_lines(doc)
            ),
            *watcher_lines(watchers),
        ],
    )
    return ExitCode.SUCCESS


def check_command(
    config: Path | None,
    state_dir: Path | None,
    service: str | None,
    *,
    dry_run: bool,
    as_json: bool,
) -> int:
    def round_() -> int:
        conf = load(config, state_dir)
        names = service_names(conf, service)
        from failover.engine import ServiceCheck
        from failover.state.gateway import StoreUnreachable

        try:
            with open_engine(conf, quiet=as_json) as engine:
                results = engine.check(names, dry_run=dry_run)
        except StoreUnreachable as exc:
            # Never "down": a watcher that cannot reach the shared state decides nothing.
            msg = f"{exc}; {', '.join(names)}: nothing decided, nothing moved"
            results = [ServiceCheck(",".join(names), "unknown", CheckCode.UNKNOWN, "none", msg)]
        code = output.worst(r.exit_code for r in results)
        if as_json:
            emit_json(output.check_doc(results, code))
        else:
            out(output.nagios_line(results, code))
        return code

    try:
        return round_()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        # Nagios shows "(No output on stdout)" for a plugin that prints nothing: every
        # path prints its one line (or document), a bad config or state included.
        return _check_unknown(exc, as_json)


def watch_command(
    config: Path | None,
    state_dir: Path | None,
    *,
    metrics_port: int | None,
    metrics_address: str,
    rounds: int | None,
) -> int:
    import ipaddress

    from failover.watch import Watcher

    try:
        ipaddress.ip_address(metrics_address)
    except ValueError:
        raise Exit(
            ExitCode.USAGE,
            f"--metrics-address {metrics_address!r}: not an IP address (e.g. 127.0.0.1, ::1)",
        ) from None
    conf = load(config, state_dir)
    try:
        watcher = Watcher(
            conf,
            lambda line: out(line),
            metrics_port=metrics_port,
            metrics_address=metrics_address,
        )
    except OSError as exc:
        raise Exit(
            ExitCode.USAGE,
            f"--metrics-port {metrics_port}: cannot listen on {metrics_address}: "
            f"{exc.strerror or exc}; pick another port",
        ) from None
    return watcher.run(rounds)


def history_command(
    config: Path | None, state_dir: Path | None, service: str | None, *, limit: int, as_json: bool
) -> int:
    conf = load(config, state_dir, notify=False)
    name = service_names(conf, service)[0] if service else None
    with open_engine(conf, quiet=True) as engine:
        events = engine.history(name, limit)
    show(as_json, {"events": events}, lambda: output.history_lines(events))
    return ExitCode.SUCCESS


def _check_unknown(exc: Exception, as_json: bool) -> int:
    """``check``'s answer when it could not even run its round: UNKNOWN, with why."""
    from failover.config import ConfigError
    from failover.state import StateError

    if isinstance(exc, ConfigError):
        message = "; ".join(exc.problems)
    elif isinstance(exc, StateError):
        message = f"state: {exc}"
    elif isinstance(exc, Exit):
        message = exc.message
    else:
        from providers.base import ProviderError

        if os.environ.get("FAILOVER_DEBUG"):
            raise exc
        message = str(exc) if isinstance(exc, ProviderError) else f"internal error: {exc!r}"
    # Once, on stdout: cron's `>> log 2>&1` and Nagios read the same line (issue 21).
    if as_json:
        emit_json({"services": [], "exit_code": int(CheckCode.UNKNOWN), "error": message})
    else:
        out(output.unknown_line(message))
    return CheckCode.UNKNOWN
