"""A stand-in for Cloudflare's v4 REST API (zones and DNS records), for tests.

It speaks the same JSON envelope as api.cloudflare.com
(``{"success", "errors", "messages", "result", "result_info"}``), so the official
``cloudflare`` Python SDK is driven against it unchanged, through ``base_url``.

In-process::

    with CloudflareDouble(token="t") as cf:
        zone = cf.add_zone("example.test")
        cf.add_record("example.test", "www.example.test", "A", "127.77.0.1", proxied=True)
        cf.fail_next(429, count=2, retry_after=0)
        client = cloudflare.Cloudflare(api_token="t", base_url=cf.base_url)

Standalone (for CLI tests in another process, or by hand)::

    python -m tests.doubles.cloudflare --port 8787 --token t \\
        --zone example.test --record www.example.test:A:127.77.0.1[:proxied]

Control API (not part of Cloudflare's; no token needed), under ``/__control``:
``POST /fail {"status": 429, "count": 1, "retry_after": 0, "code": 971}`` fails the next
calls; ``POST /zones {"name"}``; ``POST /records {"zone", "name", "type", "content",
"ttl", "proxied"}``; ``GET /state``; ``POST /reset``.

Only what the failover tool uses is implemented: zones list/get, DNS records
list/get/create/update (PUT)/edit (PATCH)/delete/batch, and token verification.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import signal
import threading
import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

PREFIX = "/client/v4"
PROXIABLE = {"A", "AAAA", "CNAME"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _id() -> str:
    return uuid.uuid4().hex


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class _Failure:
    status: int
    count: int
    retry_after: float | None = None
    code: int | None = None
    message: str | None = None


@dataclass
class _State:
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> zone
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record
    failures: list[_Failure] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)


_DEFAULT_FAIL = {
    401: (10000, "Authentication error"),
    403: (10000, "Authentication error"),
    429: (971, "Please wait and consider throttling your request speed"),
    500: (10002, "An unknown error has occurred"),
    502: (10002, "Bad gateway"),
    503: (10002, "Service unavailable"),
}


class CloudflareDouble:
    """The fake API: state, behaviour and an HTTP server around them."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        host: str = "127.0.0.1",
        port: int = 0,
        min_ttl: int = 60,
    ) -> None:
        self.tokens = {token}
        self.host = host
        self.port = port
        self.min_ttl = min_ttl
        self.state = _State()
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to hand the SDK as ``base_url`` (the provider's ``endpoint``)."""
        return self.url + PREFIX

    def start(self) -> CloudflareDouble:
        double = self

        class Handler(_Handler):
            pass

        Handler.double = double
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CloudflareDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Run until SIGTERM or Ctrl-C (for the standalone process)."""
        if self._server is None:
            self.start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        self.stop()

    # ----------------------------------------------------------------- seeding / control

    def add_zone(self, name: str, *, status: str = "active") -> str:
        with self.lock:
            zone_id = _id()
            self.state.zones[zone_id] = {
                "id": zone_id,
                "name": name.rstrip(".").lower(),
                "status": status,
                "paused": False,
                "type": "full",
                "development_mode": 0,
                "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                "original_name_servers": None,
                "original_registrar": None,
                "original_dnshost": None,
                "created_on": _now(),
                "modified_on": _now(),
                "activated_on": _now(),
                "meta": {"step": 4, "phishing_detected": False},
                "owner": {"id": None, "type": "user", "email": None},
                "account": {"id": "0123456789abcdef0123456789abcdef", "name": "Test account"},
                "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
                "plan": {"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website"},
                "vanity_name_servers": [],
            }
            return zone_id

    def zone_id(self, name: str) -> str:
        with self.lock:
            for zone in self.state.zones.values():
                if zone["name"] == name.rstrip(".").lower():
                    return str(zone["id"])
        raise KeyError(name)

    def add_record(
        self,
        zone: str,
        name: str,
        rtype: str,
        content: str,
        *,
        ttl: int = 300,
        proxied: bool = False,
        comment: str | None = None,
        tags: list[str] | None = None,
    ) -> str:
        with self.lock:
            zone_id = zone if zone in self.state.zones else self.zone_id(zone)
            record = self._new_record(
                zone_id,
                {
                    "name": name,
                    "type": rtype,
                    "content": content,
                    "ttl": ttl,
                    "proxied": proxied,
                    "comment": comment,
                    "tags": tags or [],
                },
                check_duplicate=False,
            )
            return str(record["id"])

    def records(self, name: str | None = None, rtype: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(r)
                for r in self.state.records.values()
                if (name is None or r["name"] == name.rstrip(".").lower())
                and (rtype is None or r["type"] == rtype.upper())
            ]

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        retry_after: float | None = None,
        code: int | None = None,
        message: str | None = None,
    ) -> None:
        """Make the next ``count`` API calls answer ``status`` (401, 403, 429, 500...)."""
        with self.lock:
            self.state.failures.append(_Failure(status, count, retry_after, code, message))

    @property
    def calls(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.state.calls)

    def reset(self) -> None:
        with self.lock:
            self.state = _State()

    # ----------------------------------------------------------------- the API

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One API call -> (status, envelope, extra headers)."""
        with self.lock:
            self.state.calls.append((method, path))
            try:
                self._maybe_fail()
                if token not in self.tokens:
                    raise ApiError(401, 10000, "Authentication error")
                result, info = self._route(method, path, query, body)
            except ApiError as exc:
                return (
                    exc.status,
                    {
                        "success": False,
                        "errors": [{"code": exc.code, "message": exc.message}],
                        "messages": [],
                        "result": None,
                    },
                    exc.headers,
                )
        envelope: dict[str, Any] = {
            "success": True,
            "errors": [],
            "messages": [],
            "result": result,
        }
        if info is not None:
            envelope["result_info"] = info
        return 200, envelope, {}

    def _maybe_fail(self) -> None:
        if not self.state.failures:
            return
        failure = self.state.failures[0]
        failure.count -= 1
        if failure.count <= 0:
            self.state.failures.pop(0)
        code, message = _DEFAULT_FAIL.get(failure.status, (10000, "Error"))
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        raise ApiError(failure.status, failure.code or code, failure.message or message, headers)

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[Any, dict[str, Any] | None]:
        if not path.startswith(PREFIX + "/"):
            raise ApiError(404, 7000, f"No route for that URI ({path})")
        parts = path[len(PREFIX) + 1 :].strip("/").split("/")
        if parts == ["user", "tokens", "verify"] and method == "GET":
            return {"id": "0" * 32, "status": "active", "expires_on": None}, None
        if parts[0] != "zones":
            raise ApiError(404, 7000, "No route for that URI")
        if len(parts) == 1 and method == "GET":
            zones = list(self.state.zones.values())
            names = _first(query, "name", "name.equal")
            if names is not None:
                zones = [z for z in zones if z["name"] == names.rstrip(".").lower()]
            if (status := _first(query, "status")) is not None:
                zones = [z for z in zones if z["status"] == status]
            return _page(zones, query, default_per_page=20)
        zone = self.state.zones.get(parts[1])
        if zone is None:
            raise ApiError(
                400,
                7003,
                f"Could not route to /zones/{parts[1]}, perhaps your object identifier is invalid?",
            )
        if len(parts) == 2 and method == "GET":
            return zone, None
        if parts[2] != "dns_records":
            raise ApiError(404, 7000, "No route for that URI")
        zone_id = str(zone["id"])
        if len(parts) == 3:
            if method == "GET":
                return self._list(zone_id, query)
            if method == "POST":
                return self._new_record(zone_id, _object(body)), None
        elif len(parts) == 4 and parts[3] == "batch" and method == "POST":
            return self._batch(zone_id, _object(body)), None
        elif len(parts) == 4:
            record = self._record(zone_id, parts[3])
            if method == "GET":
                return record, None
            if method == "PUT":
                return self._put(record, _object(body)), None
            if method == "PATCH":
                return self._patch(record, _object(body)), None
            if method == "DELETE":
                del self.state.records[record["id"]]
                return {"id": record["id"]}, None
        raise ApiError(405, 10405, f"Method {method} not allowed for this route")

    def _list(self, zone_id: str, query: dict[str, list[str]]) -> tuple[Any, dict[str, Any]]:
        records = [r for r in self.state.records.values() if r["zone_id"] == zone_id]
        name = _first(query, "name", "name.exact")
        if name is not None:
            records = [r for r in records if r["name"] == name.rstrip(".").lower()]
        if (rtype := _first(query, "type")) is not None:
            records = [r for r in records if r["type"] == rtype.upper()]
        if (content := _first(query, "content", "content.exact")) is not None:
            records = [r for r in records if r["content"] == content]
        if (proxied := _first(query, "proxied")) is not None:
            records = [r for r in records if r["proxied"] == (proxied.lower() == "true")]
        records.sort(key=lambda r: (r["type"], r["name"], r["content"]))
        return _page(records, query, default_per_page=100)

    def _record(self, zone_id: str, record_id: str) -> dict[str, Any]:
        record = self.state.records.get(record_id)
        if record is None or record["zone_id"] != zone_id:
            raise ApiError(404, 81044, "Record does not exist.")
        return record

    def _validated(
        self,
        zone_id: str,
        data: dict[str, Any],
        *,
        partial: bool = False,
        base: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Merge ``data`` over ``base`` and check what Cloudflare would check."""
        zone_name = str(self.state.zones[zone_id]["name"])
        merged: dict[str, Any] = dict(base or {})
        for key in ("name", "type", "content", "ttl", "proxied", "comment", "tags"):
            if key in data:
                merged[key] = data[key]
        for key in ("name", "type", "content"):
            if not merged.get(key):
                raise ApiError(
                    400,
                    9000 + ("name", "type", "content").index(key) * 7,
                    f"DNS record {key} is required",
                )
        name = str(merged["name"]).rstrip(".").lower()
        if name == "@":
            name = zone_name
        elif name != zone_name and not name.endswith("." + zone_name):
            name = f"{name}.{zone_name}"
        merged["name"] = name
        merged["type"] = str(merged["type"]).upper()
        content = str(merged["content"])
        if merged["type"] == "A":
            try:
                ipaddress.IPv4Address(content)
            except ValueError:
                raise ApiError(
                    400, 9005, "Content for A record must be a valid IPv4 address."
                ) from None
        if merged["type"] == "AAAA":
            try:
                content = str(ipaddress.IPv6Address(content))
            except ValueError:
                raise ApiError(
                    400, 9006, "Content for AAAA record must be a valid IPv6 address."
                ) from None
        merged["content"] = content
        proxied = bool(merged.get("proxied") or False)
        if proxied and merged["type"] not in PROXIABLE:
            raise ApiError(400, 9004, "This record type cannot be proxied.")
        merged["proxied"] = proxied
        ttl = merged.get("ttl", 1)
        if not isinstance(ttl, int) or isinstance(ttl, bool):
            raise ApiError(400, 9021, "Invalid TTL. Must be an integer.")
        if proxied:
            ttl = 1  # proxied records are always "automatic"
        elif ttl != 1 and not self.min_ttl <= ttl <= 86400:
            raise ApiError(
                400,
                9021,
                f"Invalid TTL. Must be between {self.min_ttl} and 86400 seconds, "
                "or 1 for Automatic.",
            )
        merged["ttl"] = ttl
        return merged

    def _duplicate(self, zone_id: str, record: dict[str, Any], ignore: set[str]) -> None:
        for other in self.state.records.values():
            if (
                other["zone_id"] == zone_id
                and other["id"] not in ignore
                and (other["name"], other["type"], other["content"])
                == (record["name"], record["type"], record["content"])
            ):
                raise ApiError(400, 81058, "An identical record already exists.")

    def _new_record(
        self, zone_id: str, data: dict[str, Any], *, check_duplicate: bool = True
    ) -> dict[str, Any]:
        merged = self._validated(zone_id, data)
        if check_duplicate:
            self._duplicate(zone_id, merged, set())
        now = _now()
        record = {
            "id": _id(),
            "zone_id": zone_id,
            "zone_name": self.state.zones[zone_id]["name"],
            "name": merged["name"],
            "type": merged["type"],
            "content": merged["content"],
            "proxiable": merged["type"] in PROXIABLE,
            "proxied": merged["proxied"],
            "ttl": merged["ttl"],
            "settings": {},
            "meta": {},
            "comment": merged.get("comment"),
            "tags": list(merged.get("tags") or []),
            "created_on": now,
            "modified_on": now,
        }
        self.state.records[record["id"]] = record
        return record

    def _put(self, record: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        # PUT overwrites: what the body leaves out goes back to its default.
        base: dict[str, Any] = {"ttl": 1, "proxied": False, "comment": None, "tags": []}
        merged = self._validated(record["zone_id"], data, base=base)
        self._duplicate(record["zone_id"], merged, {record["id"]})
        record.update({k: merged[k] for k in ("name", "type", "content", "ttl", "proxied")})
        record["comment"] = merged.get("comment")
        record["tags"] = list(merged.get("tags") or [])
        record["modified_on"] = _now()
        return record

    def _patch(self, record: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        if "proxied" not in data and record["proxied"] and "ttl" in data:
            data = {k: v for k, v in data.items() if k != "ttl"}  # stays automatic
        merged = self._validated(record["zone_id"], data, base=record)
        self._duplicate(record["zone_id"], merged, {record["id"]})
        record.update({k: merged[k] for k in ("name", "type", "content", "ttl", "proxied")})
        record["comment"] = merged.get("comment")
        record["tags"] = list(merged.get("tags") or [])
        record["modified_on"] = _now()
        return record

    def _batch(self, zone_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Deletes, patches, puts, posts, in that order, all or nothing."""
        saved = {k: dict(v) for k, v in self.state.records.items()}
        out: dict[str, list[Any]] = {"deletes": [], "patches": [], "puts": [], "posts": []}
        try:
            for item in body.get("deletes") or []:
                record = self._record(zone_id, str(item.get("id")))
                del self.state.records[record["id"]]
                out["deletes"].append(record)
            for item in body.get("patches") or []:
                record = self._record(zone_id, str(item.get("id")))
                out["patches"].append(dict(self._patch(record, item)))
            for item in body.get("puts") or []:
                record = self._record(zone_id, str(item.get("id")))
                out["puts"].append(dict(self._put(record, item)))
            for item in body.get("posts") or []:
                out["posts"].append(dict(self._new_record(zone_id, item)))
        except ApiError:
            self.state.records = saved
            raise
        return out

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "zones": list(self.state.zones.values()),
                "records": list(self.state.records.values()),
                "calls": [list(c) for c in self.state.calls],
                "pending_failures": [vars(f) for f in self.state.failures],
            }

    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, dict) else {}
        if method == "GET" and path == "/state":
            return 200, self.snapshot()
        if method == "POST" and path == "/reset":
            self.reset()
            return 200, {"ok": True}
        if method == "POST" and path == "/fail":
            self.fail_next(
                int(data.get("status", 500)),
                count=int(data.get("count", 1)),
                retry_after=data.get("retry_after"),
                code=data.get("code"),
                message=data.get("message"),
            )
            return 200, {"ok": True}
        if method == "POST" and path == "/zones":
            return 200, {"id": self.add_zone(str(data["name"]))}
        if method == "POST" and path == "/records":
            try:
                record_id = self.add_record(
                    str(data["zone"]),
                    str(data["name"]),
                    str(data.get("type", "A")),
                    str(data["content"]),
                    ttl=int(data.get("ttl", 300)),
                    proxied=bool(data.get("proxied", False)),
                )
            except ApiError as exc:
                return 400, {"error": exc.message}
            return 200, {"id": record_id}
        return 404, {"error": f"no control route {method} {path}"}


