"""The ``failover`` command: parses, calls :mod:`failover`, hands the documents it gets
back to :mod:`failover.output`, prints. Nothing else.

Imports of the engine, rich and the providers happen inside the commands, so that
``failover --help`` and a cron-driven ``check`` start fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from failover import output
from failover.exitcodes import CheckCode, ExitCode

if TYPE_CHECKING:
    from failover.config import Config
    from failover.engine import Engine, Outcome

app = typer.Typer(
    name="failover",
    help="Keep a web service reachable when the company hosting it cuts it off.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="config file [env: FAILOVER_CONFIG; default: ./failover.yaml]",
        show_default=False,
    ),
]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="state directory [env: FAILOVER_STATE_DIR; default: .failover/ beside the config]",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
ServiceArg = Annotated[
    str | None, typer.Argument(help="service name (optional with one service)", show_default=False)
]


class Exit(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _err(message: str) -> None:
    from failover.redact import redact

    sys.stderr.write(redact(message).rstrip("\n") + "\n")


def _out(text: str) -> None:
    from failover.redact import redact

    sys.stdout.write(redact(text).rstrip("\n") + "\n")


def _lines(lines: Iterable[str]) -> None:
    # One write per line, each redacted on its own: what the renderers return is printed
    # exactly as the commands printed it line by line before they moved to output.py.
    for line in lines:
        _out(line)


def _json(doc: Any) -> None:
    _out(json.dumps(doc, indent=2, default=str))


def _show(as_json: bool, doc: Any, text: Callable[[], Iterable[str]]) -> None:
    """``doc`` as JSON with ``--json``, else the lines ``text`` renders for people."""
    if as_json:
        _json(doc)
    else:
        _lines(text())


@contextmanager
def _errors(
    usage_code: int = ExitCode.USAGE, failure_code: int = ExitCode.FAILED
) -> Iterator[None]:
    """Turn every expected error into one line and an exit code; never a traceback."""
    from failover.config import ConfigError
    from failover.state import StateError

    try:
        yield
    except Exit:
        raise
    except ConfigError as exc:
        for problem in exc.problems:
            _err(problem)
        raise Exit(usage_code) from None
    except StateError as exc:
        _err(f"state: {exc}")
        raise Exit(failure_code) from None
    except KeyboardInterrupt:
        _err("interrupted")
        raise Exit(ExitCode.INTERRUPTED) from None
    except BrokenPipeError:
        # The reader (`| head`) went away: not an error of ours; keep Python quiet on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise Exit(ExitCode.SUCCESS) from None
    except Exception as exc:
        if os.environ.get("FAILOVER_DEBUG"):
            raise
        from providers.base import ProviderError

        if isinstance(exc, ProviderError):
            _err(str(exc))
        else:
            _err(
                f"internal error: {type(exc).__name__}: {exc} (run again with FAILOVER_DEBUG=1 "
                "for the traceback, and please report it)"
            )
        raise Exit(failure_code) from None


def _load(config: Path | None, state_dir: Path | None) -> Config:
    from failover import config as cfg
    from failover.redact import register_environment

    register_environment()
    return cfg.load(config, state_dir)


def _services(conf: Config, service: str | None, *, one: bool = False) -> list[str]:
    if service is not None:
        if service not in conf.services:
            raise Exit(
                ExitCode.USAGE,
                f"no service named {service!r} in {conf.path} (known: {', '.join(conf.services)})",
            )
        return [service]
    if one and len(conf.services) > 1:
        raise Exit(ExitCode.USAGE, f"name the service: {conf.path} has {', '.join(conf.services)}")
    return list(conf.services)


def _one(config: Path | None, state_dir: Path | None, service: str | None) -> tuple[Config, str]:
    """The config and the one service a command that acts on a single service is about."""
    conf = _load(config, state_dir)
    (name,) = _services(conf, service, one=True)
    return conf, name


def _provider(conf: Config, name: str | None, *, required: bool = False) -> None:
    """A provider named with ``--to``/``--provider`` must be one of the config's."""
    if required and not name:
        raise Exit(ExitCode.USAGE, "--to PROVIDER is required")
    if name is not None and name not in (known := conf.provider_settings()):
        raise Exit(ExitCode.USAGE, f"no provider named {name!r} (known: {', '.join(known)})")


def _tty() -> bool:
    return sys.stdout.isatty()


