"""One round over many services: bounded, batched, and failovers side by side (issue 16).

- The probes of a round run at most ``watcher.probes_in_flight`` at once, within a budget
  of the shortest ``interval`` of the round; a service whose probes could not all run
  is "cannot tell" (UNKNOWN), never a failure toward ``fall``.
- The providers are asked about the live hosts once per provider where they can batch
  (:meth:`~providers.base.ComputeProvider.get_hosts`), the others one call per host, at
  most ``watcher.lookups`` calls at once.
- The counters of the whole round are written in one transaction
  (:meth:`~failover.state.SqliteStore.record_rounds`): each service's ladder decides on
  the counters computed in memory, the same rule the store then applies.
- The failovers the round calls for run ``watcher.parallel_moves`` at a time, each under
  its own lease and in a worker with its own engine (its own SQLite connection: a
  connection belongs to the thread that opened it). A provider one move finds blocked
  or out of capacity is put on the round's :class:`RoundBlocklist`, which every worker
  reads before choosing, so the others do not each spend a ``ready_timeout`` there.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import TypeVar

from failover.engine.health import UNKNOWN
from failover.engine.health import EngineObserver
from failover.engine.health import Judge
from failover.engine.health import ProviderWord
from failover.engine.health import Verdict
from failover.engine.health import host_word
from failover.engine.health import provider_word
from failover.engine.health import unanswered
from failover.engine.journal import CANDIDATE_STEPS
from failover.engine.journal import Event
from failover.probes import ProbeResult
from failover.probes import Target
from failover.probes import probe_round
from failover.state import RoundRecord
from failover.state import ServiceRow
from failover.state import row_after
from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import ComputeProvider
from providers.base import ProviderError

if TYPE_CHECKING:
    from failover.engine import Engine

J = TypeVar("J")
K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class RoundBlocklist:
    """Providers found unusable during this round's moves, with the reason: shared by
    the workers of one round, forgotten with it (the account is asked afresh next time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._why: dict[str, str] = {}
        self._asked: dict[tuple[str, str | None], AccountReport] = {}
        self._asking: dict[tuple[str, str | None], threading.Lock] = {}

    def add(self, provider: str, why: str) -> None:
        with self._lock:
            self._why.setdefault(provider, why)

    def get(self, provider: str) -> str | None:
        with self._lock:
            return self._why.get(provider)

    def once(self, key: tuple[str, str | None], ask: Callable[[], AccountReport]) -> AccountReport:
        """``ask()`` the first time ``key`` (a provider, and a service or None) comes up
        this round, its answer after that: what a round needs about a provider is asked
        once, not once per move (issue 28); moves that come up meanwhile wait for it."""
        with self._lock:
            asking = self._asking.setdefault(key, threading.Lock())
        with asking:
            known = self._asked.get(key)
            if known is None:
                known = self._asked[key] = ask()
        return known


# ----------------------------------------------------------------------- probes


def probe(engine: Engine, targets: dict[K, Target]) -> dict[K, list[ProbeResult]]:
    """The probes of one round, bounded and within the shortest interval."""
    if not targets:
        return {}
    names = list(targets)
    budget = min(t.health.interval for t in targets.values())
    bound = engine.config.watcher.probes_in_flight
    done = asyncio.run(probe_round([targets[n] for n in names], in_flight=bound, budget=budget))
    return dict(zip(names, done, strict=True))


def probe_with(
    engine: Engine, targets: dict[str, Target], spares: dict[str, Target]
) -> tuple[dict[str, list[ProbeResult]], dict[str, list[ProbeResult]]]:
    """The live hosts' probes and the warm standbys' (by service), in one round."""
    keyed = {("live", n): t for n, t in targets.items()}
    keyed.update({("standby", n): t for n, t in spares.items()})
    both = probe(engine, keyed)
    return (
        {n: both["live", n] for n in targets},
        {n: both["standby", n] for n in spares},
    )


def not_run(name: str, row: ServiceRow, probes: list[ProbeResult], port: int) -> Verdict:
    active = row.active or {}
    where = f"{active.get('provider')} ({active.get('address')}:{port})"
    missing = next((p.error for p in probes if not p.ran), "") or "a probe was not sent"
    # Two ways a probe is not sent: the round's budget ran out, or FAILOVER_PROBE_NETWORKS
    # refused the address. Either way this watcher cannot tell, and must not say "down".
    advice = (
        "Raise watcher.probes_in_flight, or lengthen health.interval"
        if "budget" in missing
        else "Check FAILOVER_PROBE_NETWORKS on this watcher"
    )
    msg = f"{name}: cannot tell: {missing}; nothing counted, nothing moved. {advice}"
    return Verdict(name, "unknown", UNKNOWN, "none", msg, probes, None, where)


# ----------------------------------------------------------------------- providers


def provider_words(engine: Engine, rows: dict[str, ServiceRow]) -> dict[str, ProviderWord]:
    """Each live host's provider asked about it: one batched call per provider that can,
    one call per host for the others, at most ``watcher.lookups`` at once."""
    by_provider: dict[str, dict[str, str]] = {}
    for name, row in rows.items():
        if row.active:
            by_provider.setdefault(row.active["provider"], {})[name] = row.active["host_id"]
    if not by_provider:
        return {}
    providers = {p: engine.provider(p) for p in by_provider}
    calls: list[Callable[[], dict[str, ProviderWord]]] = []
    for pname, hosts in by_provider.items():
        provider = providers[pname]
        if provider.batches_lookups and len(hosts) > 1:
            calls.append(_batch(provider, pname, hosts))
        else:
            for service, host_id in hosts.items():
                calls.append(_single(provider, pname, service, host_id))
    width = min(engine.config.watcher.lookups, len(calls))
    words: dict[str, ProviderWord] = {}
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="failover-ask") as pool:
        for future in [pool.submit(call) for call in calls]:
            words.update(future.result())
    return words


