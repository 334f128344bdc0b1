"""The verdict: is this service down, and what may be done about it?

A probe round's results climb a short ladder of named checks (:class:`Judge`). Each rung
either settles the verdict or asks one more question of an :class:`Observer` (the
provider's word on the host, whether the watcher itself can see, the health counters in
the state), so a healthy service costs no provider call and a table of cases can test
the whole ladder without a provider. Acting on the verdict (running the failover) is the
engine's job, not this module's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

from failover.config import ServiceConfig
from failover.exitcodes import CheckCode as CheckCode
from failover.probes import ProbeResult
from failover.probes import reach
from failover.state import ServiceRow
from providers.base import AccountBlocked
from providers.base import ComputeProvider
from providers.base import Host
from providers.base import NotFound
from providers.base import ProviderError

if TYPE_CHECKING:
    from failover.engine import Engine
    from failover.engine.journal import Outcome


OK, WARNING, CRITICAL, UNKNOWN = CheckCode


@dataclass(frozen=True)
class Verdict:
    """What one round concluded about one service."""

    service: str
    state: str  # up | down | unknown
    exit_code: CheckCode
    action: str  # none | failover | would_failover | circuit_breaker | busy | noop | ...
    message: str
    probes: list[ProbeResult] = field(default_factory=list)
    latency: float | None = None
    where: str = ""
    reason: str = ""  # why a failover is due: the run's reason
    blocked: str | None = None  # the live host's provider refuses us (and says this)

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "state": self.state,
            "exit_code": int(self.exit_code),
            "action": self.action,
            "message": self.message,
            "probes": [p.to_dict() for p in self.probes],
        }


# The name the CLI, `watch` and the tests have always used for a verdict.
ServiceCheck = Verdict


class Observer(Protocol):
    """The questions the ladder asks beyond the probes, each only when it gets there."""

    def provider_says(self) -> tuple[str, str]:
        """The provider's word on the live host: ``gone`` or ``blocked`` (proof it is
        down), ``alive``, ``silent`` (its API did not answer) or ``untrusted`` (its
        machine shows a host key the pin refuses); and a sentence."""

    def watcher_sees(self, provider_word: str) -> tuple[bool, str]:
        """Is a failed round the service's fault rather than the watcher's own?"""

    def record(self, ok: bool, latency: float | None, *, down_now: bool = False) -> ServiceRow:
        """Add this round to the health counters; the row as it is afterwards."""

    def moves_last_hour(self) -> int:
        """Failovers of this service in the last hour (the circuit breaker): a manual
        move is an operator's decision, not flapping."""

    def quorum_sees_down(self, proof: bool) -> tuple[bool, str]:
        """Do enough watcher locations see the service down (always, with one watcher;
        ``proof``: the provider's word needs no votes)? And the count, in words."""

    def may_act(self) -> tuple[bool, str]:
        """Is this the acting watcher, and did its decision commit? Else who acts."""


