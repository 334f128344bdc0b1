"""``failover deploy --all``: every service of the file that is not live, side by side.

A file of many services used to be deployed one CLI call at a time, each paying the
start-up, the config and the providers' account checks again (issue 28). Here one
engine deploys them at most ``watcher.parallel_moves`` at once, each under its own lock
and journaled as a single ``deploy`` is; the round asks each provider's account once.
A service that is live already is left as it is (``noop``), whatever its health:
``check`` and ``watch`` take care of that.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from failover.engine import rounds
from failover.engine.journal import Outcome

if TYPE_CHECKING:
    from failover.engine import Engine


def deploy_all(engine: Engine, provider: str | None = None) -> list[Outcome]:
    """One outcome per service of the config, in the file's order."""
    names = list(engine.config.services)
    rows = engine.store.services(names)
    out: dict[str, Outcome] = {}
    for name, row in rows.items():
        if row.active:
            where = f"{row.active['provider']} ({row.active['address']})"
            out[name] = Outcome(name, "deploy", "noop", f"{name} is already live on {where}")
    due = {name: provider for name in names if name not in out}
    if due:
        out.update(
            rounds.side_by_side(
                engine,
                due,
                lambda worker, name, to: worker.run(name, "deploy", reason="deploy", to=to),
            )
        )
    return [out[name] for name in names]


def outcome_line(outcome: Outcome) -> str:
    """One line per service: what its deploy did, named by the service."""
    from failover.output import outcome_line as line

    text = line(outcome)
    return text if text.startswith(outcome.service) else f"{outcome.service}: {text}"


def command(
    config: Path | None,
    state_dir: Path | None,
    service: str | None,
    provider: str | None,
    as_json: bool,
) -> int:
    """The body of ``failover deploy --all``: one line (or JSON entry) per service, exit 1
    when any deploy failed."""
    from failover import clikit
    from failover import output
    from failover.exitcodes import ExitCode

    if service is not None:
        raise clikit.Exit(ExitCode.USAGE, "--all deploys every service: name none")
    conf = clikit.load(config, state_dir)
    clikit.check_provider(conf, provider)
    with clikit.open_engine(conf, quiet=as_json) as engine:
        outcomes = deploy_all(engine, provider)
    if as_json:
        clikit.emit_json({"services": [output.outcome_doc(o) for o in outcomes]})
    else:
        for o in outcomes:
            (clikit.out if o.ok else clikit.err)(outcome_line(o))
    return ExitCode.of(all(o.ok for o in outcomes))