def _single(
    provider: ComputeProvider, pname: str, service: str, host_id: str
) -> Callable[[], dict[str, ProviderWord]]:
    return lambda: {service: provider_word(provider, pname, host_id)}


def _batch(
    provider: ComputeProvider, pname: str, hosts: dict[str, str]
) -> Callable[[], dict[str, ProviderWord]]:
    def ask() -> dict[str, ProviderWord]:
        try:
            found = provider.get_hosts(sorted(set(hosts.values())))
        except AccountBlocked as exc:
            return {s: ProviderWord("blocked", str(exc), exc) for s in hosts}
        except ProviderError as exc:
            return {s: ProviderWord(unanswered(exc), str(exc)) for s in hosts}
        # An id left out is one the provider could not answer for (one machine of
        # several did not): cannot tell, never "gone".
        silent = ProviderWord("silent", f"{pname} did not answer about the host")
        return {s: host_word(pname, found[h]) if h in found else silent for s, h in hosts.items()}

    return ask


# ----------------------------------------------------------------------- verdicts


class _BatchObserver(EngineObserver):
    """Records into the round's batch instead of one transaction per service."""

    def __init__(
        self,
        batch: list[RoundRecord],
        engine: Engine,
        service: str,
        row: ServiceRow,
        healthy_elsewhere: bool,
        word: ProviderWord,
    ) -> None:
        super().__init__(engine, service, row, healthy_elsewhere, word)
        self.batch = batch

    def record(self, ok: bool, latency: float | None, *, down_now: bool = False) -> ServiceRow:
        health = self.svc.health
        rec = RoundRecord(
            self.service, self.row.generation, ok, latency, health.fall, health.rise, down_now
        )
        self.batch.append(rec)
        self.row = row_after(self.row, rec)
        return self.row


