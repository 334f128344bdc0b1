"""How far a backup or a restore has got: bytes done, of how many, at what rate.

One hook for both directions: :class:`Meter` counts the plain bytes that pass through a
:class:`~failover.data.backup.BackupWriter` (the backup command's output) or out of a
:class:`~failover.data.backup.BackupReader` (into the restore command), and hands a
:class:`Transfer` to the engine's ``on_transfer`` at most once every ``every`` seconds,
plus the first and the last. Counting costs an addition and a clock read per block; the
callback is the engine's (the terminal's progress bar, the status page), and whatever
it raises is swallowed: a report never fails or holds up the copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import Literal

Kind = Literal["backup", "restore"]
EVERY = 0.5  # seconds between two reports of one transfer
# A rate over less time than this says more about buffers than about the link: none.
RATE_AFTER = 1.0


@dataclass(frozen=True)
class Transfer:
    """One report. ``total``: the bytes expected (a restore: the backup's length; a
    backup: the last backup's, an estimate, or None before the first)."""

    service: str
    kind: Kind
    done: int
    total: int | None
    elapsed: float
    finished: bool = False
    estimated: bool = False

    @property
    def rate(self) -> float | None:
        """Bytes per second since the start; None in the first ``RATE_AFTER`` seconds."""
        return self.done / self.elapsed if self.elapsed >= RATE_AFTER else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bytes": self.done,
            "total_bytes": self.total,
            "total_estimated": self.estimated,
            "bytes_per_s": None if self.rate is None else round(self.rate),
            "elapsed_s": round(self.elapsed, 1),
            "finished": self.finished,
        }

    def text(self) -> str:
        return describe(self.done, self.total, self.estimated, self.rate)


def describe(done: int, total: int | None, estimated: bool, rate: float | None) -> str:
    """``1.2 GB of 4.0 GB (30%), 85.0 MB/s``, for people (the terminal, the page)."""
    out = size(done)
    if total and estimated:
        out += f" of about {size(total)}"
    elif total:
        out += f" of {size(total)} ({min(100, 100 * done // total)}%)"
    return out if rate is None else f"{out}, {size(round(rate))}/s"


def size(n: int) -> str:
    """Decimal units, as MB/s reads: ``812 B``, ``4.2 kB``, ``1.2 GB``."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


OnTransfer = Callable[[Transfer], None]


class Meter:
    """Counts bytes and reports them, throttled (see the module's docstring). Used as a
    context manager: leaving it reports the last figures, finished."""

    def __init__(
        self,
        service: str,
        kind: Kind,
        on_transfer: OnTransfer | None,
        *,
        total: int | None = None,
        estimated: bool = False,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service, self.kind, self.total, self.estimated = service, kind, total, estimated
        self.done = 0
        self.reports = 0
        self._on = on_transfer
        self._every, self._clock = every, clock
        self._start = clock()
        self._next = self._start  # the first block is reported at once

    def add(self, n: int) -> None:
        self.done += n
        if self._on is None:
            return
        now = self._clock()
        if now >= self._next:
            self._next = now + self._every
            self._report(now, finished=False)

    def _report(self, now: float, *, finished: bool) -> None:
        assert self._on is not None
        self.reports += 1
        report = Transfer(
            self.service,
            self.kind,
            self.done,
            self.total,
            now - self._start,
            finished,
            self.estimated,
        )
        try:
            self._on(report)
        except Exception:  # a progress display must never fail a backup or a restore
            self._on = None

    def close(self) -> None:
        if self._on is not None:
            self._report(self._clock(), finished=True)
            self._on = None

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def meter(engine: object, service: str, kind: Kind, **kw: Any) -> Meter:
    """A meter reporting to ``engine.on_transfer`` (engines without one: nowhere)."""
    return Meter(service, kind, getattr(engine, "on_transfer", None), **kw)
