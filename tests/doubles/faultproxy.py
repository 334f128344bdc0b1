"""A small fault-injecting HTTP reverse proxy, to put in front of moto or any REST double.

Real SDKs talk to the proxy as if it were the cloud API (point their endpoint at
``proxy.url``); the proxy forwards every request to ``target`` unchanged (``Host`` header
included, so request signatures stay valid) and relays the answer, except for requests
that match a queued *fault*. This gives the errors a double cannot produce by itself:
capacity and quota errors, throttling, 5xx, connection resets, hung connections and
latency, each exactly when a test wants it.

In-process (a thread), as a fixture or a context manager::

    from tests.doubles.faultproxy import FaultProxy, ec2_error

    with FaultProxy("http://127.0.0.1:5000") as proxy:       # proxy.url -> http://127.0.0.1:N
        proxy.add(body="Action=RunInstances", status=500,
                  response_body=ec2_error("InsufficientInstanceCapacity"), times=1)
        proxy.add(body="Action=DescribeInstances", action="reset")        # connection reset
        proxy.add(path="/v1/projects", method="POST", action="hang", hang=3)
        proxy.add(body="Action=RunInstances", status=503, after_forward=True)  # lost answer
        ...
        assert proxy.count(body="Action=RunInstances") == 2

Standalone (for a shell, another language, or several test processes)::

    python -m tests.doubles.faultproxy --target http://127.0.0.1:5000 --port 8099 \\
        [--host 127.0.0.1] [--fault '{"body": "Action=RunInstances", "status": 503}']

It prints ``faultproxy listening on http://127.0.0.1:8099 -> http://127.0.0.1:5000`` once
ready and runs until SIGINT/SIGTERM. Faults are then queued over the control API, served
on the same port under ``/__faultproxy__`` (never forwarded):

- ``POST /__faultproxy__/faults`` with a JSON fault object (or a list of them): queue them;
  answers ``{"ids": [...]}``.
- ``GET /__faultproxy__/faults``: the faults still queued, with their ``hits``.
- ``DELETE /__faultproxy__/faults``: drop every queued fault.
- ``GET /__faultproxy__/log``: ``{"requests": [{"method", "path", "fault", "status"}]}``,
  every request seen (``fault`` is the id of the fault applied, or null; ``status`` is what
  the client got, or ``"reset"``/``"hang"``).
- ``POST /__faultproxy__/reset``: drop faults and the log.

A fault (``Fault``; JSON keys are the same names) matches a request when all of the
given conditions hold (an absent condition matches everything):

- ``method``: the HTTP method (case-insensitive);
- ``path``: a substring of the path with its query string (``re:`` prefix: a regex);
- ``body``: a substring of the request body or of the query string, e.g.
  ``"Action=RunInstances"`` (AWS query protocol) or ``'"zone": "b"'`` (``re:`` works too).

What it does, ``action``:

- ``"status"`` (default): answer ``status`` (default 503) with ``response_body``,
  ``content_type`` and extra ``headers``; ``retry_after`` adds a ``Retry-After`` header;
- ``"reset"``: close the connection with a TCP reset, no answer;
- ``"hang"``: accept the request and answer nothing for ``hang`` seconds (bounded by
  ``MAX_HANG``, and cut short when the proxy stops), then close the connection;
- ``"delay"``: wait ``delay`` seconds, then forward normally (added latency).

``delay`` also adds latency before any other action. ``after_forward=True`` forwards the
request first (so the upstream *does* it) and then applies the fault instead of relaying
the answer: the "request succeeded but the answer was lost" case that tests idempotency.
``skip`` lets that many matching requests through before the fault starts applying,
``times`` is how many requests it applies to (``None``/``null``: every one, until removed).
Faults are consulted in the order they were added; the first one that matches and still
has uses left is applied.

Helpers build error bodies in the shapes the SDKs parse: :func:`ec2_error` (EC2 query
protocol), :func:`aws_error` (STS/IAM/Route 53/most query and rest-xml APIs) and
:func:`json_error` (Google and Azure style JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import re
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

CONTROL = "/__faultproxy__"
MAX_HANG = 120.0
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_ACTIONS = ("status", "reset", "hang", "delay")
_ids = itertools.count(1)


# --------------------------------------------------------------------------- error bodies


def ec2_error(code: str, message: str | None = None) -> str:
    """An EC2 (query protocol) error document, as botocore parses it."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{escape(code)}</Code><Message>{escape(message or code)}</Message>"
        "</Error></Errors><RequestID>faultproxy-0000</RequestID></Response>"
    )


