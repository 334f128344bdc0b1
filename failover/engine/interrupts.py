"""What may cut a run short, held where it must not: SIGINT/SIGTERM ignored while a run
is rolled back or finished, deferred while a host is being made (so the host is
journaled before the process stops), and the test failpoints (``FAILOVER_FAILPOINT=
after:<step>``) that kill the process right after a step is journaled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator


def failpoint(step: str) -> None:
    # Read only here, after the step is journaled: free when unset.
    if os.environ.get("FAILOVER_FAILPOINT") == f"after:{step}":
        os._exit(137)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while a run is being rolled back or finished."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGINT/SIGTERM during the block take effect when it ends, as KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    saved = {sig: signal.signal(sig, lambda n, f: caught.append(n)) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if caught:
            raise KeyboardInterrupt
