"""The ``failover`` command: parses, calls :mod:`failover`, hands the documents it gets
back to :mod:`failover.output`, prints. Nothing else.

Imports of the engine, rich and the providers happen inside the commands, so that
``failover --help`` and a cron-driven ``check`` start fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any

import typer

from failover import output
from failover.clikit import GLOBAL
from failover.clikit import ConfigOpt
from failover.clikit import Exit
from failover.clikit import JsonOpt
from failover.clikit import ServiceArg
from failover.clikit import StateOpt
from failover.clikit import check_provider
from failover.clikit import complete_providers
from failover.clikit import emit_json
from failover.clikit import err
from failover.clikit import lines
from failover.clikit import load
from failover.clikit import one_service
from failover.clikit import open_engine
from failover.clikit import out
from failover.clikit import report_outcome
from failover.clikit import run
from failover.clikit import service_names
from failover.clikit import show
from failover.clikit import tty
from failover.exitcodes import CheckCode
from failover.exitcodes import ExitCode

if TYPE_CHECKING:
    from failover.config import Config
    from failover.engine import Engine

app = typer.Typer(
    name="failover",
    help="Keep a web service reachable when the company hosting it cuts it off.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_type_column = typer.core.TyperOption.display_type_rich


def _no_bool_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    # A flag takes no value: `--force <bool>` in --help reads as if it wanted one.
    return None if self.is_flag else _type_column(self, ctx)


typer.core.TyperOption.display_type_rich = _no_bool_type  # type: ignore[method-assign]

# --------------------------------------------------------------------------- commands


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write it")] = Path("failover.yaml"),
    provider: Annotated[str, typer.Option(help="local | aws | gcp | azure | ssh")] = "local",
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a commented starter config."""

    def go() -> int:
        from failover.starter import starter

        if provider not in ("local", "aws", "gcp", "azure", "ssh"):
            raise Exit(
                ExitCode.USAGE,
                f"--provider must be local, aws, gcp, azure or ssh, not {provider!r}",
            )
        if path.exists() and not force:
            raise Exit(ExitCode.USAGE, f"{path} exists; pass --force to overwrite it")
        path.write_text(starter(provider))
        out(f"wrote {path}; next: `failover validate -c {path}`, then `failover deploy`")
        return ExitCode.SUCCESS

    run(go)


@app.command()
def validate(
    config: ConfigOpt = None, state_dir: StateOpt = None, as_json: JsonOpt = False
) -> None:
    """Check the config (and the templates it uses); exit 0 or 2."""

    def go() -> int:
        from failover.config import ConfigError
        from failover.render import TemplateError
        from failover.render import host_spec

        try:
            conf = load(config, state_dir)
            for name, svc in conf.services.items():
                # The runner's own function, so what passes here is what a move boots.
                try:
                    host_spec(name, svc, generation=1, provider="check", stores=conf.stores)
                except TemplateError as exc:
                    raise ConfigError([f"services.{name}.run: {exc}"]) from None
        except ConfigError as exc:
            if not as_json:
                raise
            emit_json({"ok": False, "problems": exc.problems})
            return ExitCode.USAGE
        if as_json:
            emit_json(
                {
                    "ok": True,
                    "path": str(conf.path),
                    "services": list(conf.services),
                    "providers": [p["name"] for p in conf.providers],
                    "dns": conf.dns_settings().type,
                    "notify": [t.name or f"{t.type}-{i}" for i, t in enumerate(conf.notify)],
                }
            )
            return ExitCode.SUCCESS
        out(
            f"{conf.path}: valid ({len(conf.services)} service(s), "
            f"{len(conf.providers)} provider(s), dns {conf.dns_settings().type})"
        )
        return ExitCode.SUCCESS

    run(go, as_json=as_json)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editors)."""

    def go() -> int:
        from failover.config import json_schema

        emit_json(json_schema())
        return ExitCode.SUCCESS

    run(go)


@app.command()
def doctor(config: ConfigOpt = None, state_dir: StateOpt = None, as_json: JsonOpt = False) -> None:
    """For each provider and the DNS zone: API reachable, credentials accepted, blocked?"""

    def go() -> int:
        with open_engine(load(config, state_dir, notify=False), quiet=True) as engine:
            report = engine.doctor()
        show(as_json, report, lambda: output.doctor_lines(report))
        return ExitCode.of(report["ok"])

    run(go, as_json=as_json)


@app.command()
def deploy(
    service: ServiceArg = None,
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider", help="put it on this provider", autocompletion=complete_providers
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="do not ask before moving a live service")
    ] = False,
    every: Annotated[
        bool, typer.Option("--all", help="every service not live yet, side by side")
    ] = False,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make the service live: a host, restored, verified, DNS pointed at it."""

    def go() -> int:
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

    run(go, as_json=as_json)


