"""Warm standby (``policy.standby: warm``, issue 16).

A service with a warm standby keeps one more host running: on the next provider of its
priority list, made by a journaled ``standby`` run (``select .. verify`` like any
candidate, then ``park``: kept, out of DNS), tagged with the generation the next
failover will cut over to. Every round probes it beside the live host; one that fails,
sits on the wrong provider or carries a stale generation is destroyed and made again.
A failover whose candidate is the standby's provider takes it instead of provisioning:
``provision`` and ``wait_ready`` become checks that it still runs, then ``restore``,
``verify`` and ``cutover`` as usual. Once the service lives there, the next round makes
a new standby on the provider after it.

The standby run holds the service's lease like any run, so a standby being made and a
failover never overlap; a failover due meanwhile waits for the next round ("busy").
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from failover.config import TcpProbe
from failover.engine.fit import restore_problem
from failover.engine.health import Verdict
from failover.engine.journal import HostRecord
from failover.engine.journal import Outcome
from failover.engine.journal import Role
from failover.planner import select
from failover.probes import ProbeResult
from failover.probes import Target
from failover.state import ServiceRow
from providers.base import AccountReport
from providers.base import HostState
from providers.base import NotFound
from providers.base import ProviderError

if TYPE_CHECKING:
    from failover.engine import Engine


def wanted(engine: Engine, service: str) -> bool:
    return engine.config.services[service].policy.standby == "warm"


def verify_target(engine: Engine, service: str, address: str) -> Target:
    """What a host out of DNS is probed with: the service's probes without the dns one
    (the record points at the live host), and a tcp probe when nothing else is left."""
    target = engine.target(service, address)
    health = target.health.model_copy(update={"dns": None})
    if not (health.http or health.tcp or health.tls):
        health = health.model_copy(update={"tcp": TcpProbe()})
    target.health = health
    return target


def current(engine: Engine, service: str) -> dict[str, Any] | None:
    """The service's standby host as the state records it (the newest, if several)."""
    rows = engine.store.hosts(service, role=Role.STANDBY)
    return max(rows, key=lambda r: (r["updated_at"], r["generation"])) if rows else None


def targets(engine: Engine, live: dict[str, ServiceRow]) -> dict[str, Target]:
    """The standbys to probe this round, by service."""
    out: dict[str, Target] = {}
    for name in live:
        if wanted(engine, name):
            host = current(engine, name)
            if host and host.get("address"):
                out[name] = verify_target(engine, name, host["address"])
    return out


def adopt(engine: Engine, service: str, provider: str, generation: int) -> HostRecord | None:
    """The standby of ``service`` on ``provider``, if it is there, of ``generation`` and
    running: the host a failover takes instead of provisioning one."""
    host = current(engine, service)
    if host is None or host["provider"] != provider or host["generation"] != generation:
        return None
    try:
        found = engine.provider(provider).get_host(host["host_id"])
    except (NotFound, ProviderError):
        return None
    if found is None or found.state != HostState.RUNNING or not found.address:
        return None
    return HostRecord(provider, found.id, found.name, found.address, generation, found.zone)


def _provider_for(
    engine: Engine, service: str, row: ServiceRow, accounts: dict[str, AccountReport]
) -> str | None:
    """The next provider of the priority list that can take a host now. ``accounts``:
    each provider's account asked once per round, not once per service."""
    assert row.active is not None

    def account(name: str) -> AccountReport:
        if name not in accounts:
            why = engine.blocklist.get(name)
            accounts[name] = (
                AccountReport("blocked", [], why) if why else engine.account(name, fresh=True)
            )
        return accounts[name]

    usable = select(
        kind="failover",
        service=service,
        priority=engine.config.service_providers(service),
        current=row.active["provider"],
        to=None,
        account=account,
        unfit=lambda provider: restore_problem(engine.config, service, provider),
    ).usable
    return usable[0] if usable else None


def _drop(engine: Engine, service: str, host: dict[str, Any], why: str) -> None:
    try:
        engine.destroy(host["provider"], host["host_id"])
    except ProviderError as exc:
        engine.log(f"{service}: standby {host['host_id']} not destroyed ({exc}); retried later")
        return
    engine.store.set_host(
        host["provider"],
        host["host_id"],
        service=service,
        generation=host["generation"],
        role=Role.DESTROYED,
        note=why,
    )


def _keep(
    engine: Engine,
    service: str,
    row: ServiceRow,
    probes: list[ProbeResult] | None,
    accounts: dict[str, AccountReport],
) -> tuple[bool, str | None]:
    """Is the recorded standby still good? And the provider a new one goes to."""
    host = current(engine, service)
    provider = _provider_for(engine, service, row, accounts)
    if host is None:
        return False, provider
    why = ""
    if probes is not None and not all(p.ok or not p.ran for p in probes):
        why = "standby failed its probes: " + "; ".join(
            f"{p.kind}: {p.error}" for p in probes if not p.ok
        )
    elif host["generation"] != row.generation + 1:
        why = f"standby of generation {host['generation']}, the service is at {row.generation}"
    elif host["provider"] != provider:
        why = f"standby on {host['provider']}, the next provider is now {provider}"
    if not why:
        return True, provider
    _drop(engine, service, host, why)
    return False, provider


def maintain(
    engine: Engine,
    verdicts: dict[str, Verdict],
    probes: dict[str, list[ProbeResult]],
) -> dict[str, Outcome]:
    """After a round: drop the standbys that failed or are stale, and make the missing
    ones (side by side) for the services that are up."""
    due: dict[str, str] = {}
    accounts: dict[str, AccountReport] = {}
    for name, verdict in verdicts.items():
        if not wanted(engine, name) or verdict.state != "up":
            continue
        row = engine.store.service(name)
        if row.active is None:
            continue
        keep, provider = _keep(engine, name, row, probes.get(name), accounts)
        if not keep and provider is not None:
            due[name] = provider
    if not due:
        return {}
    from failover.engine.rounds import side_by_side

    return side_by_side(
        engine,
        due,
        lambda worker, name, to: worker.run(name, "standby", reason="warm standby", to=to),
    )
