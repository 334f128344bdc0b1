"""The plumbing every ``failover`` command shares: options, printing through redaction,
turning errors into one line and an exit code, loading the config, opening the engine.

Kept light on purpose (typer and the standard library at import time): ``cli.py``
imports it before any command runs, and ``failover --help`` must start fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any
from typing import NoReturn

import typer

from failover import output
from failover.exitcodes import ExitCode

if TYPE_CHECKING:
    from failover.config import Config
    from failover.engine import Engine
    from failover.engine import Outcome

GLOBAL: dict[str, Path | None] = {"config": None}  # `failover -c FILE COMMAND`

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


def _names(ctx: typer.Context, section: str) -> list[str]:
    """The service or provider names of the config the command line names, for shell
    completion: read as written (no ``${ENV}``, no validation), never an error."""
    import yaml

    root = ctx.find_root()
    chosen = ctx.params.get("config") or root.params.get("config")
    path = Path(chosen or os.environ.get("FAILOVER_CONFIG") or "failover.yaml")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    part = doc.get(section) if isinstance(doc, dict) else None
    if isinstance(part, dict):
        return [str(name) for name in part]
    if isinstance(part, list):
        return [str(p["name"]) for p in part if isinstance(p, dict) and "name" in p]
    return []


def complete_services(ctx: typer.Context, incomplete: str) -> list[str]:
    return [n for n in _names(ctx, "services") if n.startswith(incomplete)]


def complete_providers(ctx: typer.Context, incomplete: str) -> list[str]:
    return [n for n in _names(ctx, "providers") if n.startswith(incomplete)]


ServiceArg = Annotated[
    str | None,
    typer.Argument(
        help="service name (optional with one service)",
        show_default=False,
        autocompletion=complete_services,
    ),
]


class Exit(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def err(message: str) -> None:
    from failover.redact import redact

    sys.stderr.write(redact(message).rstrip("\n") + "\n")


def out(text: str) -> None:
    from failover.redact import redact

    sys.stdout.write(redact(text).rstrip("\n") + "\n")


def lines(lines: Iterable[str]) -> None:
    # One write per line, each redacted on its own: what the renderers return is printed
    # exactly as the commands printed it line by line before they moved to output.py.
    for line in lines:
        out(line)


def emit_json(doc: Any) -> None:
    from failover.redact import redact_doc

    out(dumps(redact_doc(doc)))


LONG = 100  # entries of a list printed one a line


def dumps(doc: Any) -> str:
    """Indented; a long list (a ``check`` of 10,000 services) one compact entry a line:
    the indenting encoder is pure Python, 10 times the CPU of the C one (issue 28)."""
    if not isinstance(doc, dict) or all(
        not isinstance(v, list) or len(v) <= LONG for v in doc.values()
    ):
        return json.dumps(doc, indent=2, default=str)
    compact = json.JSONEncoder(default=str).encode
    parts = []
    for key, value in doc.items():
        if isinstance(value, list) and len(value) > LONG:
            text = "[\n" + ",\n".join(f"    {compact(v)}" for v in value) + "\n  ]"
        else:
            text = json.dumps(value, indent=2, default=str).replace("\n", "\n  ")
        parts.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}"


def show(as_json: bool, doc: Any, text: Callable[[], Iterable[str]]) -> None:
    """``doc`` as JSON with ``--json``, else the lines ``text`` renders for people."""
    if as_json:
        emit_json(doc)
    else:
        lines(text())


@contextmanager
def errors(usage_code: int = ExitCode.USAGE, failure_code: int = ExitCode.FAILED) -> Iterator[None]:
    """Turn every expected error into one line and an exit code; never a traceback."""
    from failover.config import ConfigError
    from failover.state import StateError

    try:
        yield
    except Exit:
        raise
    except ConfigError as exc:
        raise Exit(usage_code, "\n".join(exc.problems)) from None
    except StateError as exc:
        raise Exit(failure_code, f"state: {exc}") from None
    except KeyboardInterrupt:
        raise Exit(
            ExitCode.INTERRUPTED,
            "interrupted (SIGINT/SIGTERM); `failover history` shows what the run did and undid",
        ) from None
    except BrokenPipeError:
        # The reader (`| head`) went away: not an error of ours; keep Python quiet on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise Exit(ExitCode.SUCCESS) from None
    except Exception as exc:
        if os.environ.get("FAILOVER_DEBUG"):
            raise
        from providers.base import ProviderError

        if isinstance(exc, ProviderError):
            raise Exit(failure_code, str(exc)) from None
        raise Exit(
            failure_code,
            f"internal error: {type(exc).__name__}: {exc} (run again with FAILOVER_DEBUG=1 "
            "for the traceback, and please report it)",
        ) from None


def load(config: Path | None, state_dir: Path | None, *, notify: bool = True) -> Config:
    """The config; ``notify=False`` for a command that never notifies (``status``...):
    a notification secret missing from its environment is then no error."""
    from failover import config as cfg
    from failover.redact import register_environment

    register_environment()
    return cfg.load(config or GLOBAL["config"], state_dir, notify=notify)


def service_names(conf: Config, service: str | None, *, one: bool = False) -> list[str]:
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


def one_service(
    config: Path | None, state_dir: Path | None, service: str | None, *, notify: bool = True
) -> tuple[Config, str]:
    """The config and the one service a command that acts on a single service is about."""
    conf = load(config, state_dir, notify=notify)
    (name,) = service_names(conf, service, one=True)
    return conf, name


def check_provider(conf: Config, name: str | None, *, required: bool = False) -> None:
    """A provider named with ``--to``/``--provider`` must be one of the config's."""
    if required and not name:
        raise Exit(ExitCode.USAGE, "--to PROVIDER is required")
    if name is not None and name not in (known := conf.provider_settings()):
        raise Exit(ExitCode.USAGE, f"no provider named {name!r} (known: {', '.join(known)})")


