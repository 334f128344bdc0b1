"""The ``failover`` command: parses, calls :mod:`failover`, renders. Nothing else.

Imports of the engine, rich and the providers happen inside the commands, so that
``failover --help`` and a cron-driven ``check`` start fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from failover.config import Config
    from failover.engine import Engine

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


def _json(doc: Any) -> None:
    _out(json.dumps(doc, indent=2, default=str))


@contextmanager
def _errors(usage_code: int = 2, failure_code: int = 1) -> Iterator[None]:
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
        raise Exit(130) from None
    except BrokenPipeError:
        # The reader (`| head`) went away: not an error of ours; keep Python quiet on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise Exit(0) from None
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
                2,
                f"no service named {service!r} in {conf.path} (known: {', '.join(conf.services)})",
            )
        return [service]
    if one and len(conf.services) > 1:
        raise Exit(2, f"name the service: {conf.path} has {', '.join(conf.services)}")
    return list(conf.services)


def _tty() -> bool:
    return sys.stdout.isatty()


def _engine(conf: Config, quiet: bool = False) -> Engine:
    from failover.engine import Engine

    on_step = None
    if _tty() and not quiet:

        def on_step(step: str, status: str, detail: str) -> None:
            mark = {"in_progress": "..", "succeeded": "ok", "failed": "FAILED"}.get(status, status)
            if status != "in_progress" or step in ("provision", "wait_ready", "restore", "verify"):
                _err(f"  {step:<11} {mark}{'  ' + detail if detail else ''}")

    log = (lambda message: _err(message)) if os.environ.get("FAILOVER_VERBOSE") else None
    return Engine(conf, log=log, on_step=on_step)


def _run(fn: Callable[[], int | None], usage: int = 2, failure: int = 1) -> NoReturn:
    try:
        with _errors(usage, failure):
            code = fn() or 0
    except Exit as exc:
        if exc.message:
            _err(exc.message)
        raise typer.Exit(exc.code) from None
    raise typer.Exit(code)


def _status_table(doc: list[dict[str, Any]]) -> None:
    """`status` for people: one rich table per service."""
    import io
    import shutil

    from rich.console import Console
    from rich.table import Table

    colour = {
        "up": "green",
        "down": "red",
        "unknown": "yellow",
        "available": "green",
        "blocked": "red",
    }
    # Rendered into a buffer so the text goes through the same redaction as every line.
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=shutil.get_terminal_size().columns)
    for s in doc:
        state = s["health"]["state"]
        table = Table(
            title=f"{s['service']} ({s['domain']}): [{colour.get(state, '')}]{state}"
            f"[/] generation {s['generation']}",
            title_justify="left",
            show_header=False,
        )
        table.add_column("")
        table.add_column("")
        active = s["active"]
        table.add_row(
            "lives on",
            f"{active['provider']} {active['address']}:{active['port']} "
            f"(host {active['host_id']}, since {active['since']})"
            if active
            else "nowhere (not deployed)",
        )
        dns = s["dns"] or {}
        table.add_row(
            "dns",
            f"{', '.join(dns['values'])} ttl {dns['ttl']}"
            if "values" in dns
            else str(dns.get("error", "no record")),
        )
        health = s["health"]
        table.add_row(
            "health",
            f"{health['consecutive_failures']} failed / "
            f"{health['consecutive_successes']} good rounds; last "
            f"{health['last_check'] or 'never'}",
        )
        if s["last_event"]:
            e = s["last_event"]
            table.add_row("last", f"{e['kind']} {e['status']} {e['finished_at'] or ''}")
        for p in s["providers"]:
            why = f" ({p['reason']})" if p.get("reason") else ""
            table.add_row(
                f"provider {p['name']}",
                f"{p['type']} [{colour.get(p['state'], '')}]{p['state']}[/]{why}",
            )
        console.print(table, markup=True)
    _out(buffer.getvalue())


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
            raise Exit(2, f"--provider must be local, aws, gcp or azure, not {provider!r}")
        if path.exists() and not force:
            raise Exit(2, f"{path} exists; pass --force to overwrite it")
        path.write_text(starter(provider))
        _out(f"wrote {path}; next: `failover validate -c {path}`, then `failover deploy`")
        return 0

    _run(go)


@app.command()
def validate(config: ConfigOpt = None, state_dir: StateOpt = None) -> None:
    """Check the config (and the templates it uses); exit 0 or 2."""

    def go() -> int:
        from failover.render import render_user_data
        from providers.base import HostSpec, RunSpec

        conf = _load(config, state_dir)
        for name, svc in conf.services.items():
            render_user_data(
                HostSpec(
                    name=f"{name}-g1-check",
                    service=name,
                    generation=1,
                    port=svc.port,
                    run=RunSpec(svc.run.command, tuple(svc.run.setup), tuple(svc.run.restore)),
                )
            )
        _out(
            f"{conf.path}: valid ({len(conf.services)} service(s), "
            f"{len(conf.providers)} provider(s), dns {conf.dns_settings().type})"
        )
        return 0

    _run(go)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editors)."""

    def go() -> int:
        from failover.config import json_schema

        _json(json_schema())
        return 0

    _run(go)


