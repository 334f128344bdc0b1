"""The engine: the one facade the CLI, ``watch`` and the demo call.

Where things live:

- :mod:`.health`: the verdict of a probe round (is it down? may we act?);
- :mod:`.runner`: the nine journaled steps of one run, and nothing else;
- :mod:`.settle`: finishing interrupted runs, cleaning drills, adopting hosts after
  the state was lost;
- :mod:`.views`: the plan, status, doctor and history documents;
- :mod:`.journal`: the typed records of a run.

This module keeps what they share: the providers (made once per engine), the lock
around a run, and the small public methods the rooms use instead of reaching into each
other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

from failover.certs_renew import certs_round
from failover.config import Config
from failover.data.meter import OnTransfer
from failover.data.meter import Transfer
from failover.data.plane import data_round
from failover.delivery import Notifier
from failover.engine import dnssync
from failover.engine import dnsview
from failover.engine import rounds
from failover.engine import settle as _settle
from failover.engine import standby
from failover.engine import views
from failover.engine.fanout import DnsFanout
from failover.engine.fit import restore_problem
from failover.engine.health import CRITICAL
from failover.engine.health import OK
from failover.engine.health import UNKNOWN
from failover.engine.health import WARNING
from failover.engine.health import CheckCode
from failover.engine.health import EngineObserver
from failover.engine.health import Judge
from failover.engine.health import ProviderWord
from failover.engine.health import ServiceCheck
from failover.engine.health import Verdict
from failover.engine.health import after_failover
from failover.engine.health import not_deployed
from failover.engine.journal import STEPS
from failover.engine.journal import Outcome
from failover.engine.journal import RunData
from failover.engine.runner import run_event
from failover.engine.zone import ZoneWriter
from failover.planner import Selection
from failover.planner import select
from failover.probes import ProbeResult
from failover.probes import Target
from failover.probes import probe_target
from failover.publish import Publisher
from failover.redact import redact
from failover.round_alerts import announce_round
from failover.state import Lease
from failover.state import LeaseLost
from failover.state import ServiceRow
from failover.state import now_iso
from failover.state import open_store
from failover.watchers import watchers_for
from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import Check
from providers.base import ComputeProvider
from providers.base import DnsProvider
from providers.base import NotFound
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import provider_class

StepCallback = Callable[[str, str, str], None]


class _Heartbeat(threading.Thread):
    """Keeps the lease alive while a long step (provisioning) runs."""

    def __init__(self, config: Config, lease: Lease) -> None:
        super().__init__(daemon=True, name="failover-lease")
        self.config = config
        self.lease = lease
        self.stop = threading.Event()
        self.lost: str | None = None

    def run(self) -> None:
        store = open_store(self.config)
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
        on_transfer: OnTransfer | None = None,
    ) -> None:
        assert config.state_dir is not None
        self.should_stop = should_stop or (lambda: False)
        self.config = config
        self.store = open_store(config)
        self.watchers = watchers_for(config, self.store)
        self._log = log or (lambda message: None)
        self.on_step = on_step or (lambda step, status, detail: None)
        self._on_transfer = on_transfer
        self._providers: dict[str, ComputeProvider] = {}
        self._fanout: DnsFanout | None = None
        # A sibling (one of a round's parallel moves) borrows its parent's thread-safe
        # providers and zone writer instead of building clients of its own.
        self._parent: Engine | None = None
        self._borrowed: dict[str, ComputeProvider] = {}
        self._making = threading.Lock()
        self._accounts: dict[str, AccountReport] = {}
        # Shared with the siblings that run a round's failovers; renewed every round.
        self.blocklist = rounds.RoundBlocklist()
        # Deliveries run on the notifier's own thread, after the step that caused them.
        self.notifier = Notifier(config, self.log, owner=self)
        self.publisher = Publisher(config, self.log, owner=self)  # the status page, likewise
        self.context = ProviderContext(
            state_dir=config.state_dir,
            log=self.log,
            ports={name: svc.port for name, svc in config.services.items()},
        )

    def log(self, message: str) -> None:
        self._log(redact(message))

    def on_transfer(self, report: Transfer) -> None:
        """A backup's or a restore's progress (:mod:`failover.data.meter`): the status
        page's, and the caller's (a terminal's progress bar)."""
        self.publisher.transfer(report)
        if self._on_transfer is not None:
            # A terminal that went away must not leave the page showing it under way.
            with contextlib.suppress(Exception):
                self._on_transfer(report)

    def close(self) -> None:
        if self.notifier.owner is self:
            self.notifier.close()  # bounded: a one-shot check sends what it caused
        if self.publisher.owner is self:
            self.publisher.close()
        for provider in self._providers.values():
            provider.close()
        if self._fanout is not None:
            self._fanout.close()
        self.watchers.close()
        self.store.close()

    # ----------------------------------------------------------------- providers

    def provider(self, name: str) -> ComputeProvider:
        """The provider called ``name``, made once per engine (once per round for the
        siblings when its instances may be shared across threads)."""
        made = self._providers.get(name) or self._borrowed.get(name)
        if made is not None:
            return made
        settings = self.config.provider_settings()[name]
        cls = provider_class(settings.type)
        if self._parent is not None and cls.shared_across_threads:
            self._borrowed[name] = self._parent.provider(name)
            return self._borrowed[name]
        with self._making:  # siblings may ask their parent at the same moment
            if name not in self._providers:
                self._providers[name] = cls(settings, self.context)
        return self._providers[name]

    def fanout(self) -> DnsFanout:
        """Every DNS provider of the file, each with its writer (section 12)."""
        if self._fanout is None:
            self._fanout = DnsFanout(self)
        return self._fanout

    def dns(self) -> DnsProvider:
        """The first DNS provider (the only one of a single-provider file)."""
        return self.fanout().backend(self.config.dns_settings().name)

    def zone(self) -> ZoneWriter:
        """The round's writer of the first DNS provider's zone (see :meth:`fanout`)."""
        return self.fanout().writer(self.config.dns_settings().name)

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

    def mark_blocked(self, name: str, exc: AccountBlocked) -> None:
        """``name`` refused us: the planner skips it until its account answers again."""
        self.blocklist.add(name, f"blocked ({exc.message})")
        self._accounts[name] = AccountReport(
            "blocked", [Check("account", False, str(exc))], exc.message
        )
        self.store.set_provider_state(name, "blocked", exc.message)

    def destroy(self, provider: str, host_id: str, *, stop_only: bool = False) -> None:
        """Stop or destroy a host; one that is already gone is fine."""
        p = self.provider(provider)
        try:
            if stop_only:
                p.stop_host(host_id)
            else:
                p.destroy_host(host_id)
        except NotFound:
            return
        except AccountBlocked as exc:
            self.mark_blocked(provider, exc)
            raise

    def select(self, service: str, kind: str, to: str | None, current: str | None) -> Selection:
        """The candidate providers for a run, in the order they are tried."""
        return select(
            kind=kind,
            service=service,
            priority=self.config.service_providers(service),
            current=current,
            to=to,
            # Fresh each round: a long-lived engine (`watch`) must see a provider that was
            # blocked earlier and has been restored since, or it would skip it forever
            # (issue 3); once per round: not once per move (issue 28).
            account=lambda name: self._round_account(name, service),
            unfit=lambda provider: restore_problem(self.config, service, provider),
        )

    def _round_account(self, name: str, service: str) -> AccountReport:
        why = self.blocklist.get(name)
        if why is not None:
            # Another move of this round just found it so: do not spend a ready_timeout
            # finding out again.
            return AccountReport("blocked", [Check("round", False, why)], f"this round: {why}")
        report = self.blocklist.once((name, None), lambda: self.account(name, fresh=True))
        if report.state != "available":
            return report
        port = self.config.services[service].port
        return self.blocklist.once(
            (name, service), lambda: self.provider(name).check_service(service, port) or report
        )

    def sibling(self, should_stop: Callable[[], bool] | None = None) -> Engine:
        """An engine for another thread (its own store connection and provider
        clients) sharing this one's round: its blocklist, log and callbacks."""
        other = Engine(
            self.config,
            log=self._log,
            on_step=self.on_step,
            should_stop=should_stop or self.should_stop,
            on_transfer=self._on_transfer,
        )
        other.blocklist = self.blocklist
        other.notifier = self.notifier
        other.publisher = self.publisher
        other._parent = self
        return other

    def announce(self, event: str, service: str, **fields: Any) -> None:
        """Tell the operators (``notify:``) about ``event``: queued, sent in the
        background, journaled; see :meth:`failover.delivery.Notifier.announce`."""
        self.notifier.announce(event, service, **fields)

    # ----------------------------------------------------------------- probes

    def target(self, service: str, address: str) -> Target:
        """What the probes of ``service`` aim at when its host is at ``address``."""
        svc = self.config.services[service]
        resolver = None
        if svc.health.dns is not None and svc.health.dns.server is None:
            resolver = dnsview.resolver(self, service, address)
        return Target(service, address, svc.port, svc.domain, svc.health, resolver, svc.record_type)

    def healthy(self, service: str, address: str) -> bool:
        probes = asyncio.run(probe_target(self.target(service, address)))
        return all(p.ok for p in probes)

    # ----------------------------------------------------------------- check

    def check(self, services: list[str], *, dry_run: bool = False) -> list[Verdict]:
        """One probe round for ``services`` (concurrently), counters updated, and a
        failover where the policy says so."""
        finished: dict[str, list[str]] = {}
        if not dry_run:
            self.notifier.retry()
            for name in self.watchers.settle_due(services):
                finished[name] = _settle.settle(self, name)
        self.blocklist = rounds.RoundBlocklist()
        rows = self.store.services(services)
        results = {n: not_deployed(n) for n, r in rows.items() if not r.active}
        live = {n: r for n, r in rows.items() if r.active}
        targets = {n: self.target(n, r.active["address"]) for n, r in live.items() if r.active}
        probes, spares = rounds.probe_with(self, targets, standby.targets(self, live))
        words = self.provider_words(live)
        if not dry_run:
            self.watchers.observe(live, probes, words)
        results.update(rounds.verdicts(self, live, probes, dry_run, words))
        results.update(data_round(self, results, dry_run=dry_run))
        results.update(dnssync.dns_round(self, results, dry_run=dry_run))
        results.update(certs_round(self, results, dry_run=dry_run))
        if not dry_run:
            standby.maintain(self, results, spares)
            announce_round(self, results)  # and the verdicts to the notifier
            self.publisher.round(results.values())
        return [_settle.with_notes(results[n], finished.get(n)) for n in services]

    def provider_words(self, rows: dict[str, ServiceRow]) -> dict[str, ProviderWord]:
        """Each live host's provider asked about it, batched per provider where it can
        and bounded: a provider that refuses us while the host still answers is the
        warning before the account closes, and a failing host needs the provider's word
        anyway."""
        return rounds.provider_words(self, rows)

    def judge(
        self,
        name: str,
        row: ServiceRow,
        probes: list[ProbeResult],
        healthy_elsewhere: bool = False,
        dry_run: bool = False,
        word: ProviderWord | None = None,
    ) -> Verdict:
        """The verdict on one service from the probes of one round about ``row`` (the
        state as the round saw it), and the failover it calls for, run."""
        svc = self.config.services[name]
        if word is None:
            word = self.provider_words({name: row}).get(name, ProviderWord("silent", ""))
        observer = EngineObserver(self, name, row, healthy_elsewhere, word)
        verdict = Judge(name, svc, row, probes, observer, dry_run=dry_run).verdict()
        if verdict.action != "failover":
            return verdict
        return self.fail_over(name, row, verdict)

    def fail_over(self, name: str, row: ServiceRow, verdict: Verdict) -> Verdict:
        """Run the failover ``verdict`` calls for; the verdict once it ran."""
        svc = self.config.services[name]
        assert row.active is not None
        origin = row.active["provider"]
        outcome = self.run(
            name,
            "failover",
            reason=f"down on {origin}: {verdict.reason}",
            observed_generation=row.generation,
        )
        return after_failover(verdict, outcome, origin, svc.port)

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
            earlier = None
            if event is not None and not _settle.same_run(event, kind, to):
                # Another run was interrupted: finish it first, then do what was asked
                # (its success is not ours to report, issue 21).
                event["data"]["pid"] = os.getpid()
                earlier = run_event(self, event, lease, lease_lost=lambda: beat.lost)
                self.notifier.outcome(earlier)
                event = None
            if event is None:
                row = self.store.service(service)
                early = self._nothing_to_do(service, kind, row, to, observed_generation)
                if early is not None:
                    return _settle.after_earlier(earlier, early)
                event = self._start(service, kind, reason, row, to, lease)
            else:
                event["data"]["pid"] = os.getpid()
            outcome = run_event(self, event, lease, lease_lost=lambda: beat.lost)
            self.notifier.outcome(outcome)  # queued: sent after the run, never during
            return _settle.after_earlier(earlier, outcome)
        except LeaseLost as exc:
            return Outcome(service, kind, "failed", str(exc))
        finally:
            beat.stop.set()
            with contextlib.suppress(LeaseLost):
                self.store.release(lease)

    def _nothing_to_do(
        self,
        service: str,
        kind: str,
        row: ServiceRow,
        to: str | None,
        observed_generation: int | None,
    ) -> Outcome | None:
        if observed_generation is not None and row.generation != observed_generation:
            return Outcome(
                service,
                kind,
                "noop",
                f"{service} was already moved by another watcher (generation {row.generation})",
            )
        if (
            kind == "deploy"
            and row.active
            and to in (None, row.active["provider"])  # `--provider` where it lives already
            and self.healthy(service, row.active["address"])
        ):
            return Outcome(
                service,
                kind,
                "noop",
                f"{service} is already live and healthy on "
                f"{row.active['provider']} ({row.active['address']})",
            )
        if kind == "move" and row.active and row.active["provider"] == to:
            return Outcome(service, kind, "noop", f"{service} already lives on {to}")
        return None

    def _start(
        self,
        service: str,
        kind: str,
        reason: str,
        row: ServiceRow,
        to: str | None,
        lease: Lease,
    ) -> dict[str, Any]:
        data = RunData(expected_generation=row.generation, to=to)
        if kind == "deploy" and row.active is None and to is None:
            adopted = _settle.adoptable(self, service, row.generation)
            if adopted is not None:
                data.to = adopted.provider
                data.target_generation = adopted.generation
                reason = (
                    f"{reason}: adopted {adopted.id} on {adopted.provider} "
                    f"(generation {adopted.generation}), found by its tags"
                )
        if kind == "deploy" and row.active is None and data.target_generation is None:
            data.target_generation = _settle.next_generation(self, service, row.generation)
        event_id = self.store.start_event(service, kind, reason, row.active, data.to_dict(), lease)
        event = self.store.event(event_id)
        assert event is not None
        return event

    def drill(self, service: str, to: str, *, cold: bool = False) -> Outcome:
        """Rehearse a move to ``to`` on a throwaway host: everything up to ``verify``,
        timed, then the host is torn down. DNS and the live host are not touched. With
        a warm standby on ``to`` the drill runs on it (and keeps it) unless ``cold``."""
        _settle.settle_drills(self, service)
        row = self.store.service(service)
        data = RunData(expected_generation=row.generation, to=to)
        if cold:
            data.extra["cold"] = True
        event_id = self.store.start_event(
            service, "drill", f"drill to {to}", row.active, data.to_dict(), None
        )
        event = self.store.event(event_id)
        assert event is not None
        return run_event(self, event, None)

    # ----------------------------------------------------------------- documents

    def plan(self, service: str, kind: str, to: str | None = None) -> dict[str, Any]:
        return views.plan(self, service, kind, to)

    def status(self, services: list[str], *, refresh: bool = True) -> list[dict[str, Any]]:
        return views.status(self, services, refresh=refresh)

    def doctor(self) -> dict[str, Any]:
        return views.doctor(self)

    def history(self, service: str | None, limit: int) -> list[dict[str, Any]]:
        return views.history(self, service, limit)


__all__ = [
    "CRITICAL",
    "OK",
    "STEPS",
    "UNKNOWN",
    "WARNING",
    "CheckCode",
    "Engine",
    "Outcome",
    "ServiceCheck",
    "Verdict",
    "now_iso",
]