@contextmanager
def _engine(conf: Config, quiet: bool = False) -> Iterator[Engine]:
    from failover.engine import Engine

    on_step = None
    if _tty() and not quiet:

        def on_step(step: str, status: str, detail: str) -> None:
            line = output.progress_line(step, status, detail)
            if line is not None:
                _err(line)

    log = (lambda message: _err(message)) if os.environ.get("FAILOVER_VERBOSE") else None
    engine = Engine(conf, log=log, on_step=on_step)
    # SIGTERM (systemd, a CI runner's cancel) is handled like Ctrl-C: the run in flight
    # is rolled back or finished and journaled, and the command exits 130.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield engine
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(
    fn: Callable[[], int | None], usage: int = ExitCode.USAGE, failure: int = ExitCode.FAILED
) -> NoReturn:
    try:
        with _errors(usage, failure):
            code = fn() or ExitCode.SUCCESS
    except Exit as exc:
        if exc.message:
            _err(exc.message)
        raise typer.Exit(int(exc.code)) from None
    raise typer.Exit(int(code))


def _outcome(outcome: Outcome, as_json: bool) -> ExitCode:
    if as_json:
        _json(output.outcome_doc(outcome))
    else:
        (_out if outcome.ok else _err)(output.outcome_line(outcome))
    return ExitCode.of(outcome.ok)


# --------------------------------------------------------------------------- commands


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write it")] = Path("failover.yaml"),
    provider: Annotated[str, typer.Option(help="local | aws | gcp | azure")] = "local",
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a commented starter config."""

    def go() -> int:
        from failover.starter import starter

        if provider not in ("local", "aws", "gcp", "azure"):
            raise Exit(
                ExitCode.USAGE, f"--provider must be local, aws, gcp or azure, not {provider!r}"
            )
        if path.exists() and not force:
            raise Exit(ExitCode.USAGE, f"{path} exists; pass --force to overwrite it")
        path.write_text(starter(provider))
        _out(f"wrote {path}; next: `failover validate -c {path}`, then `failover deploy`")
        return ExitCode.SUCCESS

    _run(go)


@app.command()
def validate(config: ConfigOpt = None, state_dir: StateOpt = None) -> None:
    """Check the config (and the templates it uses); exit 0 or 2."""

    def go() -> int:
        from failover.render import TemplateError, host_spec

        conf = _load(config, state_dir)
        for name, svc in conf.services.items():
            # The runner's own function, so what passes here is what a move boots.
            try:
                host_spec(name, svc, generation=1, provider="check", purpose="serve")
            except TemplateError as exc:
                raise Exit(ExitCode.USAGE, f"services.{name}.run: {exc}") from None
        _out(
            f"{conf.path}: valid ({len(conf.services)} service(s), "
            f"{len(conf.providers)} provider(s), dns {conf.dns_settings().type})"
        )
        return ExitCode.SUCCESS

    _run(go)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editors)."""

    def go() -> int:
        from failover.config import json_schema

        _json(json_schema())
        return ExitCode.SUCCESS

    _run(go)


@app.command()
def doctor(config: ConfigOpt = None, state_dir: StateOpt = None, as_json: JsonOpt = False) -> None:
    """For each provider and the DNS zone: API reachable, credentials accepted, blocked?"""

    def go() -> int:
        with _engine(_load(config, state_dir), quiet=True) as engine:
            report = engine.doctor()
        _show(as_json, report, lambda: output.doctor_lines(report))
        return ExitCode.of(report["ok"])

    _run(go)


@app.command()
def deploy(
    service: ServiceArg = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="put it on this provider")
    ] = None,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make the service live: a host, restored, verified, DNS pointed at it."""

    def go() -> int:
        conf, name = _one(config, state_dir, service)
        _provider(conf, provider)
        with _engine(conf, quiet=as_json) as engine:
            outcome = engine.run(name, "deploy", reason="deploy", to=provider)
        return _outcome(outcome, as_json)

    _run(go)


@app.command()
def move(
    service: ServiceArg = None,
    to: Annotated[str, typer.Option("--to", help="the provider to move to")] = "",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A planned move (a provider gave notice): the same steps as a failover."""

    def go() -> int:
        conf, name = _one(config, state_dir, service)
        _provider(conf, to, required=True)
        with _engine(conf, quiet=as_json) as engine:
            if not yes:
                if not sys.stdin.isatty():
                    raise Exit(
                        ExitCode.USAGE, "refusing to move without --yes when not on a terminal"
                    )
                _lines(output.plan_lines(engine.plan(name, "move", to)))
                if not typer.confirm(f"move {name} to {to}?"):
                    return ExitCode.FAILED
            outcome = engine.run(name, "move", reason=f"planned move to {to}", to=to)
        return _outcome(outcome, as_json)

    _run(go)