class Judge:
    """The ladder for one service and one round. :meth:`verdict` reads top to bottom."""

    def __init__(
        self,
        service: str,
        svc: ServiceConfig,
        row: ServiceRow,
        probes: list[ProbeResult],
        observer: Observer,
        *,
        dry_run: bool = False,
    ) -> None:
        assert row.active is not None
        self.service, self.svc, self.row, self.probes = service, svc, row, probes
        self.observer, self.dry_run = observer, dry_run
        # The probes saw the host of this generation; every decision is bound to it.
        self.observed = row.generation
        self.where = f"{row.active['provider']} ({row.active['address']}:{svc.port})"
        self.latency = max((p.latency_s or 0.0) for p in probes) if probes else None
        self.failed = "; ".join(f"{p.kind}: {p.error}" for p in probes if not p.ok)

    def verdict(self) -> Verdict:
        if self.probes_pass():
            return self.healthy()
        if self.only_dns_fails():
            return self.dns_problem()
        word, detail = self.observer.provider_says()
        proof = word in ("gone", "blocked")
        if not proof:
            sees, why = self.observer.watcher_sees(word)
            if not sees:
                return self.blind(why)
        failures = self.count_failure(proof)
        if self.moved_meanwhile():
            return self.dropped()
        if not (proof or self.is_down(failures)):
            return self.failing(failures)
        agreed, votes = self.observer.quorum_sees_down(proof)
        if not agreed:
            return self.outvoted(votes)
        why = f"{self.failed}; {detail}" + (f"; {votes}" if votes else "")
        if self.dry_run:
            return self.would_fail_over(why)
        if not self.svc.policy.auto_failover:
            return self.hands_off(why)
        moves = self.observer.moves_last_hour()
        if moves >= self.svc.policy.max_moves_per_hour:
            return self.circuit_open(why, moves)
        acts, who = self.observer.may_act()
        if not acts:
            return self.another_acts(why, who)
        msg = f"{self.service} DOWN on {self.where}: {why}"
        return self.make("down", CRITICAL, "failover", msg, why)

    # ------------------------------------------------------------ predicates

    def probes_pass(self) -> bool:
        return all(p.ok for p in self.probes)

    def only_dns_fails(self) -> bool:
        """The host answers (or cannot be judged by DNS); only the record is wrong or
        unreadable. A new host needs the same DNS: moving would churn hosts each round."""
        dns_only = all(p.kind == "dns" for p in self.probes if not p.ok)
        backend_down = any((p.error or "").startswith("DNS backend:") for p in self.probes)
        return dns_only and (backend_down or any(p.ok for p in self.probes))

    def count_failure(self, proof: bool) -> int:
        if self.dry_run:
            return self.row.failures + 1
        self.row = self.observer.record(False, self.latency, down_now=proof)
        return self.row.failures

    def moved_meanwhile(self) -> bool:
        """Another watcher moved the service while this round probed the old host."""
        return self.row.generation != self.observed

    def is_down(self, failures: int) -> bool:
        return self.row.health_state == "down" or failures >= self.svc.health.fall

    # ------------------------------------------------------------ verdicts

    def make(self, state: str, code: CheckCode, action: str, msg: str, why: str = "") -> Verdict:
        return Verdict(
            self.service, state, code, action, msg, self.probes, self.latency, self.where, why
        )

    def healthy(self) -> Verdict:
        if not self.dry_run:
            self.row = self.observer.record(True, self.latency)
        word, detail = self.observer.provider_says()
        if word == "blocked":
            return self.refused(detail)
        if word == "untrusted":
            return self.untrusted(detail)
        rise = self.svc.health.rise
        if self.row.health_state == "up":
            return self.make("up", OK, "none", f"{self.service} healthy on {self.where}")
        msg = f"{self.service} answering on {self.where}, {self.row.successes}/{rise} good rounds"
        return self.make(self.row.health_state, WARNING, "none", msg)

    def refused(self, detail: str) -> Verdict:
        """The host still answers but its provider refuses us: the day's notice before
        the account is closed and the host with it."""
        msg = (
            f"{self.service} answers on {self.where}, but its provider refuses us: {detail}; "
            f"move it while it still serves: `failover plan {self.service}` shows where, "
            f"`failover move {self.service} --to PROVIDER` moves it"
        )
        return replace(self.make("up", WARNING, "none", msg), blocked=detail)

    def untrusted(self, detail: str) -> Verdict:
        """The host answers, but the machine under it no longer shows the pinned host
        key: nothing can be sent to it (no fence, no stop) until someone finds out why."""
        msg = (
            f"{self.service} answers on {self.where}, but its machine cannot be trusted: "
            f"{detail}; a move could not fence it: check the machine's key out of band "
            "(someone in the middle, or a reinstall?) and re-pin host_key"
        )
        return self.make("up", WARNING, "none", msg)

    def dns_problem(self) -> Verdict:
        msg = (
            f"{self.service} answers on {self.where}, but {self.failed}; a failover cannot "
            "fix DNS: check the DNS backend with `failover doctor`"
        )
        return self.make(self.row.health_state, CRITICAL, "none", msg)

    def blind(self, why: str) -> Verdict:
        msg = (
            f"{self.service}: cannot tell: {self.failed}; and {why}. The watcher itself may "
            "be cut off; nothing was moved"
        )
        return self.make("unknown", UNKNOWN, "none", msg)

    def dropped(self) -> Verdict:
        moved = self.row.active or {}
        msg = (
            f"{self.service} was moved to {moved.get('provider')} ({moved.get('address')}:"
            f"{self.svc.port}) by another run during this round; its result is dropped"
        )
        return self.make(self.row.health_state, WARNING, "none", msg)

    def failing(self, failures: int) -> Verdict:
        fall = self.svc.health.fall
        msg = f"{self.service} failing on {self.where} ({failures}/{fall}): {self.failed}"
        return self.make("up", WARNING, "none", msg)

    def outvoted(self, votes: str) -> Verdict:
        """This watcher sees it down, too few places agree: maybe this one is cut off."""
        msg = (
            f"{self.service} failing on {self.where} as seen from here ({self.failed}), "
            f"but {votes}; nothing moves"
        )
        return self.make("up", WARNING, "none", msg)

    def another_acts(self, why: str, who: str) -> Verdict:
        msg = f"{self.service} DOWN on {self.where}: {why}; {who}"
        return self.make("down", CRITICAL, "none", msg, why)

    def would_fail_over(self, why: str) -> Verdict:
        action = "would_failover" if self.svc.policy.auto_failover else "none"
        msg = f"{self.service} DOWN on {self.where}: {why} (dry run: nothing done)"
        return self.make("down", CRITICAL, action, msg, why)

    def hands_off(self, why: str) -> Verdict:
        msg = (
            f"{self.service} DOWN on {self.where}: {why}; auto_failover is off: run "
            f"`failover move {self.service} --to PROVIDER`"
        )
        return self.make("down", CRITICAL, "none", msg, why)

    def circuit_open(self, why: str, moves: int) -> Verdict:
        limit = self.svc.policy.max_moves_per_hour
        msg = (
            f"{self.service} DOWN on {self.where}: {why}; circuit breaker open: {moves} "
            f"failovers in the last hour (max_moves_per_hour={limit}; manual moves do not "
            "count); move it by hand with "
            f"`failover move {self.service} --to PROVIDER`"
        )
        return self.make("down", CRITICAL, "circuit_breaker", msg, why)