@app.command()
def doctor(config: ConfigOpt = None, state_dir: StateOpt = None, as_json: JsonOpt = False) -> None:
    """For each provider and the DNS zone: API reachable, credentials accepted, blocked?"""

    def go() -> int:
        conf = _load(config, state_dir)
        engine = _engine(conf, quiet=True)
        report = engine.doctor()
        engine.close()
        if as_json:
            _json(report)
        else:
            for p in report["providers"]:
                _out(
                    f"{p['name']} ({p['type']}): {p['state']}"
                    f"{' - ' + p['reason'] if p['reason'] else ''}"
                )
                for c in p["checks"]:
                    _out(f"  {'ok ' if c['ok'] else 'BAD'} {c['name']}: {c['detail']}")
            d = report["dns"]
            _out(
                f"dns {d['type']} zone {d['zone']}: {d['state']}"
                f"{' - ' + d['reason'] if d['reason'] else ''}"
            )
            for c in d["checks"]:
                _out(f"  {'ok ' if c['ok'] else 'BAD'} {c['name']}: {c['detail']}")
            for w in report["warnings"]:
                _out(f"warning: {w}")
        return 0 if report["ok"] else 1

    _run(go)


def _outcome(outcome: Any, as_json: bool) -> int:
    if as_json:
        _json(
            {
                "service": outcome.service,
                "kind": outcome.kind,
                "status": outcome.status,
                "message": outcome.message,
                "event": _public_event(outcome.event),
            }
        )
    elif outcome.ok:
        _out(outcome.message)
    else:
        _err(f"{outcome.kind} {outcome.status}: {outcome.message}")
    return 0 if outcome.ok else 1