@app.command()
def plan(
    service: ServiceArg = None,
    to: Annotated[str | None, typer.Option("--to", help="plan a move to this provider")] = None,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What a failover (or a move with --to) would do now, step by step, without doing it."""

    def go() -> int:
        conf, name = _one(config, state_dir, service)
        _provider(conf, to)
        with _engine(conf, quiet=True) as engine:
            row = engine.store.service(name)
            kind = "move" if to else ("failover" if row.active else "deploy")
            result = engine.plan(name, kind, to)
        _show(as_json, result, lambda: output.plan_lines(result))
        return ExitCode.of(result["possible"])

    _run(go)


@app.command()
def status(
    service: ServiceArg = None,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where each service lives now, its health, DNS, providers, last failover."""

    def go() -> int:
        import shutil

        conf = _load(config, state_dir)
        names = _services(conf, service)
        with _engine(conf, quiet=True) as engine:
            doc = engine.status(names)
        _show(
            as_json,
            {"services": doc},
            lambda: (
                [output.status_table(doc, shutil.get_terminal_size().columns)]
                if _tty()
                else output.status_lines(doc)
            ),
        )
        return ExitCode.SUCCESS

    _run(go)


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
        conf = _load(config, state_dir)
        names = _services(conf, service)
        with _engine(conf, quiet=as_json) as engine:
            results = engine.check(names, dry_run=dry_run)
        code = output.worst(r.exit_code for r in results)
        if as_json:
            _json(output.check_doc(results, code))
        else:
            _out(output.nagios_line(results, code))
        return code

    _run(go, usage=CheckCode.UNKNOWN, failure=CheckCode.UNKNOWN)


@app.command()
def watch(
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="serve Prometheus metrics on 127.0.0.1:N")
    ] = None,
    metrics_address: Annotated[
        str, typer.Option("--metrics-address", help="address for the metrics endpoint")
    ] = "127.0.0.1",
    rounds: Annotated[int | None, typer.Option("--rounds", help="stop after N rounds")] = None,
) -> None:
    """Probe every service each interval and act like `check`, until stopped."""

    def go() -> int:
        from failover.watch import Watcher

        conf = _load(config, state_dir)
        watcher = Watcher(
            conf,
            lambda line: _out(line),
            metrics_port=metrics_port,
            metrics_address=metrics_address,
        )
        return watcher.run(rounds)

    _run(go)


@app.command()
def drill(
    service: ServiceArg = None,
    to: Annotated[str, typer.Option("--to", help="the provider to rehearse on")] = "",
    junit: Annotated[Path | None, typer.Option("--junit", help="write a JUnit XML report")] = None,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """DR rehearsal: bring a host up on --to, restore, verify, time it, tear it down."""

    def go() -> int:
        conf, name = _one(config, state_dir, service)
        _provider(conf, to, required=True)
        with _engine(conf, quiet=as_json) as engine:
            outcome = engine.drill(name, to)
        doc = output.drill_doc(outcome)
        if junit is not None:
            junit.write_text(output.junit_xml(doc))
        if as_json:
            _json(doc)
        else:
            _lines(output.drill_lines(doc, to))
            if not outcome.ok:
                _err(f"drill failed: {outcome.message}")
        return ExitCode.of(outcome.ok)

    _run(go)


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
        conf = _load(config, state_dir)
        name = _services(conf, service)[0] if service else None
        with _engine(conf, quiet=True) as engine:
            events = engine.history(name, limit)
        _show(as_json, {"events": events}, lambda: output.history_lines(events))
        return ExitCode.SUCCESS

    _run(go)


@app.command()
def demo(
    as_json: JsonOpt = False,
    keep: Annotated[Path | None, typer.Option("--keep", help="keep the demo's files here")] = None,
) -> None:
    """The embedded end-to-end run: a provider cuts the service off; it moves."""

    def go() -> int:
        from failover.demo import run_demo

        say = (lambda line: None) if as_json else (lambda line: _out(line))
        doc = run_demo(say, keep=keep)
        if as_json:
            _json(doc)
        return ExitCode.of(doc.get("recovered_after_s") is not None)

    _run(go)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
