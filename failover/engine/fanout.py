"""One change, fanned out to every DNS provider of its zone (contract section 12).

octoDNS's shape: providers behind one base class, one change applied to each. What is
ours: every write keeps its condition on that provider's current value, each provider
keeps its own batches (a :class:`ZoneWriter` per batching backend, shared by a round's
moves), and each provider's outcome is reported, never averaged away: ``updated``,
``in_sync`` (it held the values already), ``blocked`` (it refuses us) or ``lagging``
(anything else, with the error). A file with one DNS provider is the first case of
this, not a branch beside it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from failover.engine.zone import ZoneWriter
from providers.base import AccountBlocked
from providers.base import ConflictError
from providers.base import DnsProvider
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange
from providers.base import dns_class
from providers.base import txt_strings

if TYPE_CHECKING:
    from failover.engine import Engine

UPDATED, IN_SYNC, BLOCKED, LAGGING = "updated", "in_sync", "blocked", "lagging"


def block_key(provider: str) -> str:
    """The name a DNS provider goes by in the round blocklist and the provider states."""
    return f"dns:{provider}"


@dataclass
class Write:
    """One domain's change on one provider, and how it went."""

    domain: str
    provider: str
    state: str  # updated | in_sync | blocked | lagging
    error: str = ""
    values: list[str] | None = None  # what the provider holds now, when known
    conflict: bool = False  # the condition failed: somebody else changed the record
    refused: bool = False  # this write found the provider refusing us

    @property
    def holds_new(self) -> bool:
        return self.state in (UPDATED, IN_SYNC)

    def label(self, *, why: bool = False) -> str:
        """``lagging: <error>`` (and, with ``why``, ``blocked: <error>``), else the state."""
        shown = self.state == LAGGING or (why and self.state == BLOCKED)
        return f"{self.state}: {self.error}" if shown and self.error else self.state


