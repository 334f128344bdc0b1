"""The ``failover`` command: parses, calls :mod:`failover`, hands the documents it gets
back to :mod:`failover.output`, prints. Nothing else.

Imports of the engine, rich and the providers happen inside the commands, so that
``failover --help`` and a cron-driven ``check`` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated
from typing import Any

import typer

from failover.clikit import GLOBAL
from failover.clikit import ConfigOpt
from failover.clikit import JsonOpt
from failover.clikit import ServiceArg
from failover.clikit import StateOpt
from failover.clikit import complete_providers
from failover.clikit import out
from failover.clikit import run
from failover.exitcodes import CheckCode

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
        from failover.cli_config import init_command

        return init_command(path, provider, force=force)

    run(go)


@app.command()
def validate(
    config: ConfigOpt = None, state_dir: StateOpt = None, as_json: JsonOpt = False
) -> None:
    """Check the config (and the templates it uses); exit 0 or 2."""

    def go() -> int:
        from failover.cli_config import validate_command

        return validate_command(config, state_dir, as_json=as_json)

    run(go, as_json=as_json)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editors)."""

    def go() -> int:
        from failover.cli_config import schema_command

        return schema_command()

    run(go)


@app.command()
def doctor(config: ConfigOpt = None, state_dir: StateOpt = None, as_json: JsonOpt = False) -> None:
    """For each provider and the DNS zone: API reachable, credentials accepted, blocked?"""

    def go() -> int:
        from failover.cli_status import doctor_command

        return doctor_command(config, state_dir, as_json=as_json)

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
        from failover.cli_moves import deploy_command

        return deploy_command(
            config, state_dir, service, provider, yes=yes, every=every, as_json=as_json
        )

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
        from failover.cli_moves import move_command

        return move_command(config, state_dir, service, to, yes=yes, as_json=as_json)

    run(go, as_json=as_json)


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
        from failover.cli_moves import plan_command

        return plan_command(config, state_dir, service, to, as_json=as_json)

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
        from failover.cli_status import status_command

        return status_command(config, state_dir, service, html=html, as_json=as_json)

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
        from failover.cli_status import check_command

        return check_command(config, state_dir, service, dry_run=dry_run, as_json=as_json)

    run(go, usage=CheckCode.UNKNOWN, failure=CheckCode.UNKNOWN)


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
        from failover.cli_status import watch_command

        return watch_command(
            config,
            state_dir,
            metrics_port=metrics_port,
            metrics_address=metrics_address,
            rounds=rounds,
        )

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
        from failover.cli_moves import drill_command

        return drill_command(
            config,
            state_dir,
            service,
            to,
            junit=junit,
            html=html,
            cold=cold,
            as_json=as_json,
        )

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
        from failover.cli_status import history_command

        return history_command(config, state_dir, service, limit=limit, as_json=as_json)

    run(go, as_json=as_json)


@app.command()
def backup(
    service: ServiceArg = None,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take a backup of SERVICE's data now, on its live host, into every store."""

    def go() -> int:
        from failover.cli_data import backup_command

        return backup_command(config, state_dir, service, as_json=as_json)

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
        from failover.cli_data import backups_command

        return backups_command(config, state_dir, service, as_json=as_json)

    run(go, as_json=as_json)


@app.command()
def certs(
    service: ServiceArg = None,
    renew: Annotated[bool, typer.Option("--renew", help="renew every certificate now")] = False,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Certificates: issue what is missing, renew what is due, list them."""
    from failover.certs_cli import certs_command

    run(lambda: certs_command(service, renew, as_json, config, state_dir))


@app.command()
def demo(
    as_json: JsonOpt = False,
    keep: Annotated[Path | None, typer.Option("--keep", help="keep the demo's files here")] = None,
) -> None:
    """The embedded end-to-end run: a provider cuts the service off; it moves."""

    def go() -> int:
        from failover.cli_ops import demo_command

        return demo_command(keep=keep, as_json=as_json)

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


dns_app = typer.Typer(
    help="DNS providers: `dns sync` sets each to the active host.", no_args_is_help=True
)
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
        from failover.cli_ops import notify_test_command

        return notify_test_command(config, state_dir, as_json=as_json)

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