def tty() -> bool:
    return sys.stdout.isatty()


@contextmanager
def open_engine(conf: Config, quiet: bool = False) -> Iterator[Engine]:
    from failover.engine import Engine

    on_step = None
    if tty() and not quiet:
        from failover.progress import StepProgress

        on_step = StepProgress()  # the step in flight, its elapsed time, bytes: on stderr

    log = (lambda message: err(message)) if os.environ.get("FAILOVER_VERBOSE") else None
    transfer = on_step.transfer if on_step is not None else None
    engine = Engine(conf, log=log, on_step=on_step, on_transfer=transfer)
    # SIGTERM (systemd, a CI runner's cancel) is handled like Ctrl-C: the run in flight
    # is rolled back or finished and journaled, and the command exits 130.
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield engine
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.close()
        if on_step is not None:
            on_step.close()


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(
    fn: Callable[[], int | None],
    usage: int = ExitCode.USAGE,
    failure: int = ExitCode.FAILED,
    *,
    as_json: bool = False,
) -> NoReturn:
    """Run a command's body: its exit code; an error as lines on stderr and, with
    ``--json``, as a document on stdout too (``{"ok": false, "error", "problems",
    "exit_code"}``), so a script that parses stdout always has one."""
    try:
        with errors(usage, failure):
            code = fn() or ExitCode.SUCCESS
    except Exit as exc:
        problems = exc.message.splitlines()
        for line in problems:
            err(line)
        if as_json and exc.code != ExitCode.SUCCESS:
            error = "; ".join(problems) or f"exit {int(exc.code)}"
            emit_json(
                {"ok": False, "error": error, "problems": problems, "exit_code": int(exc.code)}
            )
        raise typer.Exit(int(exc.code)) from None
    raise typer.Exit(int(code))


def report_outcome(outcome: Outcome, as_json: bool) -> ExitCode:
    if as_json:
        emit_json(output.outcome_doc(outcome))
    else:
        (out if outcome.ok else err)(output.outcome_line(outcome))
    return ExitCode.of(outcome.ok)
