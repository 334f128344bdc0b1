"""Health probes: http, tcp, tls and dns, run concurrently with asyncio.

A round runs at most ``in_flight`` probes at once (:func:`probe_round`), each bounded by
its own timeout counted from when it starts, so one hung host never delays the verdict
on another, and a round of thousands of probes does not starve its own event loop until
every timeout fires (issue 16: uncapped, 3,000 probes with a 1 s timeout all failed). A
probe that could not start within the round's budget (its ``interval``) is reported as
not run (``ran=False``), which the engine reads as "cannot tell", never as "down". The
HTTP client is a few lines of
asyncio streams on purpose: a probe needs a status line, headers and a bounded body, and
importing a full client would cost every cron-driven ``check`` more than the probe does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import resource
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from failover.config import HealthConfig
from failover.config import HttpProbe

MAX_BODY = 64 * 1024


@dataclass
class ProbeResult:
    kind: str
    ok: bool
    latency_s: float | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # False: the round's budget ran out before this probe could start; it says nothing
    # about the service.
    ran: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "ok": self.ok,
            "latency_s": None if self.latency_s is None else round(self.latency_s, 4),
            "error": self.error,
        }
        if not self.ran:
            out["ran"] = False
        return out


# A resolver for the dns probe: returns (values, ttl) of the service's record.
Resolver = Callable[[], tuple[list[str], int] | None]


@dataclass
class Target:
    """What to probe: one service on one address."""

    service: str
    address: str
    port: int
    domain: str
    health: HealthConfig
    resolver: Resolver | None = None
    record_type: str = "A"


class ProbeFailed(Exception):
    pass


class NotSent(ProbeFailed):
    """The probe was never sent (FAILOVER_PROBE_NETWORKS refused the address): it says
    nothing about the service, so the round reads it as "cannot tell", never as "down"
    (issue 21: a watcher that could see nothing led and kept the service down)."""


def _allowed(address: str) -> None:
    """Refuse addresses outside FAILOVER_PROBE_NETWORKS (when set): a safety belt for
    test rigs and for operators who must never probe outside a known network."""
    spec = os.environ.get("FAILOVER_PROBE_NETWORKS")
    if not spec:
        return
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return  # a name: resolved by the OS, not checked here
    for net in spec.split(","):
        if net.strip() and ip in ipaddress.ip_network(net.strip(), strict=False):
            return
    raise NotSent(f"{address} is outside FAILOVER_PROBE_NETWORKS ({spec}); not probed")


async def _open(
    address: str, port: int, tls: ssl.SSLContext | None = None, server_name: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    _allowed(address)
    try:
        return await asyncio.open_connection(
            address, port, ssl=tls, server_hostname=server_name if tls else None
        )
    except ConnectionRefusedError:
        raise ProbeFailed(f"connection refused by {address}:{port}") from None
    except OSError as exc:
        raise ProbeFailed(f"cannot connect to {address}:{port}: {exc.strerror or exc}") from None


def _tls_context(verify: bool, ca_file: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify and ca_file is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def http_get(
    address: str,
    port: int,
    path: str,
    host: str,
    *,
    tls: ssl.SSLContext | None = None,
    peer: dict[str, Any] | None = None,
) -> tuple[int, bytes]:
    """``peer``: filled with the served certificate's ``serial`` and ``not_after``."""
    reader, writer = await _open(address, port, tls, host)
    try:
        sslobj = writer.get_extra_info("ssl_object") if tls is not None else None
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if der and peer is not None:
            decoded = _decode(der)
            peer["serial"] = format(int(decoded["serialNumber"], 16), "x")
            peer["not_after"] = float(ssl.cert_time_to_seconds(decoded["notAfter"]))
        writer.write(http_request(path, host))
        await writer.drain()
        buf = bytearray()
        while len(buf) < MAX_BODY and not response_complete(buf):
            data = await reader.read(65536)
            if not data:
                break
            buf += data
        return parse_response(bytes(buf))
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def http_request(path: str, host: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: failover-probe\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


_STATUS = re.compile(rb"HTTP/\d(?:\.\d)? (\d{3})")


def response_complete(buf: bytearray) -> bool:
    """The response needs no more reading: its Content-Length or its last chunk arrived
    (a server that keeps the connection open despite ``Connection: close`` is not waited
    for), or its first line is not HTTP; otherwise it ends when the server closes."""
    line_end = buf.find(b"\n")
    if line_end >= 0 and not _STATUS.match(buf):
        return True
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = bytes(buf[:end]).lower()
    at = head.find(b"\ncontent-length:")
    if at >= 0:
        value = head[at + 16 :].split(b"\r\n", 1)[0].strip()
        return value.isdigit() and len(buf) - end - 4 >= int(value)
    if b"\ntransfer-encoding:" in head and b"chunked" in head:
        return buf.endswith(b"\n0\r\n\r\n")
    return False


def parse_response(data: bytes) -> tuple[int, bytes]:
    """The status and the body (at most MAX_BODY, de-chunked) of a whole response."""
    pos = data.find(b"\n") + 1 or len(data)  # a line keeps its end, as readline's do
    match = _STATUS.match(data[:pos])
    if not match:
        raise ProbeFailed(f"not an HTTP response: {data[:pos][:60]!r}")
    headers: dict[bytes, bytes] = {}
    while pos < len(data):
        end = data.find(b"\n", pos) + 1 or len(data)
        line, pos = data[pos:end], end
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = data[pos : pos + MAX_BODY]
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    return int(match.group(1)), body


def _dechunk(data: bytes) -> bytes:
    out, rest = bytearray(), data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


def http_verdict(spec: HttpProbe, status: int, body: bytes) -> ProbeResult:
    """The ``http`` probe's result from the response's status and body."""
    if status not in spec.expect_status:
        raise ProbeFailed(f"HTTP {status} (expected {', '.join(map(str, spec.expect_status))})")
    if spec.body and not re.search(spec.body, body.decode("utf-8", "replace")):
        raise ProbeFailed(f"body does not match /{spec.body}/")
    return ProbeResult("http", True, detail={"status": status})


async def probe_http(t: Target) -> ProbeResult:
    spec = t.health.http
    assert spec is not None
    tls = _tls_context(spec.verify_tls, spec.ca_file) if spec.scheme == "https" else None
    peer: dict[str, Any] = {}
    status, body = await http_get(
        t.address, t.port, spec.path, spec.host or t.domain, tls=tls, peer=peer
    )
    result = http_verdict(spec, status, body)
    result.detail.update(peer)
    return result


async def probe_tcp(t: Target) -> ProbeResult:
    spec = t.health.tcp
    assert spec is not None
    _, writer = await _open(t.address, spec.port or t.port)
    writer.close()
    return ProbeResult("tcp", True)


def _decode(der: bytes) -> dict[str, Any]:
    # The stdlib decodes a certificate only from a file; the peer's certificate arrives
    # unverified (self-signed hosts are common here), so decode it that way.
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as fh:
        fh.write(ssl.DER_cert_to_PEM_cert(der))
        fh.flush()
        decoded: dict[str, Any] = ssl._ssl._test_decode_cert(fh.name)  # type: ignore[attr-defined]
    return decoded


def _not_after(der: bytes) -> float:
    return float(ssl.cert_time_to_seconds(_decode(der)["notAfter"]))


async def probe_tls(t: Target) -> ProbeResult:
    spec = t.health.tls
    assert spec is not None
    _, writer = await _open(t.address, spec.port or t.port, _tls_context(False), t.domain)
    try:
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj else None
    finally:
        writer.close()
    if not der:
        raise ProbeFailed("no certificate presented")
    days = (_not_after(der) - time.time()) / 86400
    if days < spec.min_days:
        raise ProbeFailed(f"certificate expires in {days:.1f} days (< {spec.min_days})")
    return ProbeResult("tls", True, detail={"days_left": round(days, 1)})


async def probe_dns(t: Target) -> ProbeResult:
    spec = t.health.dns
    assert spec is not None
    if spec.server:
        answer = await asyncio.to_thread(
            query_server, spec.server, t.domain, t.record_type, t.health.timeout
        )
    elif t.resolver is not None:
        resolved = await asyncio.to_thread(t.resolver)
        answer = resolved or ([], 0)
    else:
        raise ProbeFailed("no DNS server to ask")
    if not answer[0]:
        raise ProbeFailed(f"{t.domain} {t.record_type}: no such record")
    values, ttl = answer
    if sorted(values) != [t.address]:
        raise ProbeFailed(f"{t.domain} answers {', '.join(values)}, not {t.address}")
    return ProbeResult("dns", True, detail={"values": values, "ttl": ttl})


def query_server(server: str, name: str, rtype: str, timeout: float) -> tuple[list[str], int]:
    """Ask one DNS server directly (not the system resolver)."""
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "53")
    _allowed(host)
    query = dns.message.make_query(name, rtype)
    try:
        response = dns.query.udp(query, host, port=int(port or 53), timeout=timeout)
    except Exception as exc:
        raise ProbeFailed(f"DNS server {server} did not answer: {exc}") from None
    if response.rcode() == dns.rcode.NXDOMAIN:
        return [], 0
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.from_text(rtype):
            return sorted(r.to_text() for r in rrset), int(rrset.ttl)
    return [], 0


