"""The failover state machine: every step of deploy, failover, move and drill, in one file.

A run is one journal event with these steps, each recorded before the next begins::

    lock -> select -> provision -> wait_ready -> restore -> verify -> cutover -> fence -> release

``provision`` .. ``verify`` are tried per candidate provider: a candidate that cannot
take the service (blocked, no capacity, not healthy within ``ready_timeout``) is
destroyed and the next one is tried. Every step is idempotent and the journal is the
source of truth, so a run interrupted anywhere is finished by the next command. The
generation number (a fencing token) is checked on every write: a watcher that was
paused or partitioned can never move the service back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failover.config import Config, ServiceConfig
from failover.planner import Selection, select
from failover.probes import ProbeFailed, ProbeResult, Target, probe_target, reach
from failover.redact import redact
from failover.render import TemplateError, render_user_data
from failover.state import Lease, LeaseLost, Store, now_iso
from providers.base import (
    AccountBlocked,
    AccountReport,
    Check,
    ComputeProvider,
    ConflictError,
    DnsProvider,
    Host,
    HostSpec,
    HostState,
    NotFound,
    ProviderContext,
    ProviderError,
    RunSpec,
    TransientError,
    dns_class,
    provider_class,
)

STEPS = (
    "lock",
    "select",
    "provision",
    "wait_ready",
    "restore",
    "verify",
    "cutover",
    "fence",
    "release",
)
DRILL_STEPS = ("select", "provision", "wait_ready", "restore", "verify", "teardown")
CANDIDATE_STEPS = ("provision", "wait_ready", "restore", "verify")

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3

StepCallback = Callable[[str, str, str], None]


class StepFailed(Exception):
    """The run cannot go on; the event is marked failed with this message."""


class CandidateFailed(Exception):
    """This provider cannot take the service; the next candidate is tried."""


def _failpoint(step: str) -> None:
    # Read only here, after the step is journaled: free when unset.
    if os.environ.get("FAILOVER_FAILPOINT") == f"after:{step}":
        os._exit(137)


@dataclass
class Outcome:
    """The end of one run (deploy, failover, move, drill)."""

    service: str
    kind: str
    status: str  # succeeded | failed | busy | noop
    message: str
    event_id: int | None = None
    event: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "noop")


@dataclass
class ServiceCheck:
    service: str
    state: str
    exit_code: int
    action: str
    message: str
    probes: list[ProbeResult] = field(default_factory=list)
    latency: float | None = None
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "state": self.state,
            "exit_code": self.exit_code,
            "action": self.action,
            "message": self.message,
            "probes": [p.to_dict() for p in self.probes],
        }


class _Heartbeat(threading.Thread):
    """Keeps the lease alive while a long step (provisioning) runs."""

    def __init__(self, config: Config, lease: Lease) -> None:
        super().__init__(daemon=True, name="failover-lease")
        self.config = config
        self.lease = lease
        self.stop = threading.Event()
        self.lost: str | None = None

    def run(self) -> None:
        assert self.config.state_dir is not None
        store = Store(self.config.state_dir)
        try:
            while not self.stop.wait(self.lease.ttl / 3):
                try:
                    store.renew(self.lease)
                except LeaseLost as exc:
                    self.lost = str(exc)
                    return
        finally:
            store.close()


class Engine:
    def __init__(
        self,
        config: Config,
        *,
        log: Callable[[str], None] | None = None,
        on_step: StepCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        assert config.state_dir is not None
        self.should_stop = should_stop or (lambda: False)
        self.config = config
        self.store = Store(config.state_dir)
        self.log = log or (lambda message: None)
        self.on_step = on_step or (lambda step, status, detail: None)
        self._providers: dict[str, ComputeProvider] = {}
        self._dns: DnsProvider | None = None
        self._accounts: dict[str, AccountReport] = {}
        self.context = ProviderContext(state_dir=config.state_dir, log=self._log)

    def _log(self, message: str) -> None:
        self.log(redact(message))

    def close(self) -> None:
        for provider in self._providers.values():
            provider.close()
        if self._dns is not None:
            self._dns.close()
        self.store.close()

    # ----------------------------------------------------------------- providers

    def provider(self, name: str) -> ComputeProvider:
        if name not in self._providers:
            settings = self.config.provider_settings()[name]
            self._providers[name] = provider_class(settings.type)(settings, self.context)
        return self._providers[name]

    def dns(self) -> DnsProvider:
        if self._dns is None:
            settings = self.config.dns_settings()
            self._dns = dns_class(settings.type)(settings, self.context)
        return self._dns

    def account(self, name: str, *, fresh: bool = False) -> AccountReport:
        """The provider's account state, asked once per engine (or again with fresh)."""
        if fresh or name not in self._accounts:
            try:
                report = self.provider(name).check_account()
            except ProviderError as exc:  # check_account should not raise; be safe anyway
                report = AccountReport("unknown", [Check("api", False, str(exc))], str(exc))
            self._accounts[name] = report
            self.store.set_provider_state(name, report.state, report.reason)
        return self._accounts[name]

    def _blocked(self, name: str, exc: AccountBlocked) -> None:
        self._accounts[name] = AccountReport(
            "blocked", [Check("account", False, str(exc))], exc.message
        )
        self.store.set_provider_state(name, "blocked", exc.message)

    def services(self, name: str | None) -> list[str]:
        if name is None:
            return list(self.config.services)
        if name not in self.config.services:
            raise KeyError(name)
        return [name]

    # ----------------------------------------------------------------- probes

    def _target(self, service: str, address: str) -> Target:
        svc = self.config.services[service]
        resolver = None
        if svc.health.dns is not None and svc.health.dns.server is None:
            dns = self.dns()

            def resolver() -> tuple[list[str], int] | None:
                try:
                    record = dns.get_record(svc.domain, svc.record_type)
                except ProviderError as exc:
                    # A DNS backend that cannot be read fails this probe with its message;
                    # it must not escape the probe round and end `check`/`watch` (issue 3).
                    raise ProbeFailed(f"DNS backend: {exc}") from None
                return (record.values, record.ttl) if record else None

        return Target(service, address, svc.port, svc.domain, svc.health, resolver, svc.record_type)

    # ----------------------------------------------------------------- check

    def check(self, services: list[str], *, dry_run: bool = False) -> list[ServiceCheck]:
        """One probe round for ``services`` (concurrently), counters updated, and a
        failover where the policy says so."""
        results: dict[str, ServiceCheck] = {}
        if not dry_run:
            for name in services:
                self._settle(name)
        rows = {name: self.store.service(name) for name in services}
        live = {n: r for n, r in rows.items() if r.active}
        for name in services:
            if not rows[name].active:
                results[name] = ServiceCheck(
                    name,
                    "unknown",
                    CRITICAL,
                    "none",
                    f"{name} is not deployed (run `failover deploy {name}`)",
                )
        targets = {n: self._target(n, r.active["address"]) for n, r in live.items() if r.active}
        probes = asyncio.run(self._round(targets))
        healthy_elsewhere = any(all(p.ok for p in res) for res in probes.values())
        for name, row in live.items():
            assert row.active is not None
            results[name] = self._evaluate(name, row, probes[name], healthy_elsewhere, dry_run)
        return [results[n] for n in services]

    async def _round(self, targets: dict[str, Target]) -> dict[str, list[ProbeResult]]:
        names = list(targets)
        done = await asyncio.gather(*(probe_target(targets[n]) for n in names))
        return dict(zip(names, done, strict=True))

    def _evidence(self, active: dict[str, Any]) -> tuple[str, str]:
        """Ask the provider about the host: ``gone``/``blocked`` (proof), ``alive``, or
        ``silent`` (the API did not answer)."""
        try:
            host = self.provider(active["provider"]).get_host(active["host_id"])
        except AccountBlocked as exc:
            self._blocked(active["provider"], exc)
            return "blocked", str(exc)
        except NotFound:
            return "gone", f"{active['provider']} says the host no longer exists"
        except ProviderError as exc:
            return "silent", str(exc)
        if host is None:
            return "gone", f"{active['provider']} says the host no longer exists"
        if host.state.gone:
            reason = f": {host.reason}" if host.reason else ""
            return "gone", f"{active['provider']} reports the host {host.state.value}{reason}"
        return "alive", f"{active['provider']} reports the host {host.state.value}"

    def _evaluate(
        self,
        name: str,
        row: Any,
        probes: list[ProbeResult],
        healthy_elsewhere: bool,
        dry_run: bool,
    ) -> ServiceCheck:
        svc = self.config.services[name]
        active = row.active
        # The probes saw the host of this generation; every decision below is bound to it.
        observed = row.generation
        where = f"{active['provider']} ({active['address']}:{svc.port})"
        ok = all(p.ok for p in probes)
        latency = max((p.latency_s or 0.0) for p in probes) if probes else None
        if ok:
            if not dry_run:
                row = self.store.record_round(
                    name, row.generation, True, latency, svc.health.fall, svc.health.rise
                )
            code = OK if row.health_state == "up" else WARNING
            msg = (
                f"{name} healthy on {where}"
                if code == OK
                else (f"{name} answering on {where}, {row.successes}/{svc.health.rise} good rounds")
            )
            return ServiceCheck(name, row.health_state, code, "none", msg, probes, latency, where)
        failed = "; ".join(f"{p.kind}: {p.error}" for p in probes if not p.ok)
        dns_only = all(p.kind == "dns" for p in probes if not p.ok)
        backend_down = any((p.error or "").startswith("DNS backend:") for p in probes)
        if dns_only and (backend_down or any(p.ok for p in probes)):
            # The host answers (or cannot be judged by DNS); only the record is wrong or
            # unreadable. A new host needs the same DNS: moving would churn hosts each round.
            return ServiceCheck(
                name,
                row.health_state,
                CRITICAL,
                "none",
                f"{name} answers on {where}, but {failed}; a failover cannot fix DNS: "
                "check the DNS backend with `failover doctor`",
                probes,
                latency,
                where,
            )
        evidence, detail = self._evidence(active)
        if evidence == "alive" or evidence == "silent":
            trusted, why = self._watcher_trusted(svc, healthy_elsewhere, evidence)
            if not trusted:
                return ServiceCheck(
                    name,
                    "unknown",
                    UNKNOWN,
                    "none",
                    f"{name}: cannot tell: {failed}; and {why}. The watcher itself may be cut "
                    "off; nothing was moved",
                    probes,
                    latency,
                    where,
                )
        proof = evidence in ("gone", "blocked")
        if not dry_run:
            row = self.store.record_round(
                name,
                row.generation,
                False,
                latency,
                svc.health.fall,
                svc.health.rise,
                down_now=proof,
            )
            failures = row.failures
            if row.generation != observed:
                # Another watcher moved the service while this round probed the old host.
                moved = row.active or {}
                return ServiceCheck(
                    name,
                    row.health_state,
                    WARNING,
                    "none",
                    f"{name} was moved to {moved.get('provider')} ({moved.get('address')}:"
                    f"{svc.port}) by another run during this round; its result is dropped",
                    probes,
                    latency,
                    where,
                )
        else:
            failures = row.failures + 1
        down = row.health_state == "down" or proof or failures >= svc.health.fall
        if not down:
            return ServiceCheck(
                name,
                "up",
                WARNING,
                "none",
                f"{name} failing on {where} ({failures}/{svc.health.fall}): {failed}",
                probes,
                latency,
                where,
            )
        why = f"{failed}; {detail}"
        if dry_run:
            action = "would_failover" if svc.policy.auto_failover else "none"
            return ServiceCheck(
                name,
                "down",
                CRITICAL,
                action,
                f"{name} DOWN on {where}: {why} (dry run: nothing done)",
                probes,
                latency,
                where,
            )
        if not svc.policy.auto_failover:
            return ServiceCheck(
                name,
                "down",
                CRITICAL,
                "none",
                f"{name} DOWN on {where}: {why}; auto_failover is off: run "
                f"`failover move {name} --to PROVIDER`",
                probes,
                latency,
                where,
            )
        moves = self.store.moves_since(name, time.time() - 3600)
        if moves >= svc.policy.max_moves_per_hour:
            return ServiceCheck(
                name,
                "down",
                CRITICAL,
                "circuit_breaker",
                f"{name} DOWN on {where}: {why}; circuit breaker open: {moves} moves in the "
                f"last hour (max_moves_per_hour={svc.policy.max_moves_per_hour}); "
                f"move it by hand with `failover move {name} --to PROVIDER`",
                probes,
                latency,
                where,
            )
        outcome = self.run(
            name,
            "failover",
            reason=f"down on {active['provider']}: {why}",
            observed_generation=observed,
        )
        if outcome.status == "succeeded":
            to = (outcome.event or {}).get("to") or {}
            return ServiceCheck(
                name,
                "up",
                WARNING,
                "failover",
                f"{name} moved from {active['provider']} to {to.get('provider')} "
                f"({to.get('address')}:{svc.port}) and is healthy: {why}",
                probes,
                latency,
                where,
            )
        if outcome.status in ("busy", "noop"):
            return ServiceCheck(
                name, "down", WARNING, outcome.status, outcome.message, probes, latency, where
            )
        return ServiceCheck(
            name,
            "down",
            CRITICAL,
            "failover_failed",
            f"{name} DOWN on {where}: {why}; failover failed: {outcome.message}",
            probes,
            latency,
            where,
        )

    def _watcher_trusted(
        self, svc: ServiceConfig, healthy_elsewhere: bool, evidence: str
    ) -> tuple[bool, str]:
        """Is the failed round the service's fault rather than the watcher's?"""
        if svc.health.canary:
            ok, detail = asyncio.run(reach(svc.health.canary, svc.health.timeout))
            return ok, detail
        if healthy_elsewhere:
            return True, "another service answers"
        if evidence == "alive":
            return True, "the provider's API answers"
        if self.config.dns_settings().type != "local":
            # The DNS backend is a canary of its own: usually elsewhere, always needed.
            try:
                self.dns().get_record(svc.domain, svc.record_type)
            except ProviderError as exc:
                return False, f"neither the provider's API nor the DNS backend answers ({exc})"
            return True, "the DNS backend answers"
        return False, "neither the provider's API nor a canary answers"

    # ----------------------------------------------------------------- settling

    def _settle(self, service: str) -> list[str]:
        """Finish what an earlier run left: an interrupted event, old hosts still to be
        fenced, drill hosts of a crashed drill, candidates nobody owns."""
        notes: list[str] = []
        event = self.store.open_event(service)
        if event is not None:
            outcome = self.run(service, event["kind"], reason=event["reason"] or "resume")
            notes.append(outcome.message)
        for host in self.store.hosts(service):
            if host["role"] not in ("fence", "candidate", "drill"):
                continue
            if host["role"] in ("candidate", "drill") and self._owned(host):
                continue
            stop_only = (
                host["role"] == "fence" and self.config.services[service].policy.fence == "stop"
            )
            try:
                self._destroy(host["provider"], host["host_id"], stop_only=stop_only)
            except ProviderError as exc:
                self.store.set_host(
                    host["provider"],
                    host["host_id"],
                    service,
                    host["generation"],
                    host["role"],
                    note=str(exc),
                )
                continue
            self.store.set_host(
                host["provider"],
                host["host_id"],
                service,
                host["generation"],
                "stopped" if stop_only else "destroyed",
                note=f"cleaned up after {host['role']}",
            )
            notes.append(f"{host['role']} host {host['host_id']} on {host['provider']} removed")
        return notes

    def _owned(self, host: dict[str, Any]) -> bool:
        """Is a candidate/drill host still being worked on by a live run?"""
        for event in self.store.events(host["service"], limit=20):
            current = event["data"].get("host") or {}
            if event["status"] == "in_progress" and current.get("host_id") == host["host_id"]:
                return event["kind"] != "drill" or _alive(event["data"].get("pid"))
        return False

    def _destroy(self, provider: str, host_id: str, *, stop_only: bool = False) -> None:
        p = self.provider(provider)
        try:
            if stop_only:
                p.stop_host(host_id)
            else:
                p.destroy_host(host_id)
        except NotFound:
            return
        except AccountBlocked as exc:
            self._blocked(provider, exc)
            raise

    # ----------------------------------------------------------------- runs

    def run(
        self,
        service: str,
        kind: str,
        *,
        reason: str,
        to: str | None = None,
        observed_generation: int | None = None,
    ) -> Outcome:
        """Deploy, fail over or move ``service``, or finish the run an earlier process left.

        ``observed_generation`` binds a failover to what the probes saw: when the service
        moved meanwhile (another watcher was faster), nothing is done."""
        svc_cfg = self.config.services[service]
        lease = self.store.acquire(f"service:{service}", self.config.state.lease_ttl)
        if not isinstance(lease, Lease):
            return Outcome(
                service,
                kind,
                "busy",
                f"{service}: another run holds the lock (pid {lease['pid']} on {lease['host']},"
                f" for {lease['expires_in']}s more); nothing done",
            )
        beat = _Heartbeat(self.config, lease)
        beat.start()
        try:
            event = self.store.open_event(service)
            if event is None:
                row = self.store.service(service)
                if observed_generation is not None and row.generation != observed_generation:
                    return Outcome(
                        service,
                        kind,
                        "noop",
                        f"{service} was already moved by another watcher "
                        f"(generation {row.generation})",
                    )
                if kind == "deploy" and row.active and to is None and self._healthy(service, row):
                    return Outcome(
                        service,
                        kind,
                        "noop",
                        f"{service} is already live and healthy on "
                        f"{row.active['provider']} ({row.active['address']})",
                    )
                if kind == "move" and row.active and row.active["provider"] == to:
                    return Outcome(service, kind, "noop", f"{service} already lives on {to}")
                data: dict[str, Any] = {
                    "expected_generation": row.generation,
                    "to": to,
                    "attempt": 0,
                    "attempts": [],
                    "candidates": [],
                    "pid": os.getpid(),
                }
                if kind == "deploy" and row.active is None and to is None:
                    adopted = self._adoptable(service, row.generation)
                    if adopted is not None:
                        data["to"] = adopted.provider
                        data["target_generation"] = adopted.generation
                        reason = (
                            f"{reason}: adopted {adopted.id} on {adopted.provider} "
                            f"(generation {adopted.generation}), found by its tags"
                        )
                event_id = self.store.start_event(service, kind, reason, row.active, data, lease)
                event = self.store.event(event_id)
                assert event is not None
            else:
                event["data"]["pid"] = os.getpid()
            return self._execute(service, svc_cfg, event, lease, beat)
        except LeaseLost as exc:
            return Outcome(service, kind, "failed", str(exc))
        finally:
            beat.stop.set()
            with contextlib.suppress(LeaseLost):
                self.store.release(lease)

    def _adoptable(self, service: str, generation: int) -> Host | None:
        """After the state was lost: the newest healthy host the providers still run for
        ``service`` (found by its tags). Every other host of the service that is found
        is queued to be fenced, so nothing the toolkit made is left orphaned."""
        found: list[Host] = []
        for name in self.config.service_providers(service):
            try:
                found += self.provider(name).list_hosts(service)
            except ProviderError:
                continue
        best: Host | None = None
        for host in sorted(found, key=lambda h: h.generation, reverse=True):
            usable = host.purpose == "serve" and host.generation > generation
            if usable and host.state == HostState.RUNNING and host.address and best is None:
                probes = asyncio.run(probe_target(self._target(service, host.address)))
                if all(p.ok for p in probes):
                    best = host
                    continue
        for host in found:
            if host is not best:
                self.store.set_host(
                    host.provider,
                    host.id,
                    service,
                    host.generation,
                    "fence",
                    host.address,
                    note="found by its tags after state loss",
                )
        return best

    def _healthy(self, service: str, row: Any) -> bool:
        probes = asyncio.run(probe_target(self._target(service, row.active["address"])))
        return all(p.ok for p in probes)

    def _execute(
        self,
        service: str,
        svc: ServiceConfig,
        event: dict[str, Any],
        lease: Lease | None,
        beat: _Heartbeat | None,
    ) -> Outcome:
        run = _Run(self, service, svc, event, lease, beat)
        return run.execute()

    # ----------------------------------------------------------------- drill

    def drill(self, service: str, to: str) -> Outcome:
        """Rehearse a move to ``to`` on a throwaway host: everything up to ``verify``,
        timed, then the host is torn down. DNS and the live host are not touched."""
        svc_cfg = self.config.services[service]
        self._settle_drills(service)
        data = {
            "to": to,
            "attempt": 0,
            "attempts": [],
            "candidates": [],
            "pid": os.getpid(),
            "expected_generation": self.store.service(service).generation,
        }
        event_id = self.store.start_event(
            service, "drill", f"drill to {to}", self.store.service(service).active, data, None
        )
        event = self.store.event(event_id)
        assert event is not None
        return _Run(self, service, svc_cfg, event, None, None).execute()

    def _settle_drills(self, service: str) -> None:
        for event in self.store.events(service, limit=50, kinds=("drill",)):
            if event["status"] != "in_progress" or _alive(event["data"].get("pid")):
                continue
            host = event["data"].get("host")
            if host:
                try:
                    self._destroy(host["provider"], host["host_id"])
                    self.store.set_host(
                        host["provider"],
                        host["host_id"],
                        service,
                        0,
                        "destroyed",
                        note="drill interrupted",
                    )
                except ProviderError:
                    pass
            self.store.update_event(
                event["id"],
                None,
                status="failed",
                reason=f"{event['reason']} (interrupted; host torn down)",
            )

    # ----------------------------------------------------------------- plan

    def plan(self, service: str, kind: str, to: str | None = None) -> dict[str, Any]:
        row = self.store.service(service)
        current = row.active["provider"] if row.active else None
        selection = self._select(service, kind, to, current)
        target = selection.usable[0] if selection.usable else None
        svc = self.config.services[service]
        gen = row.generation + 1
        steps = [
            ("lock", f"take the lock on {service}"),
            (
                "select",
                "candidates: "
                + ", ".join(f"{c.provider} ({c.reason})" for c in selection.candidates)
                or "none",
            ),
            (
                "provision",
                f"create host {_host_name(service, gen, target or '?')} on {target}"
                if target
                else "nothing: no usable provider",
            ),
            (
                "wait_ready",
                f"until the provider reports it running (ready_timeout "
                f"{svc.policy.ready_timeout:g}s, then the next candidate)",
            ),
            (
                "restore",
                f"setup ({len(svc.run.setup)} commands) and restore "
                f"({len(svc.run.restore)} commands); the service port answers",
            ),
            ("verify", f"{svc.health.rise} good probe rounds against the new host"),
            (
                "cutover",
                f"{svc.domain} {svc.record_type} -> the new address (ttl "
                f"{self.config.dns_settings().ttl}); generation {row.generation} -> {gen}",
            ),
            (
                "fence",
                f"{svc.policy.fence} {row.active['host_id']} on {current}; out of DNS"
                if row.active
                else "nothing to fence",
            ),
            ("release", "release the lock"),
        ]
        return {
            "service": service,
            "kind": kind,
            "from": row.active,
            "to": target,
            "possible": target is not None,
            "candidates": [c.to_dict() for c in selection.candidates],
            "steps": [{"name": n, "does": d} for n, d in steps],
            "generation": row.generation,
        }

    def _select(self, service: str, kind: str, to: str | None, current: str | None) -> Selection:
        priority = self.config.service_providers(service)
        return select(
            kind=kind,
            service=service,
            priority=priority,
            current=current,
            to=to,
            # Fresh: a long-lived engine (`watch`) must see a provider that was blocked
            # earlier and has been restored since, or it would skip it forever (issue 3).
            account=lambda name: self.account(name, fresh=True),
        )

    # ----------------------------------------------------------------- status

    def status(self, services: list[str], *, refresh: bool = True) -> list[dict[str, Any]]:
        names = {n for s in services for n in self.config.service_providers(s)}
        if refresh:
            for name in names:
                self.account(name, fresh=True)
        states = self.store.provider_states()
        out = []
        for name in services:
            svc = self.config.services[name]
            row = self.store.service(name)
            record = None
            try:
                found = self.dns().get_record(svc.domain, svc.record_type)
                record = found.to_dict() if found else None
            except ProviderError as exc:
                record = {"name": svc.domain, "type": svc.record_type, "error": str(exc)}
            last = self.store.events(name, limit=1, kinds=("deploy", "failover", "move"))
            active = None
            if row.active:
                active = {
                    "provider": row.active["provider"],
                    "host_id": row.active["host_id"],
                    "address": row.active["address"],
                    "port": svc.port,
                    "since": row.active_since,
                }
            out.append(
                {
                    "service": name,
                    "domain": svc.domain,
                    "active": active,
                    "health": {
                        "state": row.health_state if row.active else "unknown",
                        "consecutive_failures": row.failures,
                        "consecutive_successes": row.successes,
                        "last_check": row.last_check,
                        "latency_s": None if row.latency is None else round(row.latency, 4),
                    },
                    "dns": record,
                    "generation": row.generation,
                    "last_event": {
                        "kind": last[0]["kind"],
                        "status": last[0]["status"],
                        "finished_at": last[0]["finished_at"],
                    }
                    if last
                    else None,
                    "providers": [
                        {
                            "name": p,
                            "type": self.config.provider_settings()[p].type,
                            "state": states.get(p, {}).get("state", "unknown"),
                            **(
                                {"reason": states[p]["reason"]}
                                if states.get(p, {}).get("reason")
                                else {}
                            ),
                        }
                        for p in self.config.service_providers(name)
                    ],
                }
            )
        return out

    # ----------------------------------------------------------------- doctor

    def doctor(self) -> dict[str, Any]:
        providers = []
        for name in self.config.provider_settings():
            report = self.account(name, fresh=True)
            providers.append(
                {
                    "name": name,
                    "type": self.config.provider_settings()[name].type,
                    "state": report.state,
                    "reason": report.reason,
                    "checks": [c.__dict__ for c in report.checks],
                }
            )
        try:
            dns_report = self.dns().check()
        except ProviderError as exc:
            dns_report = AccountReport("unknown", [Check("api", False, str(exc))], str(exc))
        warnings = self._warnings()
        failed_checks = [
            c
            for report in (*self._accounts.values(), dns_report)
            for c in report.checks
            if not c.ok and c.level == "error"
        ]
        ok = (
            all(p["state"] == "available" for p in providers)
            and dns_report.state == "available"
            and not failed_checks
        )
        return {
            "ok": ok,
            "providers": providers,
            "dns": {
                "type": self.config.dns_settings().type,
                "zone": self.config.dns_settings().zone,
                "state": dns_report.state,
                "reason": dns_report.reason,
                "checks": [c.__dict__ for c in dns_report.checks],
            },
            "warnings": warnings,
        }

    def _warnings(self) -> list[str]:
        out: list[str] = []
        here = _watcher_vendor()
        for name in self.config.services:
            for pname in self.config.service_providers(name):
                vendor = provider_class(self.config.provider_settings()[pname].type).vendor
                if here and vendor == here:
                    out.append(
                        f"{name}: this watcher runs on {here}'s infrastructure, like provider "
                        f"{pname}: if that account is closed the watcher goes with it; run it "
                        "elsewhere too"
                    )
        dns_settings = self.config.dns_settings()
        dns_vendor = dns_class(dns_settings.type).vendor or str(
            getattr(dns_settings, "vendor", "") or ""
        )
        for name, svc in self.config.services.items():
            detect = svc.health.interval * svc.health.fall
            if dns_settings.ttl > detect:
                out.append(
                    f"{name}: the record's TTL ({dns_settings.ttl}s) is longer than the "
                    f"{detect:g}s it takes to detect a failure (interval x fall): clients may "
                    f"keep the old address up to {dns_settings.ttl}s after a cutover; lower "
                    "dns.ttl"
                )
            for pname in self.config.service_providers(name):
                ptype = self.config.provider_settings()[pname].type
                vendor = provider_class(ptype).vendor
                if dns_vendor and vendor and vendor == dns_vendor and vendor != "local":
                    out.append(
                        f"{name}: the zone {dns_settings.zone} is hosted by {vendor}, like "
                        f"provider {pname}: if {pname}'s account is closed, the zone in "
                        f"{dns_settings.type} goes with it and no failover can repoint "
                        f"{svc.domain}; keep the zone with another company"
                    )
        return out

    # ----------------------------------------------------------------- history

    def history(self, service: str | None, limit: int) -> list[dict[str, Any]]:
        events = self.store.events(service, limit=limit)
        for event in events:
            # Candidates that were tried and destroyed before the one that took the service.
            event["attempts"] = event.pop("data", {}).get("attempts", [])
            if event["status"] == "in_progress":
                event["duration_s"] = None
        return events


