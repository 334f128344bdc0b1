"""What the DNS backends that send several changes in one request share (issue 16).

Route 53 (one change batch) and Cloud DNS (one change) apply every change of a request
atomically, all or nothing. :class:`BatchingDns` keeps each change's own condition on
top of that: the record sets are read first, a change already in place is a no-op and
a change whose ``expect`` no longer holds gets its ``ConflictError`` without being sent,
and the rest go in one request. When the authority refuses that request over a
condition (somebody moved a record between the read and the write, or an earlier
answer was lost and the change is already there), the changes are sent again one by one
so that only the change concerned fails. An error that stops the whole request
(credentials refused, endpoint down after the retries) is every change's result.

A single :meth:`~DnsProvider.set_record` is a batch of one, so both paths share the
read, the conditions and the write.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import TypeVar

from providers.base import ConflictError
from providers.base import DnsProvider
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange

T = TypeVar("T")

#: A record set as the backend's API returns it (kept to delete exactly that set).
Raw = dict[str, Any]
Verdict = Record | ProviderError | None  # None: still to be written


def _each(exc: ProviderError, n: int) -> list[Record | ProviderError]:
    """``exc`` as the result of ``n`` changes, one copy each: the engine raises each in
    the thread of its own move."""
    return [exc, *(copy.copy(exc) for _ in range(n - 1))]


class BatchingDns(DnsProvider):
    """A backend whose authority takes several changes of one zone in one request."""

    batches_changes: ClassVar[bool] = True
    #: The code of the ``ConflictError`` a failed ``expect`` raises.
    conflict_code: ClassVar[str] = "PreconditionFailed"

    # ------------------------------------------------------------ what a backend gives

    @abstractmethod
    def _read_sets(self, changes: Sequence[RecordChange]) -> list[Raw | None]:
        """The current set of each change's name/type (None: absent), in as few requests
        as the API allows. Raises the taxonomy's errors."""

    @abstractmethod
    def _as_record(self, change: RecordChange, raw: Raw | None) -> Record:
        """``raw`` as a :class:`Record` named as the backend names it; None: empty."""

    @abstractmethod
    def _send(self, pending: Sequence[tuple[RecordChange, Raw | None]]) -> None:
        """One request carrying every change (with the set it replaces), waited for until
        the authority applied it. Raises the taxonomy's errors."""

    @abstractmethod
    def _refused(self, exc: ProviderError) -> bool:
        """True when ``exc`` is the authority refusing the request over its content (a
        deletion that no longer matches, a set that already exists), not the request as
        such: the changes are then worth sending one by one."""

    def _normal(self, rtype: str, values: Sequence[str]) -> list[str]:
        return sorted(v.strip() for v in values)

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Runs one read-and-write attempt; a backend may retry it as a whole."""
        return attempt()

    # ------------------------------------------------------------ the interface

    def replace_record(self, change: RecordChange) -> Record:
        result = self._apply([change])[0]
        if isinstance(result, ProviderError):
            raise result
        return result

    def replace_records(self, changes: Sequence[RecordChange]) -> list[Record | ProviderError]:
        out: list[Record | ProviderError] = []
        chunk: list[RecordChange] = []
        keys: set[tuple[str, str]] = set()
        for change in changes:
            key = (self._as_record(change, None).name.lower(), change.rtype.upper())
            # A set changed twice goes in the next request, which reads what the first did.
            if len(chunk) >= self.max_batch or key in keys:
                out.extend(self._apply(chunk))
                chunk, keys = [], set()
            chunk.append(change)
            keys.add(key)
        if chunk:
            out.extend(self._apply(chunk))
        return out

    # ------------------------------------------------------------ the steps

    def _apply(self, changes: Sequence[RecordChange]) -> list[Record | ProviderError]:
        try:
            verdicts, refusal = self._retrying(lambda: self._attempt(changes))
        except ProviderError as exc:
            return _each(exc, len(changes))
        todo = [i for i, v in enumerate(verdicts) if v is None]
        sent = [changes[i] for i in todo]
        if refusal is not None:
            redone = self._after_refusal(sent, refusal)
        else:
            redone = self._read_back(sent)
        out: list[Record | ProviderError] = []
        answers = iter(redone)
        for verdict in verdicts:
            out.append(next(answers) if verdict is None else verdict)
        return out

    def _attempt(
        self, changes: Sequence[RecordChange]
    ) -> tuple[list[Verdict], ProviderError | None]:
        # Each attempt reads anew: after a lost answer, a retry sees what already landed.
        raws = self._read_sets(changes)
        verdicts = [self._plan(c, raw) for c, raw in zip(changes, raws, strict=True)]
        pending = [(c, raw) for c, raw, v in zip(changes, raws, verdicts, strict=True) if v is None]
        if pending:
            try:
                self._send(pending)
            except ProviderError as exc:
                if not self._refused(exc):
                    raise
                return verdicts, exc
        return verdicts, None

    def _plan(self, change: RecordChange, raw: Raw | None) -> Verdict:
        """The change's result without a write (done already, or its condition fails),
        or None when it must be sent."""
        current = None if raw is None else self._as_record(change, raw)
        wanted = self._normal(change.rtype, change.values)
        have = self._normal(change.rtype, current.values) if current is not None else []
        if current is None and not wanted:
            return self._as_record(change, None)
        if current is not None and have == wanted and current.ttl == change.ttl:
            return current  # a resumed or repeated cutover
        if change.expect is None:
            return None
        expected = self._normal(change.rtype, change.expect)
        if have in (expected, wanted):
            return None
        return ConflictError(
            f"{self._as_record(change, None).name} {change.rtype} is {have or 'absent'}, "
            f"expected {expected or 'absent'}; not changed",
            provider=self.name,
            code=self.conflict_code,
            hint="another watcher or a person changed the record since; re-read the state "
            "before retrying",
        )

    def _after_refusal(
        self, sent: Sequence[RecordChange], refusal: ProviderError
    ) -> list[Record | ProviderError]:
        if len(sent) > 1:
            return self.one_by_one(sent)
        # One change: the refusal is a conflict when the set moved, or no error at all
        # when the change is there (an earlier attempt landed); else it stands as is.
        try:
            verdict = self._plan(sent[0], self._read_sets(sent)[0])
        except ProviderError as exc:
            return [exc]
        return [refusal if verdict is None else verdict]

    def _read_back(self, sent: Sequence[RecordChange]) -> list[Record | ProviderError]:
        if not sent:
            return []
        try:
            raws = self._read_sets(sent)
        except ProviderError as exc:
            return _each(exc, len(sent))
        return [self._as_record(c, raw) for c, raw in zip(sent, raws, strict=True)]
