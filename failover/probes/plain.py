"""Plain HTTP and TCP probes on one selector (issue 28).

Most probes of a round are plain ``http`` or ``tcp`` to an IP address: a connect, one
request, one response read to its end. Through asyncio streams each such probe built a
transport, a protocol, a reader, a writer, a task for its timeout and a dozen futures,
and cost about 0.26 ms of CPU; a round of 10,000 spent most of its time there. Here the
same probe is a few non-blocking socket calls driven by one ``selectors`` loop, in a
thread of its own beside the event loop that runs the other kinds (https, tls, dns, and
addresses that are names): about a sixth of the CPU, the same results and messages.

Each probe's timeout counts from its own start, at most ``width`` are open at once, and
one not started before ``deadline`` (the round's budget) is reported as not run.
"""

from __future__ import annotations

import errno
import heapq
import os
import selectors
import socket
import threading
import time
from collections.abc import Sequence

from failover.probes import MAX_BODY
from failover.probes import NotSent
from failover.probes import ProbeFailed
from failover.probes import ProbeResult
from failover.probes import Target
from failover.probes import _allowed
from failover.probes import http_request
from failover.probes import http_verdict
from failover.probes import parse_response
from failover.probes import response_complete

Job = tuple[str, Target]  # (kind, target)
CONNECTING, SENDING, READING, CLOSED = range(4)


def family(address: str) -> socket.AddressFamily | None:
    """The family of an IP literal; None for a name (resolved by asyncio, not here)."""
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, address)
        except OSError:
            continue
        return fam
    return None


def handles(kind: str, t: Target) -> bool:
    """Whether this module runs the ``kind`` probe of ``t``."""
    if family(t.address) is None:
        return False
    if kind == "tcp":
        return True
    return kind == "http" and t.health.http is not None and t.health.http.scheme == "http"


class _Probe:
    """One probe in flight: connecting, then (http) sending and reading."""

    __slots__ = ("buf", "index", "kind", "out", "port", "sock", "started", "state", "t")

    def __init__(self, index: int, kind: str, t: Target) -> None:
        self.index, self.kind, self.t = index, kind, t
        tcp = t.health.tcp if kind == "tcp" else None
        self.port = (tcp.port if tcp is not None else None) or t.port
        self.started = time.perf_counter()
        self.sock: socket.socket | None = None
        self.state = CONNECTING
        self.out = b""
        self.buf = bytearray()