def aws_error(code: str, message: str | None = None, sender: bool = True) -> str:
    """An ``<ErrorResponse>`` document (STS, IAM, Route 53, SQS, ... query and rest-xml)."""
    kind = "Sender" if sender else "Receiver"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error>'
        f"<Type>{kind}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(message or code)}</Message></Error>"
        "<RequestId>faultproxy-0000</RequestId></ErrorResponse>"
    )


def json_error(
    status: int, message: str, reason: str | None = None, code: str | None = None
) -> str:
    """A JSON error body in Google's shape, with an Azure-style ``code`` beside it."""
    error: dict[str, Any] = {"code": status, "message": message, "status": reason or ""}
    if reason:
        error["errors"] = [{"reason": reason, "message": message}]
    if code:
        error["code"] = code
    return json.dumps({"error": error})


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """One queued fault; see the module docstring for what each field means."""

    method: str | None = None
    path: str | None = None
    body: str | None = None
    action: str = "status"
    status: int = 503
    response_body: str = ""
    content_type: str = "text/xml"
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    delay: float = 0.0
    hang: float = 5.0
    after_forward: bool = False
    skip: int = 0
    times: int | None = 1
    id: int = 0
    hits: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"action must be one of {', '.join(_ACTIONS)}, not {self.action!r}")
        if not self.id:
            self.id = next(_ids)
        self.hang = min(max(float(self.hang), 0.0), MAX_HANG)
        self.delay = min(max(float(self.delay), 0.0), MAX_HANG)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, method: str, path: str, body: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path is not None and not _contains(self.path, path):
            return False
        query = urlsplit(path).query
        return self.body is None or _contains(self.body, body) or _contains(self.body, query)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _contains(pattern: str, text: str) -> bool:
    if pattern.startswith("re:"):
        return re.search(pattern[3:], text) is not None
    return pattern in text


_FAULT_FIELDS = {f.name for f in fields(Fault)} - {"id", "hits", "seen"}


def fault_from_dict(data: dict[str, Any]) -> Fault:
    unknown = set(data) - _FAULT_FIELDS
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    return Fault(**data)


# --------------------------------------------------------------------------- the proxy