def _watcher_vendor() -> str | None:
    """Which cloud this machine runs on, read from the DMI tables (no network call)."""
    root = Path(os.environ.get("FAILOVER_DMI_DIR", "/sys/class/dmi/id"))
    parts = []
    for name in ("sys_vendor", "bios_vendor", "product_name", "chassis_asset_tag"):
        try:
            parts.append((root / name).read_text(errors="replace").strip().lower())
        except OSError:
            continue
    text = " ".join(parts)
    if "amazon" in text or "ec2" in text:
        return "aws"
    if "google" in text:
        return "google"
    # Azure VMs carry this chassis asset tag; Hyper-V alone is not Azure.
    if "7783-7084-3265-9085-8269-3286-77" in text:
        return "microsoft"
    return None


def _alive(pid: Any) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _host_name(service: str, generation: int, provider: str, purpose: str = "serve") -> str:
    suffix = "drill" if purpose == "drill" else f"g{generation}"
    return f"{service}-{suffix}-{provider}"


class _Run:
    """One event's steps, executed from wherever the journal says they stopped."""

    def __init__(
        self,
        engine: Engine,
        service: str,
        svc: ServiceConfig,
        event: dict[str, Any],
        lease: Lease | None,
        beat: _Heartbeat | None,
    ) -> None:
        self.e = engine
        self.store = engine.store
        self.service = service
        self.svc = svc
        self.event = event
        self.kind: str = event["kind"]
        self.data: dict[str, Any] = event["data"]
        self.lease = lease
        self.beat = beat
        self.steps = DRILL_STEPS if self.kind == "drill" else STEPS
        self.status = {s["name"]: s["status"] for s in event["steps"]}
        self.origin: dict[str, Any] | None = event["from"]

    # --------------------------------------------------------------- machinery

    def save(self, **kw: Any) -> None:
        self.store.update_event(self.event["id"], self.lease, data=self.data, **kw)

    def journal(self, step: str, status: str, detail: str = "") -> None:
        self.store.step(self.event["id"], self.steps.index(step), step, status, detail, self.lease)
        self.e.on_step(step, status, redact(detail))
        self.e._log(f"{self.service} {self.kind} {step}: {status}{': ' + detail if detail else ''}")

    def execute(self) -> Outcome:
        index = next(
            (i for i, s in enumerate(self.steps) if self.status.get(s) != "succeeded"),
            len(self.steps),
        )
        try:
            while index < len(self.steps):
                step = self.steps[index]
                if self.beat is not None and self.beat.lost:
                    raise LeaseLost(self.beat.lost)
                if self.e.should_stop() and self.kind != "drill":
                    # Left in_progress on purpose: the next command resumes right here.
                    return self.outcome(
                        "interrupted",
                        f"stopped before {step}; the next `failover check` finishes the run",
                    )
                self.journal(step, "in_progress")
                try:
                    detail = getattr(self, f"step_{step}")()
                except CandidateFailed as exc:
                    self.journal(step, "failed", str(exc))
                    self.next_candidate(step, str(exc))
                    index = self.steps.index("provision")
                    continue
                self.journal(step, "succeeded", detail)
                if step == self.steps[-1]:
                    self.finish("succeeded", None)
                _failpoint(step)
                index += 1
        except StepFailed as exc:
            message = str(exc)
            self.journal(self.steps[index], "failed", message)
            self.rollback()
            self.finish("failed", message)
            return self.outcome("failed", message)
        except LeaseLost:
            raise
        except ProviderError as exc:
            message = str(exc)
            self.journal(self.steps[index], "failed", message)
            self.rollback()
            self.finish("failed", message)
            return self.outcome("failed", message)
        return self.outcome("succeeded", self.summary())

    def finish(self, status: str, message: str | None) -> None:
        reason = None
        if message:
            reason = f"{self.event['reason']}: {message}" if self.event["reason"] else message
        self.store.update_event(
            self.event["id"], self.lease, data=self.data, status=status, reason=reason
        )

    def outcome(self, status: str, message: str) -> Outcome:
        event = self.store.event(self.event["id"])
        return Outcome(self.service, self.kind, status, redact(message), self.event["id"], event)

    def summary(self) -> str:
        host = self.data.get("host") or {}
        if self.kind == "drill":
            return f"drill to {host.get('provider')} succeeded; host torn down"
        origin = f" from {self.origin['provider']}" if self.origin else ""
        return (
            f"{self.service} now lives on {host.get('provider')} ({host.get('address')}:"
            f"{self.svc.port}){origin}, generation {self.data.get('generation')}"
        )

    def candidate(self) -> str:
        candidates: list[str] = self.data["candidates"]
        attempt: int = self.data["attempt"]
        if attempt >= len(candidates):
            raise StepFailed(self.no_candidates())
        return candidates[attempt]

    def no_candidates(self) -> str:
        tried = [f"{a['provider']}: {a['result']}" for a in self.data["attempts"]]
        skipped = [f"{p}: {why}" for p, why in self.data.get("skipped", {}).items()]
        parts = tried + skipped
        return "no provider could take the service (" + ("; ".join(parts) or "no candidates") + ")"

    def next_candidate(self, step: str, why: str) -> None:
        host = self.data.get("host")
        provider = host["provider"] if host else self.candidate()
        if host:
            self.cleanup(host, why)
        self.data["attempts"].append({"provider": provider, "step": step, "result": why})
        self.data["host"] = None
        self.data["attempt"] += 1
        self.save()
        if self.data["attempt"] >= len(self.data["candidates"]):
            # The steps stay as they ran, the failed one marked failed, for the report.
            raise StepFailed(self.no_candidates())
        self.store.reset_steps(self.event["id"], CANDIDATE_STEPS, self.lease)

    def cleanup(self, host: dict[str, Any], why: str) -> None:
        """Destroy a candidate that did not make it. If that fails, stop: a silent leak
        is worse than a failed failover."""
        try:
            self.e._destroy(host["provider"], host["host_id"])
        except ProviderError as exc:
            self.store.set_host(
                host["provider"],
                host["host_id"],
                self.service,
                host["generation"],
                "candidate",
                note=f"cleanup failed: {exc}",
            )
            raise StepFailed(
                f"{host['provider']}: {why}; and its host {host['host_id']} could not be "
                f"destroyed ({exc}): it is left on {host['provider']} — destroy it there, "
                "the next `failover check` will also retry"
            ) from None
        self.store.set_host(
            host["provider"],
            host["host_id"],
            self.service,
            host["generation"],
            "destroyed",
            note=why,
        )

    def rollback(self) -> None:
        host = self.data.get("host")
        if host and self.status_of("cutover") != "succeeded":
            try:
                self.cleanup(host, "run failed")
            except StepFailed as exc:
                self.e._log(str(exc))
            self.data["host"] = None

    def status_of(self, step: str) -> str | None:
        return {
            s["name"]: s["status"]
            for s in (self.store.event(self.event["id"]) or {"steps": []})["steps"]
        }.get(step)

    def target_generation(self) -> int:
        adopted = self.data.get("target_generation")
        return int(adopted) if adopted else int(self.data["expected_generation"]) + 1

    def deadline(self) -> float:
        return float(self.data.get("deadline") or (time.time() + self.svc.policy.ready_timeout))

    # --------------------------------------------------------------- the steps

    def step_lock(self) -> str:
        assert self.lease is not None
        return f"held by {self.lease.owner} (token {self.lease.token})"

    def step_select(self) -> str:
        current = self.origin["provider"] if self.origin else None
        selection = self.e._select(self.service, self.kind, self.data.get("to"), current)
        if not self.data["candidates"]:
            self.data["candidates"] = selection.usable
            self.data["skipped"] = {
                c.provider: c.reason for c in selection.candidates if not c.usable
            }
            self.save()
        if not self.data["candidates"]:
            raise StepFailed(f"no provider can take {self.service}: {selection.why_none()}")
        detail = "candidates: " + ", ".join(self.data["candidates"])
        if self.data.get("skipped"):
            detail += "; skipped: " + "; ".join(
                f"{p} ({w})" for p, w in self.data["skipped"].items()
            )
        return detail

    def step_provision(self) -> str:
        provider_name = self.candidate()
        provider = self.e.provider(provider_name)
        purpose = "drill" if self.kind == "drill" else "serve"
        generation = self.target_generation()
        name = _host_name(self.service, generation, provider_name, purpose)
        if purpose == "drill":
            name = f"{self.service}-drill{self.event['id']}-{provider_name}"
        spec = HostSpec(
            name=name,
            service=self.service,
            generation=generation,
            port=self.svc.port,
            run=RunSpec(
                self.svc.run.command,
                tuple(self.svc.run.setup),
                tuple(self.svc.run.restore),
                dict(self.svc.run.env),
            ),
            purpose=purpose,
        )
        try:
            spec = HostSpec(**{**spec.__dict__, "user_data": render_user_data(spec)})
        except TemplateError as exc:
            raise StepFailed(str(exc)) from None
        if not self.data.get("deadline") or (self.data.get("host") is None):
            self.data["deadline"] = time.time() + self.svc.policy.ready_timeout
            self.save()
        try:
            host = provider.create_host(spec)
        except AccountBlocked as exc:
            self.e._blocked(provider_name, exc)
            raise CandidateFailed(f"blocked: {exc}") from None
        except ProviderError as exc:
            raise CandidateFailed(f"{exc.kind}: {exc}") from None
        self.data["host"] = {
            "provider": provider_name,
            "host_id": host.id,
            "name": host.name,
            "address": host.address,
            "generation": generation,
            "zone": host.zone,
        }
        self.save()
        self.store.set_host(
            provider_name,
            host.id,
            self.service,
            generation,
            "drill" if purpose == "drill" else "candidate",
            host.address,
        )
        zone = f" in {host.zone}" if host.zone and host.zone != "loopback" else ""
        return f"{host.id} ({host.name}) on {provider_name}{zone}"

    def _host(self) -> tuple[ComputeProvider, dict[str, Any]]:
        host = self.data.get("host")
        if not host:
            raise CandidateFailed("the candidate host is not recorded")
        return self.e.provider(host["provider"]), host

    def _poll_host(self) -> Host:
        provider, host = self._host()
        try:
            found = provider.get_host(host["host_id"])
        except AccountBlocked as exc:
            self.e._blocked(host["provider"], exc)
            raise CandidateFailed(f"blocked: {exc}") from None
        except NotFound:
            found = None
        except TransientError:
            return Host(
                host["host_id"], host["provider"], host["name"], self.service, 0, HostState.UNKNOWN
            )
        if found is None:
            raise CandidateFailed(f"host {host['host_id']} vanished on {host['provider']}")
        if found.state.gone:
            raise CandidateFailed(
                f"host {host['host_id']} {found.state.value}"
                f"{': ' + found.reason if found.reason else ''}"
            )
        return found

    def _timeout(self, what: str) -> CandidateFailed:
        return CandidateFailed(
            f"{what} within ready_timeout ({self.svc.policy.ready_timeout:g}s); host destroyed"
        )

    def step_wait_ready(self) -> str:
        started = time.time()
        while True:
            host = self._poll_host()
            if (
                host.state in (HostState.RUNNING, HostState.PENDING)
                and host.address
                and (host.state == HostState.RUNNING or host.raw_state in ("setup", "restore"))
            ):
                if host.address != self.data["host"].get("address"):
                    self.data["host"]["address"] = host.address
                    self.save()
                return (
                    f"{host.raw_state or host.state.value} at {host.address} after "
                    f"{time.time() - started:.1f}s"
                )
            if time.time() > self.deadline():
                raise self._timeout(f"not running ({host.state.value})")
            time.sleep(_poll_interval(self.svc))

    def step_restore(self) -> str:
        host = self.data["host"]
        svc = self.svc
        started = time.time()
        while True:
            self._poll_host()
            ok, _ = asyncio.run(
                reach(f"{host['address']}:{svc.port}", min(svc.health.timeout, 1.0))
            )
            if ok:
                return (
                    f"setup ({len(svc.run.setup)}) and restore ({len(svc.run.restore)}) "
                    f"done; port {svc.port} answers after {time.time() - started:.1f}s"
                )
            if time.time() > self.deadline():
                raise self._timeout(f"port {svc.port} on {host['address']} not answering")
            time.sleep(_poll_interval(svc))

    def step_verify(self) -> str:
        host = self.data["host"]
        target = self.e._target(self.service, host["address"])
        # The dns probe checks the record, which points at the old host until cutover.
        health = target.health.model_copy(update={"dns": None})
        if not (health.http or health.tcp or health.tls):
            health = health.model_copy(update={"tcp": _tcp()})
        target.health = health
        good, last = 0, ""
        while True:
            probes = asyncio.run(probe_target(target))
            if all(p.ok for p in probes):
                good += 1
                if good >= self.svc.health.rise:
                    latency = max((p.latency_s or 0) for p in probes)
                    return f"{good} good rounds; latency {latency:.3f}s"
            else:
                good = 0
                last = "; ".join(f"{p.kind}: {p.error}" for p in probes if not p.ok)
                self._poll_host()
            if time.time() > self.deadline():
                raise self._timeout(f"probes not passing ({last})")
            time.sleep(min(self.svc.health.interval, 0.25))

    def step_cutover(self) -> str:
        host = self.data["host"]
        svc = self.svc
        dns = self.e.dns()
        ttl = self.e.config.dns_settings().ttl
        expect = [self.origin["address"]] if self.origin and self.origin.get("address") else None
        try:
            record = dns.set_record(
                svc.domain, svc.record_type, [host["address"]], ttl, expect=expect
            )
        except ConflictError:
            current = dns.get_record(svc.domain, svc.record_type)
            if current is None or current.values != [host["address"]]:
                # Someone else changed the record. Only a newer generation may; re-read
                # ours: if it moved, this run lost, otherwise take the record back.
                row = self.store.service(self.service)
                if row.generation != self.data["expected_generation"]:
                    raise LeaseLost(
                        f"{self.service} moved meanwhile (generation "
                        f"{row.generation}); this run stops"
                    ) from None
                record = dns.set_record(svc.domain, svc.record_type, [host["address"]], ttl)
            else:
                record = current
        except TransientError as exc:
            raise StepFailed(f"DNS update failed: {exc}") from None
        if sorted(record.values) != [host["address"]]:
            raise StepFailed(f"DNS answers {record.values} after the update, not {host['address']}")
        active = {
            "provider": host["provider"],
            "host_id": host["host_id"],
            "address": host["address"],
            "name": host["name"],
        }
        generation = self.store.cutover(
            self.service,
            int(self.data["expected_generation"]),
            active,
            self.lease,
            generation=self.target_generation(),
        )
        self.data["generation"] = generation
        self.save(
            target={
                "provider": host["provider"],
                "host_id": host["host_id"],
                "address": host["address"],
            }
        )
        self.store.set_host(
            host["provider"], host["host_id"], self.service, generation, "active", host["address"]
        )
        if self.origin:
            self.store.set_host(
                self.origin["provider"],
                self.origin["host_id"],
                self.service,
                int(self.data["expected_generation"]),
                "fence",
                self.origin.get("address"),
            )
        return (
            f"{svc.domain} {svc.record_type} -> {host['address']} (ttl {record.ttl}); "
            f"generation {generation}"
        )

    def step_fence(self) -> str:
        if not self.origin:
            return "no previous host"
        origin = self.origin
        how = self.svc.policy.fence
        try:
            self.e._destroy(origin["provider"], origin["host_id"], stop_only=how == "stop")
        except AccountBlocked as exc:
            self.store.set_host(
                origin["provider"],
                origin["host_id"],
                self.service,
                int(self.data["expected_generation"]),
                "fence",
                note=str(exc),
            )
            return (
                f"{origin['host_id']} on {origin['provider']}: the provider refuses us "
                f"({exc.message}); out of DNS, will be {how}ed when it answers again"
            )
        except ProviderError as exc:
            self.store.set_host(
                origin["provider"],
                origin["host_id"],
                self.service,
                int(self.data["expected_generation"]),
                "fence",
                note=str(exc),
            )
            return (
                f"{origin['host_id']} on {origin['provider']}: {exc}; out of DNS, "
                f"will be {how}ed by the next check"
            )
        role = "destroyed" if how == "destroy" else "stopped"
        self.store.set_host(
            origin["provider"],
            origin["host_id"],
            self.service,
            int(self.data["expected_generation"]),
            role,
        )
        return f"{origin['host_id']} on {origin['provider']} {how}ed; out of DNS"

    def step_release(self) -> str:
        return "lock released"

    def step_teardown(self) -> str:
        host = self.data.get("host")
        if not host:
            return "no host"
        self.cleanup(host, "drill finished")
        self.data["host"] = None
        self.data["torn_down"] = host
        self.save(
            target={
                "provider": host["provider"],
                "host_id": host["host_id"],
                "address": host["address"],
            }
        )
        return f"{host['host_id']} on {host['provider']} destroyed"


def _poll_interval(svc: ServiceConfig) -> float:
    return min(max(svc.health.interval / 4, 0.05), 1.0)


def _tcp() -> Any:
    from failover.config import TcpProbe

    return TcpProbe()


__all__ = [
    "CRITICAL",
    "OK",
    "STEPS",
    "UNKNOWN",
    "WARNING",
    "Engine",
    "Outcome",
    "ServiceCheck",
    "now_iso",
]
