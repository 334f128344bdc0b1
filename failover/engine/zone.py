"""The cutovers of a round's parallel moves, gathered into as few DNS requests as the
zone allows (issue 16).

When a provider cuts off many services at once, their moves reach the cutover within
moments of each other. Sent one by one, fifty conditional writes to one zone meet the
authorities' own limits: Route 53 answers ``PriorRequestNotComplete`` and throttles at
five requests a second, Cloud DNS applies a zone's changes one after another. A backend
that can carry several changes in one request (:attr:`DnsProvider.batches_changes`)
gets them through a :class:`ZoneWriter`: a group commit. A lone cutover is sent at once,
with nothing added to its wait; the cutovers that arrive while a request is in flight
go together in the next one, so one request per zone is in flight at a time. Each
change keeps its own condition: a change whose record someone else moved fails alone
(see :meth:`DnsProvider.replace_records`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from dataclasses import field

from providers.base import DnsProvider
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange


@dataclass
class _Slot:
    """One cutover waiting for its change to be sent, by itself or by another."""

    change: RecordChange
    turn: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    result: Record | BaseException | None = None
    together: int = 1

    def settle(self, result: Record | BaseException, together: int) -> None:
        self.result, self.together, self.done = result, together, True
        self.turn.set()

    def outcome(self) -> tuple[Record, int]:
        if isinstance(self.result, BaseException):
            raise self.result
        assert self.result is not None
        return self.result, self.together


class ZoneWriter:
    """Changes to one zone from many threads, sent in batches by whichever thread's
    turn it is; shared by the engines of one round's moves (:meth:`Engine.sibling`)."""

    def __init__(self, dns: DnsProvider) -> None:
        self.dns = dns
        self._lock = threading.Lock()
        self._queue: list[_Slot] = []
        self._busy = False
        #: Requests sent, and the changes they carried: what a test or bench counts.
        self.requests = 0
        self.changes = 0

    @property
    def queued(self) -> int:
        """Changes waiting for the request in flight to finish."""
        with self._lock:
            return len(self._queue)

    def write(self, change: RecordChange) -> tuple[Record, int]:
        """Send ``change`` (alone or with others) and return the record as the authority
        now answers it, and how many changes went in the same request. Raises what
        :meth:`DnsProvider.set_record` raises for this change alone."""
        slot = _Slot(change)
        with self._lock:
            self._queue.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.turn.wait()  # set when the change is done, or when it is our turn to send
        if not slot.done:
            self._send()
        return slot.outcome()

    def _send(self) -> None:
        # The caller's slot is first in the queue: it was alone when it arrived, or it was
        # handed the turn as the oldest waiter.
        with self._lock:
            batch = self._queue[: self.dns.max_batch]
            del self._queue[: len(batch)]
            self.requests += 1
            self.changes += len(batch)
        try:
            results: list[Record | BaseException] = list(
                self._apply([slot.change for slot in batch])
            )
        except Exception as exc:  # a fault in the backend: each change of the request has it
            results = [exc] * len(batch)
        except BaseException as exc:  # the thread is being stopped: wake the others first
            results = [exc] * len(batch)
            raise
        finally:
            for slot, result in zip(batch, results, strict=True):
                slot.settle(result, len(batch))
            with self._lock:
                if self._queue:
                    self._queue[0].turn.set()
                else:
                    self._busy = False

    def _apply(self, changes: list[RecordChange]) -> list[Record | ProviderError]:
        if len(changes) == 1:
            # A change alone keeps the backend's single-change path and its error types.
            try:
                return [self.dns.replace_record(changes[0])]
            except ProviderError as exc:
                return [exc]
        results = self.dns.replace_records(changes)
        if len(results) != len(changes):  # a plugin's mistake must not lose a cutover's answer
            raise ProviderError(
                f"{self.dns.name} answered {len(results)} results for {len(changes)} changes",
                provider=self.dns.name,
            )
        return results