@app.command()
def move(
    service: ServiceArg = None,
    to: Annotated[
        str, typer.Option("--to", help="the provider to move to", autocompletion=complete_providers)
    ] = "",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A planned move (a provider gave notice): the same steps as a failover."""

    def go() -> int:
        conf, name = one_service(config, state_dir, service)
        check_provider(conf, to, required=True)
        with open_engine(conf, quiet=as_json) as engine:
            if not yes:
                _confirm_move(engine, name, to, "move")
            outcome = engine.run(name, "move", reason=f"planned move to {to}", to=to)
        return report_outcome(outcome, as_json)

    run(go, as_json=as_json)


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


@app.command()
def plan(
    service: ServiceArg = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="plan a move to this provider", autocompletion=complete_providers
        ),
    ] = None,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What a failover (or a move with --to) would do now, step by step, without doing it."""

    def go() -> int:
        conf, name = one_service(config, state_dir, service, notify=False)
        check_provider(conf, to)
        with open_engine(conf, quiet=True) as engine:
            row = engine.store.service(name)
            kind = "move" if to else ("failover" if row.active else "deploy")
            result = engine.plan(name, kind, to)
        show(as_json, result, lambda: output.plan_lines(result))
        return ExitCode.of(result["possible"])

    run(go, as_json=as_json)


@app.command()
def status(
    service: ServiceArg = None,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
    html: Annotated[
        str | None,
        typer.Option(
            "--html", help="the status page, to FILE (none or `-`: stdout)", metavar="[FILE]"
        ),
    ] = None,
) -> None:
    """Where each service lives now, its health, DNS, providers, last failover."""

    def go() -> int:
        import shutil

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

    run(go, as_json=as_json)


@app.command()
def check(
    service: ServiceArg = None,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="probe and report; change nothing")
    ] = False,
) -> None:
    """One round of probes (for cron); fails over when the policy says so.

    Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (monitoring-plugin convention)."""

    def go() -> int:
        try:
            return round_()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            # Nagios shows "(No output on stdout)" for a plugin that prints nothing: every
            # path prints its one line (or document), a bad config or state included.
            return _check_unknown(exc, as_json)

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

    run(go, usage=CheckCode.UNKNOWN, failure=CheckCode.UNKNOWN)


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


@app.command()
def watch(
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=1, max=65535, help="serve Prometheus metrics on 127.0.0.1:N"
        ),
    ] = None,
    metrics_address: Annotated[
        str, typer.Option("--metrics-address", help="address for the metrics endpoint")
    ] = "127.0.0.1",
    rounds: Annotated[
        int | None, typer.Option("--rounds", min=1, help="stop after N rounds")
    ] = None,
) -> None:
    """Probe every service each interval and act like `check`, until stopped."""

    def go() -> int:
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

    run(go)


@app.command()
def drill(
    service: ServiceArg = None,
    to: Annotated[
        str,
        typer.Option("--to", help="the provider to rehearse on", autocompletion=complete_providers),
    ] = "",
    junit: Annotated[Path | None, typer.Option("--junit", help="write a JUnit XML report")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="write an HTML timeline")] = None,
    cold: Annotated[
        bool, typer.Option("--cold", help="a fresh host even when a warm standby is on --to")
    ] = False,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """DR rehearsal: bring a host up on --to, restore, verify, time it, tear it down
    (with policy.standby: warm, on the standby, which is kept, unless --cold)."""

    def go() -> int:
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

    run(go, as_json=as_json)


state_app = typer.Typer(help="The state store (SQLite, or etcd for several watchers).")
app.add_typer(state_app, name="state")