class DnsFanout:
    """Every DNS provider of the file, by name: one backend and one writer each, made
    once per engine (the writers and the thread-safe backends once per round)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.zones = engine.config.zones()
        self._backends: dict[str, DnsProvider] = {}
        self._writers: dict[str, ZoneWriter] = {}
        self._making = threading.Lock()
        self._repairs: dict[str, int] = {}  # drift repairs per provider, for the metrics

    @property
    def names(self) -> list[str]:
        return list(self.zones.settings)

    def _parent(self) -> DnsFanout | None:
        parent = self.engine._parent
        return parent.fanout() if parent is not None else None

    def backend(self, name: str) -> DnsProvider:
        made = self._backends.get(name)
        if made is not None:
            return made
        settings = self.zones.settings[name]
        cls = dns_class(settings.type)
        parent = self._parent()
        if parent is not None and cls.shared_across_threads:
            return parent.backend(name)
        with self._making:
            if name not in self._backends:
                self._backends[name] = cls(settings, self.engine.context)
        return self._backends[name]

    def writer(self, name: str) -> ZoneWriter:
        """The round's writer of ``name``'s zone, shared by the siblings: it gathers
        their cutovers into batches when the backend sends several in one request."""
        parent = self._parent()
        if parent is not None:
            return parent.writer(name)
        if name not in self._writers:
            dns = self.backend(name)
            with self._making:
                self._writers.setdefault(name, ZoneWriter(dns))
        return self._writers[name]

    def write(self, name: str, change: RecordChange) -> tuple[Record, int]:
        """``change`` on provider ``name`` (:meth:`DnsProvider.set_record`'s contract),
        with how many changes went in the same request."""
        dns = self.backend(name)
        if not dns.batches_changes:
            rtype, values, ttl, expect = change.rtype, change.values, change.ttl, change.expect
            return dns.set_record(change.name, rtype, values, ttl, expect=expect), 1
        return self.writer(name).write(change)

    def blocked_now(self, name: str) -> str | None:
        """Why ``name`` is skipped by this round's moves (another move found it blocked)."""
        return self.engine.blocklist.get(block_key(name))

    def mark(self, name: str, state: str, reason: str = "") -> None:
        """Record a DNS provider's state; a blocked one is skipped for the round."""
        if state == BLOCKED:
            self.engine.blocklist.add(block_key(name), reason)
        self.engine.store.set_provider_state(block_key(name), state, reason or None)

    def apply(self, changes: Sequence[RecordChange]) -> tuple[list[Write], int]:
        """Each change on every provider of its domain's zone (with that provider's
        TTL), the providers side by side, and the most changes one request carried."""
        plan: dict[str, list[RecordChange]] = {}
        for change in changes:
            for name in self.zones.providers_of(change.name):
                ttl = self.zones.settings[name].ttl
                plan.setdefault(name, []).append(change._replace(ttl=ttl))
        return self.apply_plan(plan)

    def apply_plan(self, plan: dict[str, list[RecordChange]]) -> tuple[list[Write], int]:
        """The changes of each provider, the providers side by side."""
        if len(plan) <= 1:
            done = [self._on(name, todo) for name, todo in plan.items()]
        else:
            with ThreadPoolExecutor(len(plan), thread_name_prefix="failover-fanout") as pool:
                done = list(pool.map(lambda item: self._on(*item), plan.items()))
        writes = [w for ws, _ in done for w in ws]
        for w in writes:
            if w.refused:
                self.mark(w.provider, BLOCKED, w.error)
        return writes, max((together for _, together in done), default=1)

    def _on(self, name: str, changes: list[RecordChange]) -> tuple[list[Write], int]:
        out: list[Write] = []
        together = 1
        for change in changes:
            why = self.blocked_now(name)
            if why is not None:
                out.append(Write(change.name, name, BLOCKED, why))
                continue
            write, n = self._one(name, change)
            together = max(together, n)
            out.append(write)
        return out, together

    def set_txt(self, domain: str, values: list[str], expect: list[str] | None) -> list[Write]:
        """A TXT set of plain strings (an ACME DNS-01 challenge) on every provider of
        ``domain``'s zone, conditional on ``expect`` ([]: absent); ``[]`` removes it."""
        writes, _ = self.apply([RecordChange(domain, "TXT", values, 0, expect)])
        return writes

    def _one(self, name: str, change: RecordChange) -> tuple[Write, int]:
        wanted = _plain(change.rtype, change.values)
        try:
            record, together = self.write(name, change)
        except AccountBlocked as exc:
            # The round's other moves skip it from now on; the state is written by the
            # caller's thread (a store connection belongs to its thread).
            self.engine.blocklist.add(block_key(name), exc.message)
            return Write(change.name, name, BLOCKED, exc.message, refused=True), 1
        except ConflictError as exc:
            current = self.read(name, change.name, change.rtype)
            if isinstance(current, list) and _plain(change.rtype, current) == wanted:
                return Write(change.name, name, IN_SYNC, values=current), 1
            held = current if isinstance(current, list) else None
            return Write(change.name, name, LAGGING, str(exc), held, conflict=True), 1
        except ProviderError as exc:
            return Write(change.name, name, LAGGING, str(exc)), 1
        if _plain(change.rtype, record.values) != wanted:
            why = f"answers {record.values} after the update, not {wanted}"
            return Write(change.name, name, LAGGING, why, record.values), together
        return Write(change.name, name, UPDATED, values=record.values), together

    def read(self, name: str, domain: str, rtype: str) -> list[str] | ProviderError:
        """What provider ``name`` holds for ``domain`` now ([] when absent), or why not."""
        try:
            record = self.backend(name).get_record(domain, rtype)
        except ProviderError as exc:
            return exc
        return list(record.values) if record else []

    def count_repair(self, name: str) -> None:
        with self._making:
            self._repairs[name] = self._repairs.get(name, 0) + 1

    def take_repairs(self) -> dict[str, int]:
        """The repairs counted since the last call (``watch`` adds them to its metrics)."""
        with self._making:
            out, self._repairs = self._repairs, {}
        return out

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()


def _plain(rtype: str, values: Sequence[str]) -> list[str]:
    """Values as compared: TXT strings without the quotes of RFC 1035's text form."""
    return txt_strings(values) if rtype.upper() == "TXT" else sorted(values)