def verdicts(
    engine: Engine,
    live: dict[str, ServiceRow],
    probes: dict[str, list[ProbeResult]],
    dry_run: bool,
    words: dict[str, ProviderWord],
) -> dict[str, Verdict]:
    """Every live service's verdict for the round, the counters written once, and the
    failovers the verdicts call for run side by side."""
    healthy_elsewhere = any(all(p.ok for p in res) for res in probes.values())
    batch: list[RoundRecord] = []
    out: dict[str, Verdict] = {}
    for name, row in live.items():
        svc = engine.config.services[name]
        if any(not p.ran for p in probes[name]):
            out[name] = not_run(name, row, probes[name], svc.port)
            if not dry_run:
                health = svc.health
                batch.append(
                    RoundRecord(name, row.generation, None, None, health.fall, health.rise)
                )
            continue
        word = words.get(name, ProviderWord("silent", ""))
        observer = _BatchObserver(batch, engine, name, row, healthy_elsewhere, word)
        out[name] = Judge(name, svc, row, probes[name], observer, dry_run=dry_run).verdict()
    if batch:
        engine.store.record_rounds(batch)
    due = [n for n, v in out.items() if v.action == "failover"]
    for name in due:
        held = engine.watchers.held(name)
        if held:
            out[name] = replace(out[name], action="held", message=f"{out[name].message}; {held}")
    due = [n for n in due if out[n].action == "failover"]
    if due:
        out.update(fail_over_all(engine, {n: (live[n], out[n]) for n in due}))
        for name in due:
            remember_failure(engine, name, out[name])
    return out


def remember_failure(engine: Engine, name: str, verdict: Verdict) -> None:
    """Tell the watchers how the failover of ``name`` ended (see ``watchers.held``)."""
    if verdict.action == "failover":
        engine.watchers.failed(name, None)
    if verdict.action != "failover_failed":
        return
    raw = engine.store.events(name, limit=1, kinds=("failover",))
    if not raw:
        return
    # Only candidates that failed count: a broken DNS backend or a lost lock is not the
    # candidate's doing and is retried as before.
    attempts = Event.from_dict(raw[0]).data.attempts
    signature = sorted({f"{a.provider}: {a.step}" for a in attempts if a.step in CANDIDATE_STEPS})
    engine.watchers.failed(name, signature or None)


def fail_over_all(engine: Engine, due: dict[str, tuple[ServiceRow, Verdict]]) -> dict[str, Verdict]:
    """Run the failovers of ``due``, at most ``watcher.parallel_moves`` at once."""
    return side_by_side(engine, due, lambda worker, name, job: worker.fail_over(name, *job))


def side_by_side(
    engine: Engine, jobs: dict[str, J], work: Callable[[Engine, str, J], R]
) -> dict[str, R]:
    """``work(engine, service, job)`` for every job, at most ``watcher.parallel_moves`` at
    once, each worker thread with an engine of its own (:meth:`Engine.sibling`); one job
    runs on ``engine`` itself."""
    if len(jobs) == 1:
        ((name, job),) = jobs.items()
        return {name: work(engine, name, job)}
    pending: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in jobs:
        pending.put(name)
    results: dict[str, R] = {}
    errors: list[BaseException] = []
    stop = threading.Event()
    said = threading.Lock()

    def worker() -> None:
        sibling = engine.sibling(lambda: stop.is_set() or engine.should_stop())
        try:
            while not errors:
                try:
                    name = pending.get_nowait()
                except queue.Empty:
                    return
                sibling.on_step = _named(engine.on_step, name, said)
                results[name] = work(sibling, name, jobs[name])
        except BaseException as exc:  # handed to the round's thread, which raises it
            errors.append(exc)
        finally:
            sibling.close()

    width = min(engine.config.watcher.parallel_moves, len(jobs))
    threads = [
        threading.Thread(target=worker, name=f"failover-move-{i}", daemon=True)
        for i in range(width)
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        # Ctrl-C reaches this thread only: the workers stop before their next step and
        # leave their runs journaled for the next `check` to finish.
        stop.set()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]
    return results


def _named(
    on_step: Callable[[str, str, str], None], service: str, lock: threading.Lock
) -> Callable[[str, str, str], None]:
    """Progress of runs side by side: each line says whose, one line at a time."""

    def said(step: str, status: str, detail: str) -> None:
        with lock:
            on_step(step, status, f"{service}: {detail}" if detail else service)

    return said
