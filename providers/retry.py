"""Bounded retries of ``TransientError`` for cloud providers (tenacity).

Exponential backoff with jitter, bounded both in attempts and in total time, and a
``Retry-After`` from the platform is honoured (capped by what time is left).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import RetryCallState
from tenacity import Retrying
from tenacity import retry_if_exception_type
from tenacity import stop_after_attempt
from tenacity import stop_after_delay
from tenacity import wait_exponential
from tenacity import wait_random

from providers.base import TransientError

T = TypeVar("T")


def _wait(
    base: Callable[[RetryCallState], float], cap: float, max_time: float
) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        delay = base(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        # Never sleep past the total time allowed: a Retry-After of an hour must not
        # hold a failover that has a minute.
        left = max_time - (state.seconds_since_start or 0.0)
        return max(0.0, min(delay, cap, left))

    return wait


def call_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    max_time: float = 60.0,
    initial: float = 0.2,
    max_wait: float = 10.0,
) -> T:
    """Run ``fn``; retry it on ``TransientError`` only. The last error is re-raised as is,
    so the step fails with the provider's own message."""
    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_time),
        wait=_wait(
            wait_exponential(multiplier=initial, max=max_wait) + wait_random(0, initial),
            max_wait,
            max_time,
        ),
        reraise=True,
    )
    return retrying(fn)


def retry_after_seconds(value: object) -> float | None:
    """A ``Retry-After`` header value -> seconds to wait, or None when it is absent or
    not one. Both forms of RFC 9110 are read: delay seconds (``120``, also ``1.5``, which
    some APIs send) and an HTTP date; a date in the past, or a negative delay, is 0."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds or seconds == float("inf"):
        return None
    return max(0.0, seconds)
