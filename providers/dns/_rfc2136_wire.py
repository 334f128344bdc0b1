"""The transport side of the RFC 2136 backend: where a server is (``host:port``, its
address), one message sent and TSIG refusals told apart, and the authoritative query
the dns probe and the settling after an update ask with. The messages themselves are
made in :mod:`providers.dns._rfc2136`; the provider is :mod:`providers.dns.rfc2136`.
"""

from __future__ import annotations

import socket
from typing import Any

from providers.base import ProviderError
from providers.base import Record
from providers.base import TransientError
from providers.dns._rfc2136 import rdata_values


def split_server(server: str, default_port: int = 53) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    text = server.strip()
    if not text:
        raise ValueError("server must not be empty")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"{server!r}: missing ']'")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"{server!r}: expected [address]:port")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:  # a name, an IPv4 address or a bare IPv6 address
        host, port_text = text, ""
    if not host:
        raise ValueError(f"{server!r}: missing host")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{server!r}: port must be 1-65535")
        return host, int(port_text)
    return host, default_port


def _address(host: str, port: int) -> str:
    """The server's IP address (dnspython needs one). A name is looked up once, with the
    system resolver: it names the DNS server, not the record being changed."""
    try:
        socket.inet_pton(socket.AF_INET, host)
        return host
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return host
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TransientError(f"cannot resolve DNS server name {host!r}: {exc}") from None
    return str(infos[0][4][0])


class _Rejected(Exception):
    """The server answered, and refused us (key or policy)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class _Unsettled(TransientError):
    """The server took the update but does not answer every new value yet. Retried as a
    whole like any TransientError; ``results`` is what each change came to (its record,
    or its own ``propagation`` error) for when the retries run out."""

    def __init__(self, message: str, results: list[Record | ProviderError], **kw: Any) -> None:
        super().__init__(message, code="propagation", **kw)
        self.results = results


def _exchange(message: Any, address: str, port: int, timeout: float, *, tcp: bool) -> Any:
    """Send one message; translate dnspython's TSIG complaints into ``_Rejected``."""
    import dns.query
    import dns.tsig

    try:
        if tcp:
            return dns.query.tcp(message, address, port=port, timeout=timeout)
        response, _ = dns.query.udp_with_fallback(message, address, port=port, timeout=timeout)
        return response
    except EOFError:  # closed before it answered: to every caller, a connection failure
        raise ConnectionAbortedError("the server closed the connection without answering") from None
    except dns.tsig.PeerBadKey:
        raise _Rejected("BADKEY", "the server does not know this key name/algorithm") from None
    except dns.tsig.PeerBadSignature:
        raise _Rejected("BADSIG", "the signature did not verify: wrong secret?") from None
    except dns.tsig.PeerBadTime:
        raise _Rejected(
            "BADTIME", "the server rejected the signature's time: are the clocks in sync?"
        ) from None
    except dns.tsig.PeerError as exc:
        raise _Rejected("TSIG", f"TSIG error: {exc}") from None


def query_authoritative(
    server: str, name: str, rtype: str, timeout: float
) -> tuple[list[str], int]:
    """Ask ``server`` (``host:port``) itself for ``name``/``rtype``, without recursion.

    Returns the values (sorted, in presentation form) and the record set's TTL;
    ``([], 0)`` when the name or type does not exist. Used by the engine's dns probe to
    see what the authority answers now, bypassing every cache.

    Raises ``TransientError`` when the server does not answer in time (or answers
    SERVFAIL), ``ProviderError`` when it refuses or is not authoritative for the name.
    """
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdatatype

    host, port = split_server(server)
    address = _address(host, port)
    qname = name if name.endswith(".") else name + "."
    query = dns.message.make_query(qname, dns.rdatatype.from_text(rtype))
    query.flags &= ~dns.flags.RD
    try:
        response = _exchange(query, address, port, timeout, tcp=False)
    except (dns.exception.Timeout, OSError) as exc:
        raise TransientError(
            f"DNS server {server} did not answer a query for {qname} {rtype}: "
            f"{type(exc).__name__} {exc}".rstrip(),
            code="timeout",
        ) from None
    except _Rejected as exc:  # unsigned query: should not happen
        raise ProviderError(f"DNS server {server}: {exc.detail}", code=exc.code) from None
    except dns.exception.DNSException as exc:
        raise TransientError(f"DNS server {server}: bad answer: {exc}", code="formerr") from None
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return [], 0
    if rcode == dns.rcode.SERVFAIL:
        raise TransientError(f"DNS server {server} answered SERVFAIL for {qname}", code="SERVFAIL")
    if rcode != dns.rcode.NOERROR:
        code = dns.rcode.to_text(rcode)
        raise ProviderError(f"DNS server {server} answered {code} for {qname} {rtype}", code=code)
    if not response.flags & dns.flags.AA:
        raise ProviderError(
            f"DNS server {server} is not authoritative for {qname} (no AA flag in its answer)",
            code="not-authoritative",
            hint="point the probe at the zone's primary or one of its secondaries",
        )
    rdtype = dns.rdatatype.from_text(rtype)
    for rrset in response.answer:
        if rrset.rdtype == rdtype and rrset.name == dns.name.from_text(qname):
            return rdata_values(rrset), int(rrset.ttl)
    return [], 0
