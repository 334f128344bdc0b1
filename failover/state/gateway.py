"""A thin client of etcd's v3 HTTP/JSON gateway (``/v3/kv/range``, ``/v3/kv/txn``, ...).

Thin on purpose, as Patroni's is: the store needs ranges, puts, one kind of transaction
and leases, all plain JSON over HTTP, so no gRPC stack (the ``etcd3`` package no longer
imports with current protobuf) and no dependency beyond the standard library. Endpoints
are tried in turn; a member that does not answer, or answers that it has lost its
cluster (no leader, timed out), sends the request to the next one. When none answers,
:class:`StoreUnreachable` says so: the caller must never take that for "down".
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from failover.redact import redact
from failover.state.sqlite import StateError


class StoreUnreachable(StateError):
    """No etcd member answered: nothing can be decided, so nothing is moved."""


# gRPC codes the gateway passes on: Unavailable, DeadlineExceeded, and the "no leader" /
# "timed out" answers of a member cut off from its cluster (Unknown, with that message).
_RETRY_CODES = {4, 14}
_RETRY_WORDS = ("no leader", "timed out", "leader changed", "not capable", "unhealthy")
_UNAUTHENTICATED = 16


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def unb64(text: str | None) -> str:
    return base64.b64decode(text or "").decode()


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return b64(bytes(raw))


@dataclass(frozen=True)
class KV:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int

    @staticmethod
    def of(raw: dict[str, Any]) -> KV:
        return KV(
            unb64(raw.get("key")),
            unb64(raw.get("value")),
            int(raw.get("create_revision", 0)),
            int(raw.get("mod_revision", 0)),
            int(raw.get("lease", 0)),
        )

    def json(self) -> Any:
        return json.loads(self.value) if self.value else None


@dataclass(frozen=True)
class TLS:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class Gateway:
    """One watcher's connection to etcd: thread-safe (a connection per thread)."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout: float = 2.0,
        tls: TLS | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.tls = tls or TLS()
        self.username, self.password = username, password
        self.calls = 0  # requests sent (bench/watchers.py reports them per round)
        self._first = 0  # the endpoint that answered last: tried first next time
        self._token: str | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    # ----------------------------------------------------------------- transport

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self.tls.ca_file)
            if self.tls.cert_file and self.tls.key_file:
                ctx.load_cert_chain(self.tls.cert_file, self.tls.key_file)
            self._ssl = ctx
        return self._ssl

    def _connection(self, index: int) -> http.client.HTTPConnection:
        conns: dict[int, http.client.HTTPConnection] = self._local.__dict__.setdefault("c", {})
        if index not in conns:
            url = urlsplit(self.endpoints[index])
            host, port = url.hostname or "127.0.0.1", url.port
            if url.scheme == "https":
                conns[index] = http.client.HTTPSConnection(
                    host, port or 2379, timeout=self.timeout, context=self._context()
                )
            else:
                conns[index] = http.client.HTTPConnection(host, port or 2379, timeout=self.timeout)
        return conns[index]

    def _drop(self, index: int) -> None:
        conns: dict[int, http.client.HTTPConnection] = self._local.__dict__.get("c", {})
        conn = conns.pop(index, None)
        if conn is not None:
            conn.close()

    def _send(self, index: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if self._token and not path.startswith("/v3/auth/authenticate"):
            headers["Authorization"] = self._token
        payload = json.dumps(body)
        for attempt in (0, 1):  # a kept-alive connection the server closed: once more
            conn = self._connection(index)
            try:
                conn.request("POST", path, payload, headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop(index)
                if attempt:
                    raise
        self.calls += 1
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            doc = {"error": raw[:200].decode(errors="replace")}
        return response.status, doc if isinstance(doc, dict) else {}

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first member that answers for its cluster."""
        problems: list[str] = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._first + step) % count
            try:
                status, doc = self._request(index, path, body)
            except (OSError, http.client.HTTPException) as exc:
                self._drop(index)
                problems.append(f"{self.endpoints[index]}: {exc or type(exc).__name__}")
                continue
            if status == 200:
                self._first = index
                return doc
            message = str(doc.get("message") or doc.get("error") or f"HTTP {status}")
            code = int(doc.get("code", 0) or 0)
            if code in _RETRY_CODES or status >= 500 or any(w in message for w in _RETRY_WORDS):
                problems.append(f"{self.endpoints[index]}: {message}")
                continue
            raise StateError(redact(f"etcd refused {path}: {message}"))
        raise StoreUnreachable(
            redact("state store unreachable: no etcd member answered (" + "; ".join(problems) + ")")
        )

    def _request(self, index: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.username and self._token is None:
            self._authenticate(index)
        status, doc = self._send(index, path, body)
        if self.username and int(doc.get("code", 0) or 0) == _UNAUTHENTICATED:
            self._authenticate(index)  # the token expired (etcd's simple tokens do)
            status, doc = self._send(index, path, body)
        return status, doc

    def _authenticate(self, index: int) -> None:
        status, doc = self._send(
            index, "/v3/auth/authenticate", {"name": self.username, "password": self.password}
        )
        if status != 200 or not doc.get("token"):
            message = doc.get("message") or doc.get("error") or f"HTTP {status}"
            raise StateError(redact(f"etcd refused the user {self.username!r}: {message}"))
        with self._lock:
            self._token = str(doc["token"])

    def close(self) -> None:
        for index in list(self._local.__dict__.get("c", {})):
            self._drop(index)

    # ----------------------------------------------------------------- kv

    def get(self, key: str) -> KV | None:
        kvs = self.range(key)
        return kvs[0] if kvs else None

    def range(self, key: str, *, prefix: bool = False, limit: int = 0) -> list[KV]:
        doc = self.call("/v3/kv/range", range_request(key, prefix=prefix, limit=limit))
        return [KV.of(kv) for kv in doc.get("kvs", [])]

    def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> tuple[bool, list[dict[str, Any]], int]:
        """One transaction: whether the compares held, the responses, the new revision."""
        doc = self.call(
            "/v3/kv/txn", {"compare": compare, "success": success, "failure": failure or []}
        )
        revision = int(doc.get("header", {}).get("revision", 0))
        return bool(doc.get("succeeded")), list(doc.get("responses", [])), revision

    # ----------------------------------------------------------------- leases and cluster

    def grant(self, ttl: float) -> int:
        doc = self.call("/v3/lease/grant", {"TTL": max(1, round(ttl))})
        return int(doc["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew ``lease``; its remaining TTL, 0 when it has expired already."""
        doc = self.call("/v3/lease/keepalive", {"ID": lease})
        return int(doc.get("result", {}).get("TTL", 0) or 0)

    def time_to_live(self, lease: int) -> int:
        doc = self.call("/v3/lease/timetolive", {"ID": lease})
        return int(doc.get("TTL", 0) or 0)

    def revoke(self, lease: int) -> None:
        try:
            self.call("/v3/lease/revoke", {"ID": lease})
        except StateError as exc:
            if "not found" not in str(exc):
                raise

    def members(self) -> list[dict[str, Any]]:
        return list(self.call("/v3/cluster/member/list", {}).get("members", []))


# --------------------------------------------------------------------------- txn pieces


def range_request(key: str, *, prefix: bool = False, limit: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if prefix:
        body["range_end"] = prefix_end(key)
    if limit:
        body["limit"] = limit
    return body


def put(key: str, value: Any, lease: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key), "value": b64(json.dumps(value))}
    if lease:
        body["lease"] = lease
    return {"request_put": body}


def delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


def get_op(key: str, *, prefix: bool = False) -> dict[str, Any]:
    return {"request_range": range_request(key, prefix=prefix)}


def created_at(key: str, revision: int) -> dict[str, Any]:
    """Holds while ``key`` is the one created at ``revision`` (0: while it is absent)."""
    return {
        "key": b64(key),
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": str(revision),
    }


def modified_at(key: str, revision: int) -> dict[str, Any]:
    """Holds while ``key`` was last written at ``revision`` (0: while it is absent)."""
    if revision == 0:
        return created_at(key, 0)
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


def range_kvs(response: dict[str, Any]) -> list[KV]:
    return [KV.of(kv) for kv in response.get("response_range", {}).get("kvs", [])]