def _first(query: dict[str, list[str]], *keys: str) -> str | None:
    for key in keys:
        if query.get(key):
            return query[key][0]
    return None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, 9207, "Request body is invalid.")
    return body


def _page(
    items: list[dict[str, Any]], query: dict[str, list[str]], *, default_per_page: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    page = max(1, int(float(_first(query, "page") or 1)))
    per_page = max(1, min(5000, int(float(_first(query, "per_page") or default_per_page))))
    chunk = items[(page - 1) * per_page : page * per_page]
    total_pages = max(1, -(-len(items) // per_page))
    return [dict(i) for i in chunk], {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": len(items),
        "total_pages": total_pages,
    }


class _Handler(BaseHTTPRequestHandler):
    double: CloudflareDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if url.path.startswith("/__control"):
            status, payload = self.double.control(method, url.path[len("/__control") :], body)
            self._send(status, payload)
            return
        auth = self.headers.get("Authorization") or ""
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        status, envelope, headers = self.double.handle(
            method, url.path, parse_qs(url.query), body, token
        )
        self._send(status, envelope, headers)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="test-token")
    parser.add_argument("--min-ttl", type=int, default=60)
    parser.add_argument("--zone", action="append", default=[], help="zone to create")
    parser.add_argument(
        "--record",
        action="append",
        default=[],
        help="NAME:TYPE:CONTENT[:proxied] in the first --zone",
    )
    args = parser.parse_args(argv)
    if not args.host.startswith("127."):
        parser.error("the double listens on loopback only (127.0.0.0/8)")
    double = CloudflareDouble(
        token=args.token, host=args.host, port=args.port, min_ttl=args.min_ttl
    )
    for zone in args.zone:
        double.add_zone(zone)
    for spec in args.record:
        if not args.zone:
            parser.error("--record needs a --zone")
        name, rtype, content, *rest = spec.split(":", 3)
        double.add_record(args.zone[0], name, rtype, content, proxied=rest == ["proxied"])
    double.start()
    print(f"cloudflare double listening on {double.base_url}", flush=True)
    double.serve_forever()


if __name__ == "__main__":
    main()