class FaultProxy:
    """The proxy; ``start()`` serves it on a thread (``port=0``: a free port)."""

    def __init__(
        self,
        target: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        upstream_timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"target must be an http(s) URL, not {target!r}")
        self.target = target.rstrip("/")
        self._scheme = parts.scheme
        self._thost = parts.hostname
        self._tport = parts.port or (443 if parts.scheme == "https" else 80)
        self._tprefix = parts.path.rstrip("/")
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._log: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.proxy = self
        self._thread: threading.Thread | None = None
        self._serving = False

    # ----------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> FaultProxy:
        self._serving = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"faultproxy:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._serving = True
        self._server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        self._stopping.set()
        if self._serving:
            self._server.shutdown()
            self._serving = False
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------- faults

    def add(self, fault: Fault | None = None, **kwargs: Any) -> Fault:
        """Queue a fault: ``add(Fault(...))`` or ``add(body="Action=X", status=500, ...)``."""
        fault = fault or Fault(**kwargs)
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f.id != fault.id]

    def clear(self) -> None:
        """Drop every queued fault (the log stays)."""
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Drop faults and the request log."""
        with self._lock:
            self._faults.clear()
            self._log.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    @property
    def log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    def count(
        self, method: str | None = None, path: str | None = None, body: str | None = None
    ) -> int:
        """How many requests seen so far match (same rules as a fault's conditions)."""
        probe = Fault(method=method, path=path, body=body, id=-1)
        with self._lock:
            return sum(
                1 for e in self._log if probe.matches(e["method"], e["path"], e.get("_body", ""))
            )

    def _pick(self, method: str, path: str, body: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or not fault.matches(method, path, body):
                    continue
                fault.seen += 1
                if fault.seen <= fault.skip:
                    continue
                fault.hits += 1
                return fault
            return None

    def _record(self, method: str, path: str, body: str, fault: Fault | None, status: Any) -> None:
        with self._lock:
            self._log.append(
                {
                    "method": method,
                    "path": path,
                    "fault": fault.id if fault else None,
                    "status": status,
                    "_body": body[:4096],
                }
            )

    # ----------------------------------------------------------- upstream

    def forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._thost, self._tport, timeout=self.upstream_timeout)
        try:
            conn.putrequest(method, self._tprefix + path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            if body or method.upper() in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, [(k, v) for k, v in resp.getheaders()], data
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() not in ("server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        proxy = self.server.proxy
        raw = self._read_body()
        if self.path.startswith(CONTROL):
            self._control(proxy, raw)
            return
        text = raw.decode("utf-8", "replace")
        fault = proxy._pick(self.command, self.path, text)
        if fault is not None and fault.delay:
            proxy._stopping.wait(fault.delay)
        if fault is None or fault.action == "delay" or fault.after_forward:
            try:
                status, headers, body = proxy.forward(
                    self.command, self.path, list(self.headers.items()), raw
                )
            except OSError as exc:
                status, headers = 502, [("Content-Type", "text/plain")]
                body = f"faultproxy: upstream {proxy.target} failed: {exc}".encode()
            if fault is None or fault.action == "delay":
                proxy._record(self.command, self.path, text, fault, status)
                self._send(status, headers, body)
                return
        if fault.action == "reset":
            proxy._record(self.command, self.path, text, fault, "reset")
            self._reset()
            return
        if fault.action == "hang":
            proxy._record(self.command, self.path, text, fault, "hang")
            proxy._stopping.wait(fault.hang)
            self.close_connection = True
            return
        headers = [("Content-Type", fault.content_type), *fault.headers.items()]
        if fault.retry_after is not None:
            headers.append(("Retry-After", f"{fault.retry_after:g}"))
        proxy._record(self.command, self.path, text, fault, fault.status)
        self._send(fault.status, headers, fault.response_body.encode())

    def _reset(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _control(self, proxy: FaultProxy, raw: bytes) -> None:
        route = self.path[len(CONTROL) :].split("?", 1)[0].rstrip("/")
        try:
            if route == "/faults" and self.command == "GET":
                out: Any = {"faults": [f.to_dict() for f in proxy.faults]}
            elif route == "/faults" and self.command == "POST":
                data = json.loads(raw or b"{}")
                items = data if isinstance(data, list) else [data]
                out = {"ids": [proxy.add(fault_from_dict(item)).id for item in items]}
            elif route == "/faults" and self.command == "DELETE":
                proxy.clear()
                out = {"status": "ok"}
            elif route == "/log" and self.command == "GET":
                out = {
                    "requests": [
                        {k: v for k, v in e.items() if not k.startswith("_")} for e in proxy.log
                    ]
                }
            elif route == "/reset" and self.command == "POST":
                proxy.reset()
                out = {"status": "ok"}
            elif route in ("", "/health"):
                out = {"status": "ok", "target": proxy.target}
            else:
                self._send(404, [("Content-Type", "application/json")], b'{"error": "not found"}')
                return
        except (ValueError, TypeError) as exc:
            body = json.dumps({"error": str(exc)}).encode()
            self._send(400, [("Content-Type", "application/json")], body)
            return
        self._send(200, [("Content-Type", "application/json")], json.dumps(out).encode())

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.doubles.faultproxy",
        description="Fault-injecting HTTP reverse proxy (control API under /__faultproxy__).",
    )
    parser.add_argument(
        "--target", required=True, help="upstream base URL, e.g. http://127.0.0.1:5000"
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--fault", action="append", default=[], help="a fault as JSON, queued at start (repeatable)"
    )
    args = parser.parse_args(argv)
    proxy = FaultProxy(args.target, host=args.host, port=args.port)
    for spec in args.fault:
        proxy.add(fault_from_dict(json.loads(spec)))

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=proxy.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"faultproxy listening on {proxy.url} -> {proxy.target}", flush=True)
    proxy.serve_forever()
    time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