def _public_event(event: dict[str, Any] | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {k: v for k, v in event.items() if k != "data"}


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
        conf = _load(config, state_dir)
        (name,) = _services(conf, service, one=True)
        if provider is not None and provider not in conf.provider_settings():
            raise Exit(
                2, f"no provider named {provider!r} (known: {', '.join(conf.provider_settings())})"
            )
        engine = _engine(conf, quiet=as_json)
        try:
            outcome = engine.run(name, "deploy", reason="deploy", to=provider)
        finally:
            engine.close()
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
        conf = _load(config, state_dir)
        (name,) = _services(conf, service, one=True)
        if not to:
            raise Exit(2, "--to PROVIDER is required")
        if to not in conf.provider_settings():
            raise Exit(
                2, f"no provider named {to!r} (known: {', '.join(conf.provider_settings())})"
            )
        engine = _engine(conf, quiet=as_json)
        try:
            if not yes:
                if not sys.stdin.isatty():
                    raise Exit(2, "refusing to move without --yes when not on a terminal")
                plan = engine.plan(name, "move", to)
                _print_plan(plan)
                if not typer.confirm(f"move {name} to {to}?"):
                    return 1
            outcome = engine.run(name, "move", reason=f"planned move to {to}", to=to)
        finally:
            engine.close()
        return _outcome(outcome, as_json)

    _run(go)


def _print_plan(plan: dict[str, Any]) -> None:
    origin = plan["from"]
    _out(
        f"{plan['kind']} {plan['service']}: "
        f"{origin['provider'] + ' (' + origin['address'] + ')' if origin else 'not deployed'}"
        f" -> {plan['to'] or 'NOWHERE'}"
    )
    for step in plan["steps"]:
        _out(f"  {step['name']:<11} {step['does']}")
    if not plan["possible"]:
        _out(
            "not possible now: "
            + "; ".join(f"{c['provider']}: {c['reason']}" for c in plan["candidates"])
        )


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
        conf = _load(config, state_dir)
        (name,) = _services(conf, service, one=True)
        if to is not None and to not in conf.provider_settings():
            raise Exit(
                2, f"no provider named {to!r} (known: {', '.join(conf.provider_settings())})"
            )
        engine = _engine(conf, quiet=True)
        try:
            row = engine.store.service(name)
            kind = "move" if to else ("failover" if row.active else "deploy")
            result = engine.plan(name, kind, to)
        finally:
            engine.close()
        if as_json:
            _json(result)
        else:
            _print_plan(result)
        return 0 if result["possible"] else 1

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
        conf = _load(config, state_dir)
        names = _services(conf, service)
        engine = _engine(conf, quiet=True)
        try:
            doc = engine.status(names)
        finally:
            engine.close()
        if as_json:
            _json({"services": doc})
            return 0
        if _tty():
            _status_table(doc)
            return 0
        for s in doc:
            active = s["active"]
            where = (
                f"{active['provider']} {active['address']}:{active['port']} "
                f"(host {active['host_id']}, since {active['since']})"
                if active
                else "nowhere (not deployed)"
            )
            _out(
                f"{s['service']} ({s['domain']}): {s['health']['state']} on {where}, "
                f"generation {s['generation']}"
            )
            dns = s["dns"]
            if dns and "values" in dns:
                _out(
                    f"  dns: {dns['name']} {dns['type']} {', '.join(dns['values'])} "
                    f"ttl {dns['ttl']}"
                )
            elif dns:
                _out(f"  dns: {dns.get('error')}")
            else:
                _out("  dns: no record")
            if s["last_event"]:
                e = s["last_event"]
                _out(f"  last: {e['kind']} {e['status']} {e['finished_at'] or ''}")
            _out(
                "  providers: "
                + ", ".join(f"{p['name']} ({p['type']}) {p['state']}" for p in s["providers"])
            )
        return 0

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
        engine = _engine(conf, quiet=as_json)
        try:
            results = engine.check(names, dry_run=dry_run)
        finally:
            engine.close()
        code = _worst(r.exit_code for r in results)
        if as_json:
            _json({"services": [r.to_dict() for r in results], "exit_code": code})
        else:
            _out(_nagios_line(results, code))
        return code

    _run(go, usage=3, failure=3)


def _worst(codes: Any) -> int:
    codes = list(codes)
    # UNKNOWN ranks below CRITICAL but above WARNING, as Nagios orders severity.
    for code in (2, 3, 1):
        if code in codes:
            return code
    return 0


def _nagios_line(results: list[Any], code: int) -> str:
    label = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}[code]
    text = "; ".join(r.message for r in results)
    perf = " ".join(
        f"{r.service + '_' if len(results) > 1 else ''}latency={r.latency:.3f}s"
        for r in results
        if r.latency is not None
    )
    return f"FAILOVER {label} - {text}" + (f" | {perf}" if perf else "")


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
        from failover.report import drill_doc, junit_xml

        conf = _load(config, state_dir)
        (name,) = _services(conf, service, one=True)
        if not to:
            raise Exit(2, "--to PROVIDER is required")
        if to not in conf.provider_settings():
            raise Exit(
                2, f"no provider named {to!r} (known: {', '.join(conf.provider_settings())})"
            )
        engine = _engine(conf, quiet=as_json)
        try:
            outcome = engine.drill(name, to)
        finally:
            engine.close()
        doc = drill_doc(outcome)
        if junit is not None:
            junit.write_text(junit_xml(doc))
        if as_json:
            _json(doc)
        else:
            _out(f"drill {name} -> {to}: {doc['status']} in {doc['duration_s']}s")
            for step in doc["steps"]:
                _out(
                    f"  {step['name']:<11} {step['status']:<10} {step['duration_s'] or 0:>7.2f}s"
                    f"  {step['detail']}"
                )
            if not outcome.ok:
                _err(f"drill failed: {outcome.message}")
        return 0 if outcome.ok else 1

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
        engine = _engine(conf, quiet=True)
        try:
            events = engine.history(name, limit)
        finally:
            engine.close()
        if as_json:
            _json({"events": events})
            return 0
        if not events:
            _out("no events yet")
        for e in events:
            frm = e["from"]["provider"] if e["from"] else "-"
            to_ = e["to"]["provider"] if e["to"] else "-"
            _out(
                f"#{e['id']} {e['started_at']} {e['service']} {e['kind']} {e['status']} "
                f"{frm} -> {to_} ({e['duration_s'] if e['duration_s'] is not None else '?'}s)"
                f" {e['reason'] or ''}"
            )
            for a in e.get("attempts", []):
                _out(f"    tried {a['provider']}: {a['result']}")
            for s in e["steps"]:
                _out(f"    {s['name']:<11} {s['status']:<11} {s['detail']}")
        return 0

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
        return 0 if doc.get("recovered_after_s") is not None else 1

    _run(go)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