def after_failover(verdict: Verdict, outcome: Outcome, origin: str, port: int) -> Verdict:
    """The verdict once the failover it called for has run (``origin``: its provider)."""
    name, why = verdict.service, verdict.reason
    if outcome.status == "succeeded":
        to = (outcome.event or {}).get("to") or {}
        msg = (
            f"{name} moved from {origin} to {to.get('provider')} ({to.get('address')}:{port}) "
            f"and is healthy: {why}"
        )
        return replace(verdict, state="up", exit_code=WARNING, message=msg)
    if outcome.status in ("busy", "noop"):
        return replace(verdict, exit_code=WARNING, action=outcome.status, message=outcome.message)
    if outcome.status == "interrupted":  # stopped, or handed over to another watcher
        msg = f"{name} DOWN on {verdict.where}: {why}; {outcome.message}"
        return replace(verdict, action="interrupted", message=msg)
    msg = f"{name} DOWN on {verdict.where}: {why}; failover failed: {outcome.message}"
    return replace(verdict, action="failover_failed", message=msg)


def not_deployed(service: str) -> Verdict:
    msg = f"{service} is not deployed (run `failover deploy {service}`)"
    return Verdict(service, "unknown", CRITICAL, "none", msg)


class EngineObserver:
    """The :class:`Observer` of a real round: the provider, the canary, the state.

    The provider's word on the host was asked before the ladder runs (concurrently for
    every live service of the round, see :func:`provider_word`)."""

    def __init__(
        self,
        engine: Engine,
        service: str,
        row: ServiceRow,
        healthy_elsewhere: bool,
        word: ProviderWord,
    ) -> None:
        self.engine, self.service, self.row = engine, service, row
        self.svc = engine.config.services[service]
        self.healthy_elsewhere = healthy_elsewhere
        self.word = word
        self.proof = False

    def provider_says(self) -> tuple[str, str]:
        if self.word.blocked is not None and self.row.active:
            self.engine.mark_blocked(self.row.active["provider"], self.word.blocked)
        return self.word.word, self.word.detail

    def watcher_sees(self, provider_word: str) -> tuple[bool, str]:
        svc = self.svc
        if svc.health.canary:
            return asyncio.run(reach(svc.health.canary, svc.health.timeout))
        if self.healthy_elsewhere:
            return True, "another service answers"
        if provider_word == "alive":
            return True, "the provider's API answers"
        if self.engine.config.dns_settings().type != "local":
            # The DNS backend is a canary of its own: usually elsewhere, always needed.
            try:
                self.engine.dns().get_record(svc.domain, svc.record_type)
            except ProviderError as exc:
                return False, f"neither the provider's API nor the DNS backend answers ({exc})"
            return True, "the DNS backend answers"
        return False, "neither the provider's API nor a canary answers"

    def record(self, ok: bool, latency: float | None, *, down_now: bool = False) -> ServiceRow:
        health = self.svc.health
        return self.engine.store.record_round(
            self.service,
            self.row.generation,
            ok,
            latency,
            health.fall,
            health.rise,
            down_now=down_now,
        )

    def moves_last_hour(self) -> int:
        return self.engine.store.moves_since(self.service, time.time() - 3600)

    def quorum_sees_down(self, proof: bool) -> tuple[bool, str]:
        self.proof = proof
        return self.engine.watchers.quorum(self.service, self.row, proof)

    def may_act(self) -> tuple[bool, str]:
        # The provider's word needs no votes: the decision does not wait for them to
        # hold still (issue 21: with etcd the leader waited a round).
        return self.engine.watchers.decide(self.service, self.row, proof=self.proof)


@dataclass(frozen=True)
class ProviderWord:
    word: str  # gone | blocked | alive | silent | untrusted
    detail: str
    blocked: AccountBlocked | None = None


def provider_word(provider: ComputeProvider, name: str, host_id: str) -> ProviderWord:
    """The provider's word on one host. Safe to call from a worker thread: it only asks
    the provider; recording what it said is left to the caller."""
    try:
        host = provider.get_host(host_id)
    except AccountBlocked as exc:
        return ProviderWord("blocked", str(exc), exc)
    except NotFound:
        host = None
    except ProviderError as exc:
        return ProviderWord(unanswered(exc), str(exc))
    return host_word(name, host)


def unanswered(exc: ProviderError) -> str:
    """``untrusted``: the machine answered with a host key the pin refuses (ssh), so
    nothing can be sent to it; else ``silent``: the API did not answer."""
    return "untrusted" if exc.kind == "host_key" else "silent"


def host_word(name: str, host: Host | None) -> ProviderWord:
    """What provider ``name`` answering ``host`` about a live host means."""
    if host is None:
        return ProviderWord("gone", f"{name} says the host no longer exists")
    if host.state.gone:
        reason = f": {host.reason}" if host.reason else ""
        return ProviderWord("gone", f"{name} reports the host {host.state.value}{reason}")
    return ProviderWord("alive", f"{name} reports the host {host.state.value}")