PROBES: dict[str, Callable[[Target], Awaitable[ProbeResult]]] = {
    "http": probe_http,
    "tcp": probe_tcp,
    "tls": probe_tls,
    "dns": probe_dns,
}


async def _timed(kind: str, t: Target) -> ProbeResult:
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(PROBES[kind](t), timeout=t.health.timeout)
    except TimeoutError:
        return ProbeResult(kind, False, t.health.timeout, f"no answer within {t.health.timeout}s")
    except NotSent as exc:
        return ProbeResult(kind, False, None, str(exc), ran=False)
    except ProbeFailed as exc:
        return ProbeResult(kind, False, time.perf_counter() - started, str(exc))
    except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
        error = f"connection to {t.address}:{t.port} closed before an answer"
        return ProbeResult(kind, False, time.perf_counter() - started, error)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return ProbeResult(
            kind, False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
        )
    result.latency_s = time.perf_counter() - started
    return result


def kinds(health: HealthConfig) -> list[str]:
    return [k for k in PROBES if getattr(health, k) is not None]


async def probe_target(t: Target) -> list[ProbeResult]:
    return list(await asyncio.gather(*(_timed(k, t) for k in kinds(t.health))))


def default_in_flight() -> int:
    """500 probes at once (all of 10,000 loopback probes pass at 1.6x the uncapped rate),
    or fewer when the process may not open that many sockets."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 500
    return max(8, min(500, soft // 2))


async def probe_round(
    targets: Sequence[Target], *, in_flight: int | None = None, budget: float | None = None
) -> list[list[ProbeResult]]:
    """One round: every probe of every target, at most ``in_flight`` at once.

    A probe not started ``budget`` seconds after the round began (the next round is due)
    is not run and comes back with ``ran=False``, so a round lasts at most ``budget`` plus
    one timeout. Each probe's timeout runs from its own start. Workers pull from one
    queue instead of one task per probe waiting on a semaphore: at 10,000 probes the
    waiting tasks alone cost more than the probes."""
    from failover.probes import plain

    loop = asyncio.get_running_loop()
    deadline = None if budget is None else loop.time() + budget
    jobs = [
        (i, j, kind, t) for i, t in enumerate(targets) for j, kind in enumerate(kinds(t.health))
    ]
    out: list[list[ProbeResult | None]] = [[None] * len(kinds(t.health)) for t in targets]
    fast = [job for job in jobs if plain.handles(job[2], job[3])]
    queue = iter([job for job in jobs if not plain.handles(job[2], job[3])])

    async def worker() -> None:
        for i, j, kind, t in queue:
            if deadline is not None and loop.time() >= deadline:
                out[i][j] = ProbeResult(kind, False, None, "", ran=False)
                continue
            out[i][j] = await _timed(kind, t)

    async def on_selector(width: int) -> None:
        stop = threading.Event()
        try:
            todo = [(kind, t) for _, _, kind, t in fast]
            done = await asyncio.to_thread(plain.run, todo, width, deadline, stop)
        finally:
            stop.set()  # cancelled (Ctrl-C): the thread closes its sockets and returns
        for (i, j, _, _), result in zip(fast, done, strict=True):
            out[i][j] = result

    width = max(1, min(in_flight or default_in_flight(), len(jobs)))
    if not fast:
        await asyncio.gather(*(worker() for _ in range(width)))
    elif len(fast) == len(jobs):
        await on_selector(width)
    elif width < 2:  # one probe at a time: the selector's, then the others
        await on_selector(1)
        await worker()
    else:
        # The bound is shared in proportion to each side's probes.
        mine = min(width - 1, max(1, round(width * len(fast) / len(jobs))))
        await asyncio.gather(on_selector(mine), *(worker() for _ in range(width - mine)))
    skipped = [r for row in out for r in row if r is not None and not r.ran and not r.error]
    if skipped:
        why = (
            f"not run: the round's budget ({budget:g}s) ran out before it could start "
            f"({len(skipped)} of {len(jobs)} probes not run, {width} at once)"
        )
        for result in skipped:
            result.error = why
    return [[r for r in row if r is not None] for row in out]


async def probe_all(targets: Sequence[Target]) -> list[list[ProbeResult]]:
    """One round with the default bound and no budget."""
    return await probe_round(targets)


async def reach(canary: str, timeout: float) -> tuple[bool, str]:
    """Can the watcher reach ``canary`` (a URL, or host:port)? Any answer counts."""
    try:
        if "://" in canary:
            url = urlsplit(canary)
            port = url.port or (443 if url.scheme == "https" else 80)
            tls = _tls_context(False) if url.scheme == "https" else None
            await asyncio.wait_for(
                http_get(url.hostname or "", port, url.path or "/", url.hostname or "", tls=tls),
                timeout,
            )
        else:
            host, _, port_text = canary.rpartition(":")
            _, writer = await asyncio.wait_for(_open(host, int(port_text)), timeout)
            writer.close()
    except TimeoutError:
        return False, f"canary {canary}: no answer within {timeout}s"
    except (ProbeFailed, OSError, ValueError, ssl.SSLError) as exc:
        return False, f"canary {canary}: {exc}"
    return True, f"canary {canary} answers"
