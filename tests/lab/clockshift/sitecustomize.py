"""The lab's clock step, loaded first by a watcher whose clock the nemesis jumps (this
folder leads its PYTHONPATH): the wall clock (``time.time``, ``time_ns``, ``gmtime``,
``localtime``, ``strftime``) is shifted by the seconds in ``$LAB_CLOCK_FILE``, re-read at
most once a second, and ``time.monotonic`` is left alone, as after an NTP step.

Not libfaketime: its 0.9.10 ``clock_nanosleep`` breaks Python's ``time.sleep`` once the
offset changes (EINVAL with ``FAKETIME_DONT_FAKE_MONOTONIC=1``, a hang without it, since
Python sleeps to an absolute CLOCK_MONOTONIC deadline), and the watcher it was meant to
test then failed every round for reasons of the tool's own.
"""

from __future__ import annotations

import os
import time
from typing import Any

_PATH = os.environ.get("LAB_CLOCK_FILE")
_state = [0.0, -10.0]  # offset, when it was read (monotonic)


def _offset() -> float:
    now = time.monotonic()
    if _PATH and now - _state[1] > 1.0:
        try:
            with open(_PATH) as f:
                _state[0] = float(f.read().strip() or 0)
        except (OSError, ValueError):
            pass
        _state[1] = now
    return _state[0]


if _PATH:
    _time, _time_ns = time.time, time.time_ns
    _gmtime, _localtime, _strftime = time.gmtime, time.localtime, time.strftime

    def _now() -> float:
        return _time() + _offset()

    def _now_ns() -> int:
        return _time_ns() + int(_offset() * 1e9)

    def _gm(secs: float | None = None) -> Any:
        return _gmtime(_now() if secs is None else secs)

    def _local(secs: float | None = None) -> Any:
        return _localtime(_now() if secs is None else secs)

    def _format(fmt: str, t: Any = None) -> str:
        return _strftime(fmt, _local() if t is None else t)

    time.time, time.time_ns = _now, _now_ns
    time.gmtime, time.localtime = _gm, _local  # type: ignore[assignment]
    time.strftime = _format