@state_app.command("migrate")
def state_migrate(
    to: Annotated[
        str, typer.Option("--to", help="etcd: copy the SQLite state in; sqlite: copy it back")
    ] = "etcd",
    force: Annotated[
        bool,
        typer.Option("--force", help="replace what the target holds (a failed migration's)"),
    ] = False,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy this machine's SQLite state into the etcd that `state:` names, all or
    nothing (or, --to sqlite, that etcd's state back into the SQLite file).

    The journal, generations, hosts and notices come along; an interrupted run resumes
    on the other side. Refused when the target holds another history, unless --force."""

    def go() -> int:
        from failover.cli_ops import migrate_command

        return migrate_command(config, state_dir, to, force=force, as_json=as_json)

    run(go, as_json=as_json)


@app.command()
def history(
    service: ServiceArg = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most N events")] = 20,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The journal of deploys, moves, failovers and drills, newest first."""

    def go() -> int:
        conf = load(config, state_dir, notify=False)
        name = service_names(conf, service)[0] if service else None
        with open_engine(conf, quiet=True) as engine:
            events = engine.history(name, limit)
        show(as_json, {"events": events}, lambda: output.history_lines(events))
        return ExitCode.SUCCESS

    run(go, as_json=as_json)


def _data_services(conf: Config, service: str | None) -> list[str]:
    names = [n for n in service_names(conf, service) if conf.services[n].data is not None]
    if not names:
        where = f"services.{service}.data" if service else "no service has a `data` section"
        raise Exit(ExitCode.USAGE, f"{where}: nothing to back up (see README, Data)")
    return names


@app.command()
def backup(
    service: ServiceArg = None,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take a backup of SERVICE's data now, on its live host, into every store."""

    def go() -> int:
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

    run(go, as_json=as_json)


@app.command()
def backups(
    service: ServiceArg = None,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The complete backups of SERVICE (default: every service with data), newest first."""

    def go() -> int:
        from failover.data.plane import catalog

        conf = load(config, state_dir, notify=False)
        with open_engine(conf, quiet=True) as engine:
            rows = [row for n in _data_services(conf, service) for row in catalog(engine, n)]
        rows.sort(key=lambda r: r["id"], reverse=True)
        show(as_json, {"backups": rows}, lambda: output.backups_lines(rows))
        return ExitCode.SUCCESS

    run(go, as_json=as_json)


@app.command()
def certs(
    service: ServiceArg = None,
    renew: Annotated[bool, typer.Option("--renew", help="renew every certificate now")] = False,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Certificates (section 13): issue what is missing, renew what is due, list them."""
    from failover.certs_cli import certs_command

    run(lambda: certs_command(service, renew, as_json, config, state_dir))


@app.command()
def demo(
    as_json: JsonOpt = False,
    keep: Annotated[Path | None, typer.Option("--keep", help="keep the demo's files here")] = None,
) -> None:
    """The embedded end-to-end run: a provider cuts the service off; it moves."""

    def go() -> int:
        from failover.demo import run_demo

        say = (lambda line: None) if as_json else (lambda line: out(line))
        doc = run_demo(say, keep=keep)
        if as_json:
            emit_json(doc)
        return ExitCode.of(doc.get("recovered_after_s") is not None)

    run(go, as_json=as_json)


# --------------------------------------------------------------------------- operator's surface


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version

        try:
            number = version("failover")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        out(f"failover {number}")
        raise typer.Exit(0)


@app.callback()
def _options(
    config: ConfigOpt = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="print the version and exit", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Keep a web service reachable when the company hosting it cuts it off."""
    # `failover -c FILE status` as well as `failover status -c FILE` (the latter wins).
    GLOBAL["config"] = config


dns_app = typer.Typer(help="DNS providers (section 12).", no_args_is_help=True)
app.add_typer(dns_app, name="dns")


@dns_app.command("sync")
def dns_sync(
    service: ServiceArg = None,
    force: Annotated[bool, typer.Option(help="also overwrite what a newer move wrote")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every DNS provider's records of SERVICE set to the active host; exit 1 if one lags."""
    from failover.dnscli import sync_command

    run(lambda: sync_command(config, state_dir, service, force=force, yes=yes, as_json=as_json))


notify_app = typer.Typer(
    help="Notifications: the config's `notify:` targets.", no_args_is_help=True
)
app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def notify_test(
    config: ConfigOpt = None, state_dir: StateOpt = None, as_json: JsonOpt = False
) -> None:
    """Send one test event to every target and report each result; exit 1 if one failed."""

    def go() -> int:
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

    run(go, as_json=as_json)


@app.command()
def destroy(
    service: ServiceArg = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Destroy every host of the service and forget it (the journal is kept)."""

    def go() -> int:
        from failover.cli_ops import destroy_command

        return destroy_command(config, state_dir, service, yes=yes, as_json=as_json)

    run(go, as_json=as_json)


@app.command()
def systemd(
    write: Annotated[
        Path | None, typer.Option("--write", help="write the unit files into DIR")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="the config the units use [default: /etc/failover/failover.yaml]"
        ),
    ] = None,
    user: Annotated[str, typer.Option("--user", help="the dedicated user")] = "failover",
    every: Annotated[str, typer.Option("--every", help="how often the timer checks")] = "1min",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=1, max=65535, help="watch serves metrics on 127.0.0.1:N"
        ),
    ] = None,
) -> None:
    """Print (or --write) failover-watch.service, failover-check.service and .timer."""

    def go() -> int:
        from failover.cli_ops import systemd_command

        return systemd_command(write, config, user=user, every=every, metrics_port=metrics_port)

    run(go)


def main() -> None:
    from failover.statuspage import optional_file

    sys.argv[1:] = optional_file(sys.argv[1:])
    app()


if __name__ == "__main__":
    main()