class PlainRound:
    """Runs ``jobs`` on one selector; :meth:`run` returns their results in order."""

    def __init__(
        self, jobs: Sequence[Job], width: int, deadline: float | None, stop: threading.Event
    ) -> None:
        self.jobs = jobs
        self.width = max(1, width)
        self.deadline = deadline  # time.monotonic(), as the event loop's clock
        self.stop = stop
        self.results: list[ProbeResult | None] = [None] * len(jobs)
        self.sel = selectors.DefaultSelector()
        self.timers: list[tuple[float, int, _Probe]] = []  # (monotonic deadline, index, probe)
        self.open = 0
        self.next = 0

    def run(self) -> list[ProbeResult]:
        try:
            self._fill()
            while self.open and not self.stop.is_set():
                wait = max(0.0, self.timers[0][0] - time.monotonic()) if self.timers else 0.25
                for key, _ in self.sel.select(min(wait, 0.25)):
                    self._ready(key.data)
                self._expire()
                self._fill()
        finally:
            for key in list(self.sel.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            self.sel.close()
        for i, (kind, _) in enumerate(self.jobs):  # stopped: what did not finish did not run
            if self.results[i] is None:
                self.results[i] = ProbeResult(kind, False, None, "", ran=False)
        return [r for r in self.results if r is not None]

    def _fill(self) -> None:
        while self.open < self.width and self.next < len(self.jobs):
            index, (kind, t) = self.next, self.jobs[self.next]
            self.next += 1
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.results[index] = ProbeResult(kind, False, None, "", ran=False)
                continue
            self._start(_Probe(index, kind, t))

    def _start(self, p: _Probe) -> None:
        try:
            _allowed(p.t.address)
        except NotSent as exc:
            self.results[p.index] = ProbeResult(p.kind, False, None, str(exc), ran=False)
            return
        fam = family(p.t.address)
        assert fam is not None
        try:
            sock = socket.socket(fam, socket.SOCK_STREAM)
        except OSError as exc:
            self._fail(p, f"cannot connect to {p.t.address}:{p.port}: {exc.strerror or exc}")
            return
        sock.setblocking(False)
        p.sock = sock
        self.open += 1
        heapq.heappush(self.timers, (time.monotonic() + p.t.health.timeout, p.index, p))
        code = sock.connect_ex((p.t.address, p.port))
        if code in (0, errno.EINPROGRESS, errno.EAGAIN):
            self.sel.register(sock, selectors.EVENT_WRITE, p)
        else:
            self._refused(p, code)

    def _ready(self, p: _Probe) -> None:
        sock = p.sock
        assert sock is not None
        try:
            if p.state == CONNECTING:
                self._connected(p)
            elif p.state == SENDING:
                self._send(p)
            else:
                self._read(p)
        except (ConnectionResetError, BrokenPipeError):
            error = f"connection to {p.t.address}:{p.t.port} closed before an answer"
            self._fail(p, error)
        except OSError as exc:
            self._fail(p, f"{type(exc).__name__}: {exc}")

    def _connected(self, p: _Probe) -> None:
        assert p.sock is not None
        code = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._refused(p, code)
            return
        if p.kind == "tcp":
            self._done(p, ProbeResult("tcp", True))
            return
        spec = p.t.health.http
        assert spec is not None
        p.out = http_request(spec.path, spec.host or p.t.domain)
        p.state = SENDING
        self._send(p)

    def _send(self, p: _Probe) -> None:
        assert p.sock is not None
        try:
            sent = p.sock.send(p.out)
        except BlockingIOError:
            return
        p.out = p.out[sent:]
        if not p.out:
            p.state = READING
            self.sel.modify(p.sock, selectors.EVENT_READ, p)

    def _read(self, p: _Probe) -> None:
        assert p.sock is not None
        try:
            data = p.sock.recv(65536)
        except BlockingIOError:
            return
        if data:
            p.buf += data
            if len(p.buf) < MAX_BODY and not response_complete(p.buf):
                return
        spec = p.t.health.http
        assert spec is not None
        try:
            status, body = parse_response(bytes(p.buf))
            self._done(p, http_verdict(spec, status, body))
        except ProbeFailed as exc:
            self._fail(p, str(exc))

    def _refused(self, p: _Probe, code: int) -> None:
        if code == errno.ECONNREFUSED:
            self._fail(p, f"connection refused by {p.t.address}:{p.port}")
        else:
            why = os.strerror(code)
            self._fail(p, f"cannot connect to {p.t.address}:{p.port}: {why}")

    def _fail(self, p: _Probe, error: str) -> None:
        self._done(p, ProbeResult(p.kind, False, None, error))

    def _done(self, p: _Probe, result: ProbeResult) -> None:
        if p.state == CLOSED:
            return
        result.latency_s = time.perf_counter() - p.started
        self.results[p.index] = result
        self._close(p)

    def _close(self, p: _Probe) -> None:
        p.state = CLOSED
        if p.sock is not None:
            if p.sock in self.sel.get_map():
                self.sel.unregister(p.sock)
            p.sock.close()
            self.open -= 1

    def _expire(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, p = heapq.heappop(self.timers)
            if p.state == CLOSED:
                continue
            timeout = p.t.health.timeout
            error = f"no answer within {timeout}s"
            self.results[p.index] = ProbeResult(p.kind, False, timeout, error)
            self._close(p)


def run(
    jobs: Sequence[Job], width: int, deadline: float | None, stop: threading.Event
) -> list[ProbeResult]:
    """The results of ``jobs`` (each ``handles``), in order."""
    return PlainRound(jobs, width, deadline, stop).run()
