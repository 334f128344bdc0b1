"""A Compute Engine v1 and Cloud DNS v1 REST double, driven through the real Google SDKs.

It speaks the JSON shapes of the public discovery documents (``compute/v1`` and
``dns/v1``) for the calls the ``gcp`` provider and the ``clouddns`` backend make:

* Compute: ``projects.get``, ``zones.get``, ``machineTypes.get``, ``images.get``,
  ``images.getFromFamily``, ``instances.insert/get/list/aggregatedList/stop/start/delete``,
  ``zoneOperations.get/wait``. Instances go PROVISIONING -> STAGING -> RUNNING on a clock;
  every instance gets ``networkInterfaces[0].accessConfigs[0].natIP`` in 127.78.0.0/16,
  where nothing listens (tests only ever talk to 127.0.0.0/8).
* Cloud DNS: ``projects.get``, ``managedZones.list/get/create/delete``,
  ``resourceRecordSets.list`` (``name``/``type`` filters), ``changes.create/get/list``
  with the real preconditions (a deletion must match the current set exactly: 412
  ``conditionNotMet``; an addition over an existing set: 409 ``alreadyExists``).

Fault injection (``/_control/...`` over HTTP, or the same methods on :class:`GceDouble`
in-process): make the next matching call fail with any error of the provider's mapping
table, either as an HTTP error or inside the finished operation, and suspend a whole
project (every call for it answers 403, like a suspended consumer).

Run standalone: ``python -m tests.doubles.gce --port 8089`` (``--help`` for options).
In tests: ``with GceDouble() as gce: ...`` or the ``gce_double`` pytest fixture.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import unquote
from urllib.parse import urlsplit

DEFAULT_PROJECT = "test-project"
DEFAULT_ZONES = ("us-central1-a", "us-central1-b", "europe-west1-b")
DEFAULT_MACHINE_TYPES = ("e2-micro", "e2-small", "e2-medium", "n2-standard-2")
# (project, name, family)
DEFAULT_IMAGES = (
    ("debian-cloud", "debian-12-bookworm-v20261110", "debian-12"),
    ("ubuntu-os-cloud", "ubuntu-2404-noble-amd64-v20261101", "ubuntu-2404-lts-amd64"),
)
NAT_NETWORK = "127.78"  # 127.78.0.0/16: loopback, nothing listens there

NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")

# --------------------------------------------------------------------------- errors

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


@dataclass(frozen=True)
class ErrorSpec:
    """One error the double can answer with, as the HTTP body and as an operation error."""

    http_status: int
    status: str  # google.rpc status name in the JSON error body
    reason: str  # error.errors[].reason
    message: str
    info_reason: str | None = None  # ErrorInfo reason in error.details
    op_code: str | None = None  # error.errors[].code when it arrives inside an operation


ERRORS: dict[str, ErrorSpec] = {
    "401": ErrorSpec(
        401,
        "UNAUTHENTICATED",
        "authError",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential.",
    ),
    "accountDisabled": ErrorSpec(
        403,
        "PERMISSION_DENIED",
        "accountDisabled",
        "The project to be billed is associated with an absent billing account.",
    ),
    "billingNotEnabled": ErrorSpec(
        403,
        "PERMISSION_DENIED",
        "billingNotEnabled",
        "Project {project} has billing disabled. Please enable it.",
    ),
    "BILLING_DISABLED": ErrorSpec(
        403,
        "PERMISSION_DENIED",
        "accessNotConfigured",
        "This API method requires billing to be enabled. Please enable billing on project "
        "{project} by visiting the console then retry.",
        info_reason="BILLING_DISABLED",
    ),
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT": ErrorSpec(
        403,
        "PERMISSION_DENIED",
        "insufficientPermissions",
        "Request had insufficient authentication scopes.",
        info_reason="ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    ),
    "IAM_PERMISSION_DENIED": ErrorSpec(
        403,
        "PERMISSION_DENIED",
        "forbidden",
        "Required 'compute.instances.create' permission for 'projects/{project}'",
        info_reason="IAM_PERMISSION_DENIED",
    ),
    "forbidden": ErrorSpec(
        403,
        "PERMISSION_DENIED",
        "forbidden",
        "Required 'compute.projects.get' permission for 'projects/{project}'",
    ),
    "CONSUMER_SUSPENDED": ErrorSpec(
        403,
        "PERMISSION_DENIED",
        "forbidden",
        "Permission denied: Consumer 'project:{project}' has been suspended.",
        info_reason="CONSUMER_SUSPENDED",
    ),
    "ZONE_RESOURCE_POOL_EXHAUSTED": ErrorSpec(
        503,
        "UNAVAILABLE",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "The zone 'projects/{project}/zones/{zone}' does not have enough resources available "
        "to fulfill the request.  Try a different zone, or try again later.",
        op_code="ZONE_RESOURCE_POOL_EXHAUSTED",
    ),
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS": ErrorSpec(
        503,
        "UNAVAILABLE",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "The zone 'projects/{project}/zones/{zone}' does not have enough resources available "
        "to fulfill the request.  '(resource type:compute)'.",
        op_code="ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
    ),
    "RESOURCE_NOT_READY": ErrorSpec(
        400,
        "FAILED_PRECONDITION",
        "RESOURCE_NOT_READY",
        "The resource 'projects/{project}/zones/{zone}' is not ready",
        op_code="RESOURCE_NOT_READY",
    ),
    "UNSUPPORTED_OPERATION": ErrorSpec(
        400,
        "INVALID_ARGUMENT",
        "UNSUPPORTED_OPERATION",
        "The requested machine type is not supported in zone '{zone}'.",
        op_code="UNSUPPORTED_OPERATION",
    ),
    "QUOTA_EXCEEDED": ErrorSpec(
        403,
        "PERMISSION_DENIED",
        "quotaExceeded",
        "Quota 'CPUS' exceeded.  Limit: 8.0 in region {region}.",
        op_code="QUOTA_EXCEEDED",
    ),
    "429": ErrorSpec(
        429,
        "RESOURCE_EXHAUSTED",
        "rateLimitExceeded",
        "Rate Limit Exceeded",
        info_reason="RATE_LIMIT_EXCEEDED",
    ),
    "rateLimitExceeded": ErrorSpec(
        403,
        "PERMISSION_DENIED",
        "rateLimitExceeded",
        "Rate Limit Exceeded",
    ),
    "500": ErrorSpec(500, "INTERNAL", "backendError", "Internal error. Please try again."),
    "503": ErrorSpec(503, "UNAVAILABLE", "backendError", "The service is currently unavailable."),
    "404": ErrorSpec(404, "NOT_FOUND", "notFound", "The resource '{resource}' was not found"),
}
# "drop" is also accepted: the connection is closed without an answer.
SPECIAL_FAULTS = ("drop",)


def _now_rfc3339() -> str:
    """Compute's timestamps: RFC 3339 with an offset (``2026-11-28T02:51:15.232-08:00``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _now_zulu() -> str:
    """Cloud DNS's timestamps: ``2026-11-28T10:51:15.232Z`` (the SDK parses exactly this)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error_body(spec: ErrorSpec, ctx: dict[str, str]) -> dict[str, Any]:
    message = spec.message.format_map(_Default(ctx))
    error: dict[str, Any] = {
        "code": spec.http_status,
        "message": message,
        "errors": [{"message": message, "domain": "global", "reason": spec.reason}],
        "status": spec.status,
    }
    if spec.info_reason:
        error["details"] = [
            {
                "@type": ERROR_INFO,
                "reason": spec.info_reason,
                "domain": "googleapis.com",
                "metadata": {
                    "service": "compute.googleapis.com",
                    "consumer": ctx.get("project", ""),
                },
            }
        ]
    return {"error": error}


class _Default(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "unknown"


class HttpError(Exception):
    def __init__(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
            }
        }
        self.headers = headers or {}

    @classmethod
    def from_spec(cls, spec: ErrorSpec, ctx: dict[str, str]) -> HttpError:
        err = cls(spec.http_status, spec.reason, "")
        err.body = _error_body(spec, ctx)
        return err


class Drop(Exception):
    """Close the connection without an answer."""


# --------------------------------------------------------------------------- state


@dataclass
class Fault:
    """Make the next ``times`` calls matching ``method`` (discovery id such as
    ``compute.instances.insert``, or ``*``) fail with ``error``."""

    method: str
    error: str
    where: str = "http"  # "http" or "operation" (mutating compute calls only)
    zone: str | None = None
    project: str | None = None
    times: int = 1
    leave_instance: bool = False  # operation faults on insert: the half-made VM stays
    retry_after: float | None = None
    apply_first: bool = False  # http faults: do the call, then lose its answer

    def matches(self, method: str, project: str | None, zone: str | None) -> bool:
        if self.method not in ("*", method):
            return False
        if self.project and project != self.project:
            return False
        return not (self.zone and zone != self.zone)


@dataclass
class Operation:
    name: str
    id: str
    project: str
    zone: str
    op_type: str
    target_link: str
    target_id: str
    insert_time: str
    created: float
    done_at: float
    error: tuple[str, ErrorSpec] | None = None
    end_time: str | None = None

    def done(self, now: float) -> bool:
        return now >= self.done_at


@dataclass
class Instance:
    body: dict[str, Any]
    created: float
    stop_at: float | None = None  # STOPPING until stop_done
    stop_done: float | None = None
    start_done: float | None = None
    delete_at: float | None = None


@dataclass
class ManagedZone:
    body: dict[str, Any]
    rrsets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    change_done_at: dict[str, float] = field(default_factory=dict)


class GceState:
    """Everything the double knows. All methods hold ``lock``."""

    def __init__(
        self,
        *,
        projects: tuple[str, ...] = (DEFAULT_PROJECT,),
        zones: tuple[str, ...] = DEFAULT_ZONES,
        machine_types: tuple[str, ...] = DEFAULT_MACHINE_TYPES,
        op_delay: float = 0.05,
        provisioning: float = 0.05,
        staging: float = 0.05,
        stop_delay: float = 0.05,
        wait_max: float = 2.0,
        change_delay: float = 0.05,
    ) -> None:
        self.lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._ips = itertools.count(1)
        self.base_url = "http://127.0.0.1"
        self.projects = list(projects)
        self.zones = list(zones)
        self.zone_status: dict[str, str] = {}
        self.machine_types = list(machine_types)
        self.images: dict[tuple[str, str], dict[str, Any]] = {}
        for project, name, family in DEFAULT_IMAGES:
            self.add_image(project, name, family)
        self.op_delay = op_delay
        self.provisioning = provisioning
        self.staging = staging
        self.stop_delay = stop_delay
        self.wait_max = wait_max
        self.change_delay = change_delay
        self.instances: dict[tuple[str, str, str], Instance] = {}
        self.operations: dict[tuple[str, str, str], Operation] = {}
        self.managed_zones: dict[tuple[str, str], ManagedZone] = {}
        self.faults: list[Fault] = []
        self.suspended: dict[str, str] = {}
        self.calls: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- helpers

    def url(self, path: str) -> str:
        return f"{self.base_url}/compute/v1/{path}"

    def next_id(self) -> str:
        # uint64 ids travel as strings in the JSON API
        return str(4_000_000_000_000_000_000 + next(self._ids))

    def next_nat_ip(self) -> str:
        n = next(self._ips)
        return f"{NAT_NETWORK}.{(n // 254) % 256}.{n % 254 + 1}"

    def add_image(self, project: str, name: str, family: str | None = None) -> None:
        with self.lock:
            self.images[(project, name)] = {
                "kind": "compute#image",
                "id": self.next_id(),
                "creationTimestamp": _now_rfc3339(),
                "name": name,
                "family": family or "",
                "sourceType": "RAW",
                "status": "READY",
                "archiveSizeBytes": "1234567890",
                "diskSizeGb": "10",
                "architecture": "X86_64",
                "selfLink": self.url(f"projects/{project}/global/images/{name}"),
            }

    # ---------------------------------------------------------------- control

    def add_fault(self, fault: Fault) -> None:
        if fault.error not in ERRORS and fault.error not in SPECIAL_FAULTS:
            raise ValueError(f"unknown error {fault.error!r}; known: {sorted(ERRORS)}")
        if fault.where not in ("http", "operation"):
            raise ValueError("where must be 'http' or 'operation'")
        if fault.where == "operation" and ERRORS.get(fault.error) is None:
            raise ValueError(f"{fault.error!r} cannot be an operation error")
        with self.lock:
            self.faults.append(fault)

    def take_fault(
        self, method: str, project: str | None, zone: str | None, where: str
    ) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.where == where and fault.matches(method, project, zone):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def suspend(self, project: str, error: str = "CONSUMER_SUSPENDED") -> None:
        if error not in ERRORS:
            raise ValueError(f"unknown error {error!r}")
        with self.lock:
            self.suspended[project] = error

    def resume(self, project: str | None = None) -> None:
        with self.lock:
            if project is None:
                self.suspended.clear()
            else:
                self.suspended.pop(project, None)

    def reset(self) -> None:
        with self.lock:
            self.instances.clear()
            self.operations.clear()
            for mz in self.managed_zones.values():
                mz.rrsets = {k: v for k, v in mz.rrsets.items() if k[1] in ("SOA", "NS")}
                mz.changes.clear()
                mz.change_done_at.clear()
            self.faults.clear()
            self.suspended.clear()
            self.calls.clear()
            self.zone_status.clear()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            self.tick()
            return {
                "instances": [self.render_instance(i) for i in self.instances.values()],
                "operations": [self.render_op(o) for o in self.operations.values()],
                "faults": [f.__dict__ for f in self.faults],
                "suspended": dict(self.suspended),
                "calls": list(self.calls),
                "managed_zones": {
                    f"{p}/{n}": [copy.deepcopy(r) for r in mz.rrsets.values()]
                    for (p, n), mz in self.managed_zones.items()
                },
            }

    # ---------------------------------------------------------------- clock

    def tick(self) -> None:
        """Apply everything that is due: finished stops, deletions."""
        now = time.monotonic()
        for key, inst in list(self.instances.items()):
            if inst.delete_at is not None and now >= inst.delete_at:
                del self.instances[key]
            elif inst.stop_done is not None and now >= inst.stop_done:
                inst.body["status"] = "TERMINATED"
                inst.body["lastStopTimestamp"] = _now_rfc3339()
                for nic in inst.body.get("networkInterfaces", []):
                    for ac in nic.get("accessConfigs", []):
                        ac.pop("natIP", None)  # an ephemeral IP goes away with a stop
                inst.stop_at = inst.stop_done = None
            elif inst.start_done is not None and now >= inst.start_done:
                inst.start_done = None
                inst.created = now - self.provisioning  # STAGING -> RUNNING again
                inst.body["status"] = "STAGING"
                for nic in inst.body.get("networkInterfaces", []):
                    for ac in nic.get("accessConfigs", []):
                        ac["natIP"] = self.next_nat_ip()

    def render_instance(self, inst: Instance) -> dict[str, Any]:
        body = copy.deepcopy(inst.body)
        status = body["status"]
        if status in ("PROVISIONING", "STAGING"):
            age = time.monotonic() - inst.created
            if age < self.provisioning:
                status = "PROVISIONING"
            elif age < self.provisioning + self.staging:
                status = "STAGING"
            else:
                status = "RUNNING"
                inst.body["status"] = "RUNNING"
                inst.body.setdefault("lastStartTimestamp", _now_rfc3339())
            body["status"] = status
        if inst.stop_at is not None or inst.delete_at is not None:
            body["status"] = "STOPPING"
        if body["status"] == "PROVISIONING":
            for nic in body.get("networkInterfaces", []):
                for ac in nic.get("accessConfigs", []):
                    ac.pop("natIP", None)  # assigned from STAGING on
        return body

    def render_op(self, op: Operation) -> dict[str, Any]:
        now = time.monotonic()
        done = op.done(now)
        body: dict[str, Any] = {
            "kind": "compute#operation",
            "id": op.id,
            "name": op.name,
            "zone": self.url(f"projects/{op.project}/zones/{op.zone}"),
            "operationType": op.op_type,
            "targetLink": op.target_link,
            "targetId": op.target_id,
            "status": "DONE" if done else ("RUNNING" if now - op.created > 0.01 else "PENDING"),
            "user": "anonymous@gce-double.invalid",
            "progress": 100 if done else 0,
            "insertTime": op.insert_time,
            "startTime": op.insert_time,
            "selfLink": self.url(f"projects/{op.project}/zones/{op.zone}/operations/{op.name}"),
        }
        if done:
            if op.end_time is None:
                op.end_time = _now_rfc3339()
            body["endTime"] = op.end_time
            if op.error is not None:
                name, spec = op.error
                ctx = {"project": op.project, "zone": op.zone, "region": _region(op.zone)}
                message = spec.message.format_map(_Default(ctx))
                err: dict[str, Any] = {"code": spec.op_code or name, "message": message}
                if name == "QUOTA_EXCEEDED":
                    err["errorDetails"] = [
                        {
                            "quotaInfo": {
                                "metricName": "compute.googleapis.com/cpus",
                                "limitName": "CPUS-per-project-region",
                                "dimensions": {"region": _region(op.zone)},
                                "limit": 8.0,
                            }
                        }
                    ]
                body["error"] = {"errors": [err]}
                body["httpErrorStatusCode"] = spec.http_status
                body["httpErrorMessage"] = _HTTP_PHRASES.get(spec.http_status, "ERROR")
        return body

    def new_op(
        self,
        project: str,
        zone: str,
        op_type: str,
        target_link: str,
        target_id: str,
        delay: float | None = None,
        error: tuple[str, ErrorSpec] | None = None,
    ) -> Operation:
        now = time.monotonic()
        suffix = hashlib.sha1(self.next_id().encode()).hexdigest()[:13]
        name = f"operation-{int(time.time() * 1000)}-{suffix}"
        op = Operation(
            name=name,
            id=self.next_id(),
            project=project,
            zone=zone,
            op_type=op_type,
            target_link=target_link,
            target_id=target_id,
            insert_time=_now_rfc3339(),
            created=now,
            done_at=now + (self.op_delay if delay is None else delay),
            error=error,
        )
        self.operations[(project, zone, name)] = op
        return op


_HTTP_PHRASES = {
    400: "BAD REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT FOUND",
    409: "CONFLICT",
    429: "TOO MANY REQUESTS",
    500: "INTERNAL SERVER ERROR",
    503: "SERVICE UNAVAILABLE",
}


def _region(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _last(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- filters

_TERM = re.compile(
    r"""\(?\s*(?P<field>[A-Za-z][\w.\-]*)\s*(?P<op>!=|=|\beq\b|\bne\b)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s()]+)\s*\)?""",
    re.VERBOSE,
)


def _lookup(body: dict[str, Any], path: str) -> str | None:
    cur: Any = body
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return None if isinstance(cur, dict | list) else str(cur)


def matches_filter(body: dict[str, Any], expr: str | None) -> bool:
    """The subset of the Compute list filter syntax: ``field = value``, ``field != value``
    (exact), ``field eq regex`` / ``ne`` (full match), terms joined by spaces/AND."""
    if not expr or not expr.strip():
        return True
    rest = _TERM.sub("", expr)
    if re.sub(r"\bAND\b", "", rest).strip():
        raise HttpError(
            400,
            "invalid",
            f"Invalid value for field 'filter': '{expr}'. Invalid list filter expression.",
        )
    for m in _TERM.finditer(expr):
        value = m.group("value")
        if value[:1] in "\"'":
            value = value[1:-1]
        actual = _lookup(body, m.group("field"))
        op = m.group("op")
        if op in ("=", "!="):
            ok = actual == value
        else:
            ok = actual is not None and re.fullmatch(value, actual) is not None
        if op in ("!=", "ne"):
            ok = not ok
        if not ok:
            return False
    return True


def _page(items: list[Any], query: dict[str, str]) -> tuple[list[Any], str | None]:
    start = int(query.get("pageToken") or 0)
    size = int(query.get("maxResults") or 500)
    chunk = items[start : start + size]
    token = str(start + size) if start + size < len(items) else None
    return chunk, token


# --------------------------------------------------------------------------- routes

P = r"(?P<project>[^/]+)"
Z = r"(?P<zone>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(f"^{p}$"), name)
    for m, p, name in [
        ("GET", rf"/compute/v1/projects/{P}", "compute.projects.get"),
        ("GET", rf"/compute/v1/projects/{P}/zones/{Z}", "compute.zones.get"),
        (
            "GET",
            rf"/compute/v1/projects/{P}/zones/{Z}/machineTypes/(?P<mt>[^/]+)",
            "compute.machineTypes.get",
        ),
        (
            "GET",
            rf"/compute/v1/projects/{P}/global/images/family/(?P<family>[^/]+)",
            "compute.images.getFromFamily",
        ),
        ("GET", rf"/compute/v1/projects/{P}/global/images/(?P<image>[^/]+)", "compute.images.get"),
        (
            "GET",
            rf"/compute/v1/projects/{P}/aggregated/instances",
            "compute.instances.aggregatedList",
        ),
        ("POST", rf"/compute/v1/projects/{P}/zones/{Z}/instances", "compute.instances.insert"),
        ("GET", rf"/compute/v1/projects/{P}/zones/{Z}/instances", "compute.instances.list"),
        (
            "GET",
            rf"/compute/v1/projects/{P}/zones/{Z}/instances/(?P<instance>[^/]+)",
            "compute.instances.get",
        ),
        (
            "DELETE",
            rf"/compute/v1/projects/{P}/zones/{Z}/instances/(?P<instance>[^/]+)",
            "compute.instances.delete",
        ),
        (
            "POST",
            rf"/compute/v1/projects/{P}/zones/{Z}/instances/(?P<instance>[^/]+)/stop",
            "compute.instances.stop",
        ),
        (
            "POST",
            rf"/compute/v1/projects/{P}/zones/{Z}/instances/(?P<instance>[^/]+)/start",
            "compute.instances.start",
        ),
        (
            "GET",
            rf"/compute/v1/projects/{P}/zones/{Z}/operations/(?P<operation>[^/]+)",
            "compute.zoneOperations.get",
        ),
        (
            "POST",
            rf"/compute/v1/projects/{P}/zones/{Z}/operations/(?P<operation>[^/]+)/wait",
            "compute.zoneOperations.wait",
        ),
        ("GET", rf"/dns/v1/projects/{P}", "dns.projects.get"),
        ("GET", rf"/dns/v1/projects/{P}/managedZones", "dns.managedZones.list"),
        ("POST", rf"/dns/v1/projects/{P}/managedZones", "dns.managedZones.create"),
        ("GET", rf"/dns/v1/projects/{P}/managedZones/(?P<mz>[^/]+)", "dns.managedZones.get"),
        ("DELETE", rf"/dns/v1/projects/{P}/managedZones/(?P<mz>[^/]+)", "dns.managedZones.delete"),
        (
            "GET",
            rf"/dns/v1/projects/{P}/managedZones/(?P<mz>[^/]+)/rrsets",
            "dns.resourceRecordSets.list",
        ),
        ("POST", rf"/dns/v1/projects/{P}/managedZones/(?P<mz>[^/]+)/changes", "dns.changes.create"),
        ("GET", rf"/dns/v1/projects/{P}/managedZones/(?P<mz>[^/]+)/changes", "dns.changes.list"),
        (
            "GET",
            rf"/dns/v1/projects/{P}/managedZones/(?P<mz>[^/]+)/changes/(?P<change>[^/]+)",
            "dns.changes.get",
        ),
    ]
]

MUTATING = {
    "compute.instances.insert",
    "compute.instances.delete",
    "compute.instances.stop",
    "compute.instances.start",
}


class Api:
    """The handlers: ``handle(method, path, query, body) -> (status, json)``."""

    def __init__(self, state: GceState) -> None:
        self.s = state

    def handle(
        self, verb: str, path: str, query: dict[str, str], body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        s = self.s
        for route_verb, pattern, name in ROUTES:
            if route_verb != verb:
                continue
            m = pattern.match(path)
            if not m:
                continue
            params = {k: unquote(v) for k, v in m.groupdict().items()}
            project = params.get("project")
            zone = params.get("zone")
            with s.lock:
                s.calls.append(
                    {
                        "method": name,
                        "path": path,
                        "query": dict(query),
                        "zone": zone,
                        "t": time.monotonic(),
                    }
                )
                s.tick()
                ctx = {
                    "project": project or "",
                    "zone": zone or "",
                    "region": _region(zone) if zone else "",
                    "resource": path.split("/v1/", 1)[-1],
                }
                if project in s.suspended:
                    raise HttpError.from_spec(ERRORS[s.suspended[project]], ctx)
                fault = s.take_fault(name, project, zone, "http")
                if fault is not None:
                    if fault.apply_first and name != "compute.zoneOperations.wait":
                        handler = getattr(self, name.replace(".", "_"))
                        if name in MUTATING:
                            handler(params, query, body, None)
                        else:
                            handler(params, query, body)
                    if fault.error == "drop":
                        raise Drop()
                    err = HttpError.from_spec(ERRORS[fault.error], ctx)
                    if fault.retry_after is not None:
                        err.headers["Retry-After"] = str(fault.retry_after)
                    raise err
                op_fault = (
                    s.take_fault(name, project, zone, "operation") if name in MUTATING else None
                )
                handler = getattr(self, name.replace(".", "_"))
                if name in MUTATING:
                    result = handler(params, query, body, op_fault)
                elif name == "compute.zoneOperations.wait":
                    result = None
                else:
                    result = handler(params, query, body)
            if name == "compute.zoneOperations.wait":
                result = self.compute_zoneOperations_wait(params, query, body)
            return 200, result, {}
        raise HttpError(404, "notFound", f"The requested URL {path} was not found on this server.")

    # ---------------------------------------------------------------- compute

    def _project(self, project: str) -> None:
        if project not in self.s.projects:
            raise HttpError(404, "notFound", f"The resource 'projects/{project}' was not found")

    def _zone(self, project: str, zone: str) -> None:
        self._project(project)
        if zone not in self.s.zones:
            raise HttpError(
                404, "notFound", f"The resource 'projects/{project}/zones/{zone}' was not found"
            )

    def compute_projects_get(self, p: dict[str, str], q: dict[str, str], b: Any) -> dict[str, Any]:
        self._project(p["project"])
        return {
            "kind": "compute#project",
            "id": str(abs(hash(p["project"])) % 10**12),
            "creationTimestamp": "2026-01-01T00:00:00.000-00:00",
            "name": p["project"],
            "selfLink": self.s.url(f"projects/{p['project']}"),
            "defaultServiceAccount": "123456789-compute@developer.gserviceaccount.com",
            "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
            "defaultNetworkTier": "PREMIUM",
            "quotas": [
                {"metric": "CPUS_ALL_REGIONS", "limit": 32.0, "usage": 0.0},
                {"metric": "INSTANCES", "limit": 100.0, "usage": float(len(self.s.instances))},
            ],
        }

    def compute_zones_get(self, p: dict[str, str], q: dict[str, str], b: Any) -> dict[str, Any]:
        self._zone(p["project"], p["zone"])
        zone = p["zone"]
        return {
            "kind": "compute#zone",
            "id": str(2000 + self.s.zones.index(zone)),
            "creationTimestamp": "2014-05-30T18:35:16.575-07:00",
            "name": zone,
            "description": zone,
            "status": self.s.zone_status.get(zone, "UP"),
            "region": self.s.url(f"projects/{p['project']}/regions/{_region(zone)}"),
            "selfLink": self.s.url(f"projects/{p['project']}/zones/{zone}"),
            "availableCpuPlatforms": ["Intel Cascade Lake", "AMD Milan"],
            "supportsPzs": False,
        }

    def compute_machineTypes_get(
        self, p: dict[str, str], q: dict[str, str], b: Any
    ) -> dict[str, Any]:
        self._zone(p["project"], p["zone"])
        mt = p["mt"]
        if mt not in self.s.machine_types:
            raise HttpError(
                404,
                "notFound",
                f"The resource 'projects/{p['project']}/zones/{p['zone']}/machineTypes/{mt}' "
                "was not found",
            )
        return {
            "kind": "compute#machineType",
            "id": str(3000 + self.s.machine_types.index(mt)),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
            "name": mt,
            "description": f"{mt} machine type",
            "guestCpus": 2,
            "memoryMb": 2048,
            "maximumPersistentDisks": 128,
            "maximumPersistentDisksSizeGb": "263168",
            "zone": p["zone"],
            "isSharedCpu": mt.startswith("e2-m") and mt != "e2-medium",
            "architecture": "X86_64",
            "selfLink": self.s.url(f"projects/{p['project']}/zones/{p['zone']}/machineTypes/{mt}"),
        }

    def compute_images_get(self, p: dict[str, str], q: dict[str, str], b: Any) -> dict[str, Any]:
        image = self.s.images.get((p["project"], p["image"]))
        if image is None:
            raise HttpError(
                404,
                "notFound",
                f"The resource 'projects/{p['project']}/global/images/{p['image']}' was not found",
            )
        return copy.deepcopy(image)

    def compute_images_getFromFamily(
        self, p: dict[str, str], q: dict[str, str], b: Any
    ) -> dict[str, Any]:
        found = [
            img
            for (proj, _), img in self.s.images.items()
            if proj == p["project"] and img["family"] == p["family"]
        ]
        if not found:
            raise HttpError(
                404,
                "notFound",
                f"The resource 'projects/{p['project']}/global/images/family/{p['family']}' "
                "was not found",
            )
        return copy.deepcopy(sorted(found, key=lambda i: i["name"])[-1])

    def _resolve_image(self, project: str, source: str) -> None:
        link = source.split("/compute/v1/", 1)[-1]
        m = re.match(
            r"^(?:projects/(?P<p>[^/]+)/)?global/images/(?:family/(?P<f>[^/]+)|(?P<n>[^/]+))$", link
        )
        if not m:
            if "/" in link:
                raise HttpError(
                    400,
                    "invalid",
                    "Invalid value for field "
                    f"'resource.disks[0].initializeParams.sourceImage': '{source}'.",
                )
            m = re.match(r"^(?P<n>.+)$", link)
            assert m is not None
        proj = m.groupdict().get("p") or project
        if m.groupdict().get("f"):
            self.compute_images_getFromFamily({"project": proj, "family": m.group("f")}, {}, None)
        else:
            self.compute_images_get({"project": proj, "image": m.group("n")}, {}, None)

    def compute_instances_insert(
        self, p: dict[str, str], q: dict[str, str], body: Any, fault: Fault | None
    ) -> dict[str, Any]:
        s = self.s
        project, zone = p["project"], p["zone"]
        self._zone(project, zone)
        if not isinstance(body, dict):
            raise HttpError(400, "required", "Required field 'resource' not specified")
        name = body.get("name", "")
        if not NAME_RE.match(name):
            raise HttpError(
                400,
                "invalid",
                f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
                "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
            )
        key = (project, zone, name)
        link = s.url(f"projects/{project}/zones/{zone}/instances/{name}")
        if key in s.instances:
            raise HttpError(
                409,
                "alreadyExists",
                f"The resource 'projects/{project}/zones/{zone}/instances/{name}' already exists",
            )
        mt = _last(body.get("machineType", ""))
        if mt not in s.machine_types:
            raise HttpError(
                400,
                "invalid",
                f"Invalid value for field 'resource.machineType': '{body.get('machineType', '')}'. "
                f"Machine type with name '{mt}' does not exist in zone '{zone}'.",
            )
        disks = body.get("disks") or []
        boot = next((d for d in disks if d.get("boot")), None)
        if boot is None:
            raise HttpError(400, "required", "Required field 'resource.disks' not specified")
        self._resolve_image(project, (boot.get("initializeParams") or {}).get("sourceImage", ""))
        inst_id = s.next_id()
        error = None
        create = True
        if fault is not None:
            error = (fault.error, ERRORS[fault.error])
            create = fault.leave_instance
        if create:
            s.instances[key] = Instance(
                body=self._instance_body(project, zone, inst_id, body), created=time.monotonic()
            )
        op = s.new_op(project, zone, "insert", link, inst_id, error=error)
        if create:
            s.instances[key].created = op.done_at
        return s.render_op(op)

    def _instance_body(
        self, project: str, zone: str, inst_id: str, req: dict[str, Any]
    ) -> dict[str, Any]:
        s = self.s
        name = req["name"]
        region = _region(zone)
        nics = []
        for i, nic in enumerate(req.get("networkInterfaces") or [{}]):
            network = nic.get("network") or "global/networks/default"
            network = s.url(
                network.split("/compute/v1/", 1)[-1]
                if "projects/" in network
                else f"projects/{project}/{network}"
            )
            subnetwork = nic.get("subnetwork") or f"regions/{region}/subnetworks/default"
            subnetwork = s.url(
                subnetwork.split("/compute/v1/", 1)[-1]
                if "projects/" in subnetwork
                else f"projects/{project}/{subnetwork}"
            )
            access = []
            for ac in nic.get("accessConfigs") or []:
                access.append(
                    {
                        "kind": "compute#accessConfig",
                        "type": ac.get("type", "ONE_TO_ONE_NAT"),
                        "name": ac.get("name", "External NAT"),
                        "natIP": ac.get("natIP") or s.next_nat_ip(),
                        "networkTier": ac.get("networkTier", "PREMIUM"),
                    }
                )
            n = next(s._ips)
            nics.append(
                {
                    "kind": "compute#networkInterface",
                    "network": network,
                    "subnetwork": subnetwork,
                    "networkIP": f"10.128.{n // 254 % 256}.{n % 254 + 1}",
                    "name": f"nic{i}",
                    "accessConfigs": access,
                    "fingerprint": hashlib.sha1(name.encode()).hexdigest()[:12],
                    "stackType": "IPV4_ONLY",
                }
            )
        disks = []
        for i, disk in enumerate(req.get("disks") or []):
            disk_name = (disk.get("initializeParams") or {}).get("diskName") or name
            disks.append(
                {
                    "kind": "compute#attachedDisk",
                    "type": disk.get("type", "PERSISTENT"),
                    "mode": disk.get("mode", "READ_WRITE"),
                    "source": s.url(f"projects/{project}/zones/{zone}/disks/{disk_name}"),
                    "deviceName": disk.get("deviceName") or f"persistent-disk-{i}",
                    "index": i,
                    "boot": bool(disk.get("boot")),
                    "autoDelete": bool(disk.get("autoDelete")),
                    "interface": disk.get("interface", "SCSI"),
                    "diskSizeGb": (disk.get("initializeParams") or {}).get("diskSizeGb", "10"),
                    "architecture": "X86_64",
                }
            )
        metadata = dict(req.get("metadata") or {})
        metadata["kind"] = "compute#metadata"
        metadata["fingerprint"] = hashlib.sha1(
            json.dumps(metadata, sort_keys=True).encode()
        ).hexdigest()[:12]
        body: dict[str, Any] = {
            "kind": "compute#instance",
            "id": inst_id,
            "creationTimestamp": _now_rfc3339(),
            "name": name,
            "description": req.get("description", ""),
            "tags": {**(req.get("tags") or {}), "fingerprint": "42WmSpB8rSM="},
            "machineType": s.url(
                f"projects/{project}/zones/{zone}/machineTypes/{_last(req['machineType'])}"
            ),
            "status": "PROVISIONING",
            "zone": s.url(f"projects/{project}/zones/{zone}"),
            "canIpForward": bool(req.get("canIpForward")),
            "networkInterfaces": nics,
            "disks": disks,
            "metadata": metadata,
            "serviceAccounts": req.get("serviceAccounts") or [],
            "selfLink": s.url(f"projects/{project}/zones/{zone}/instances/{name}"),
            "scheduling": req.get("scheduling")
            or {"onHostMaintenance": "MIGRATE", "automaticRestart": True, "preemptible": False},
            "cpuPlatform": "Unknown CPU Platform",
            "labels": dict(req.get("labels") or {}),
            "labelFingerprint": hashlib.sha1(
                json.dumps(req.get("labels") or {}, sort_keys=True).encode()
            ).hexdigest()[:12],
            "startRestricted": False,
            "deletionProtection": bool(req.get("deletionProtection")),
            "fingerprint": hashlib.sha1(inst_id.encode()).hexdigest()[:12],
        }
        return body

    def _instance(self, p: dict[str, str]) -> Instance:
        self._zone(p["project"], p["zone"])
        inst = self.s.instances.get((p["project"], p["zone"], p["instance"]))
        if inst is None:
            raise HttpError(
                404,
                "notFound",
                f"The resource 'projects/{p['project']}/zones/{p['zone']}/instances/"
                f"{p['instance']}' was not found",
            )
        return inst

    def compute_instances_get(self, p: dict[str, str], q: dict[str, str], b: Any) -> dict[str, Any]:
        return self.s.render_instance(self._instance(p))

    def compute_instances_list(
        self, p: dict[str, str], q: dict[str, str], b: Any
    ) -> dict[str, Any]:
        self._zone(p["project"], p["zone"])
        items = [
            self.s.render_instance(inst)
            for (proj, zone, _), inst in sorted(self.s.instances.items())
            if proj == p["project"] and zone == p["zone"]
        ]
        items = [i for i in items if matches_filter(i, q.get("filter"))]
        chunk, token = _page(items, q)
        out: dict[str, Any] = {
            "kind": "compute#instanceList",
            "id": f"projects/{p['project']}/zones/{p['zone']}/instances",
            "items": chunk,
            "selfLink": self.s.url(f"projects/{p['project']}/zones/{p['zone']}/instances"),
        }
        if token:
            out["nextPageToken"] = token
        return out

    def compute_instances_aggregatedList(
        self, p: dict[str, str], q: dict[str, str], b: Any
    ) -> dict[str, Any]:
        self._project(p["project"])
        entries = []
        for (proj, zone, _), inst in sorted(self.s.instances.items()):
            if proj != p["project"]:
                continue
            body = self.s.render_instance(inst)
            if matches_filter(body, q.get("filter")):
                entries.append((zone, body))
        chunk, token = _page(entries, q)
        items: dict[str, Any] = {}
        for zone in self.s.zones:
            found = [body for z, body in chunk if z == zone]
            if found:
                items[f"zones/{zone}"] = {"instances": found}
            else:
                items[f"zones/{zone}"] = {
                    "warning": {
                        "code": "NO_RESULTS_ON_PAGE",
                        "message": f"There are no results for scope 'zones/{zone}' on this page.",
                        "data": [{"key": "scope", "value": f"zones/{zone}"}],
                    }
                }
        out: dict[str, Any] = {
            "kind": "compute#instanceAggregatedList",
            "id": f"projects/{p['project']}/aggregated/instances",
            "items": items,
            "selfLink": self.s.url(f"projects/{p['project']}/aggregated/instances"),
        }
        if token:
            out["nextPageToken"] = token
        return out

    def _mutate(
        self, p: dict[str, str], op_type: str, fault: Fault | None
    ) -> tuple[Instance, Operation]:
        inst = self._instance(p)
        error = (fault.error, ERRORS[fault.error]) if fault is not None else None
        op = self.s.new_op(
            p["project"], p["zone"], op_type, inst.body["selfLink"], inst.body["id"], error=error
        )
        return inst, op

    def compute_instances_delete(
        self, p: dict[str, str], q: dict[str, str], b: Any, fault: Fault | None
    ) -> dict[str, Any]:
        inst, op = self._mutate(p, "delete", fault)
        if fault is None:
            inst.delete_at = op.done_at
        return self.s.render_op(op)

    def compute_instances_stop(
        self, p: dict[str, str], q: dict[str, str], b: Any, fault: Fault | None
    ) -> dict[str, Any]:
        inst, op = self._mutate(p, "stop", fault)
        if fault is None and inst.body["status"] != "TERMINATED":
            inst.stop_at = time.monotonic()
            inst.stop_done = op.done_at + self.s.stop_delay
            op.done_at = inst.stop_done
        return self.s.render_op(op)

    def compute_instances_start(
        self, p: dict[str, str], q: dict[str, str], b: Any, fault: Fault | None
    ) -> dict[str, Any]:
        inst, op = self._mutate(p, "start", fault)
        if fault is None and inst.body["status"] == "TERMINATED":
            inst.start_done = op.done_at
        return self.s.render_op(op)

    def _op(self, p: dict[str, str]) -> Operation:
        self._zone(p["project"], p["zone"])
        op = self.s.operations.get((p["project"], p["zone"], p["operation"]))
        if op is None:
            raise HttpError(
                404,
                "notFound",
                f"The resource 'projects/{p['project']}/zones/{p['zone']}/operations/"
                f"{p['operation']}' was not found",
            )
        return op

    def compute_zoneOperations_get(
        self, p: dict[str, str], q: dict[str, str], b: Any
    ) -> dict[str, Any]:
        return self.s.render_op(self._op(p))

    def compute_zoneOperations_wait(
        self, p: dict[str, str], q: dict[str, str], b: Any
    ) -> dict[str, Any]:
        """Blocks until the operation is DONE or ``wait_max`` passed (the real API: 2 min)."""
        with self.s.lock:
            op = self._op(p)
        deadline = time.monotonic() + self.s.wait_max
        while not op.done(time.monotonic()) and time.monotonic() < deadline:
            time.sleep(min(0.01, max(0.0, op.done_at - time.monotonic())))
        with self.s.lock:
            self.s.tick()
            return self.s.render_op(op)

    # ---------------------------------------------------------------- dns

    def _mz(self, p: dict[str, str]) -> ManagedZone:
        self._project(p["project"])
        key = p["mz"]
        for (proj, name), mz in self.s.managed_zones.items():
            if proj == p["project"] and key in (name, mz.body["id"]):
                return mz
        raise HttpError(
            404, "notFound", f"The 'parameters.managedZone' resource named '{key}' does not exist."
        )

    def dns_projects_get(self, p: dict[str, str], q: dict[str, str], b: Any) -> dict[str, Any]:
        self._project(p["project"])
        return {
            "kind": "dns#project",
            "id": p["project"],
            "number": str(abs(hash(p["project"])) % 10**12),
            "quota": {
                "kind": "dns#quota",
                "managedZones": 10000,
                "rrsetsPerManagedZone": 10000,
                "rrsetAdditionsPerChange": 1000,
                "rrsetDeletionsPerChange": 1000,
                "totalRrdataSizePerChange": 100000,
                "resourceRecordsPerRrset": 100,
                "whitelistedKeySpecs": [],
            },
        }

    def dns_managedZones_list(self, p: dict[str, str], q: dict[str, str], b: Any) -> dict[str, Any]:
        self._project(p["project"])
        zones = [
            copy.deepcopy(mz.body)
            for (proj, _), mz in sorted(self.s.managed_zones.items())
            if proj == p["project"] and (not q.get("dnsName") or mz.body["dnsName"] == q["dnsName"])
        ]
        chunk, token = _page(zones, q)
        out: dict[str, Any] = {"kind": "dns#managedZonesListResponse", "managedZones": chunk}
        if token:
            out["nextPageToken"] = token
        return out

    def dns_managedZones_create(
        self, p: dict[str, str], q: dict[str, str], body: Any
    ) -> dict[str, Any]:
        self._project(p["project"])
        body = body or {}
        name = body.get("name", "")
        dns_name = body.get("dnsName", "")
        if not NAME_RE.match(name) or not dns_name.endswith("."):
            raise HttpError(400, "invalid", f"Invalid value for 'entity.managedZone': '{name}'")
        if (p["project"], name) in self.s.managed_zones:
            raise HttpError(409, "alreadyExists", f"The managed zone '{name}' already exists")
        return copy.deepcopy(
            self.s_add_zone(p["project"], name, dns_name, body.get("description", "")).body
        )

    def s_add_zone(
        self, project: str, name: str, dns_name: str, description: str = ""
    ) -> ManagedZone:
        return add_managed_zone(self.s, project, name, dns_name, description)

    def dns_managedZones_get(self, p: dict[str, str], q: dict[str, str], b: Any) -> dict[str, Any]:
        return copy.deepcopy(self._mz(p).body)

    def dns_managedZones_delete(
        self, p: dict[str, str], q: dict[str, str], b: Any
    ) -> dict[str, Any]:
        mz = self._mz(p)
        self.s.managed_zones.pop((p["project"], mz.body["name"]))
        return {}

    def dns_resourceRecordSets_list(
        self, p: dict[str, str], q: dict[str, str], b: Any
    ) -> dict[str, Any]:
        mz = self._mz(p)
        if q.get("type") and not q.get("name"):
            raise HttpError(
                400, "invalid", "The 'parameters.name' must be specified with 'parameters.type'."
            )
        rrsets = [
            copy.deepcopy(r)
            for (name, rtype), r in sorted(mz.rrsets.items())
            if (not q.get("name") or name == q["name"])
            and (not q.get("type") or rtype == q["type"])
        ]
        chunk, token = _page(rrsets, q)
        out: dict[str, Any] = {"kind": "dns#resourceRecordSetsListResponse", "rrsets": chunk}
        if token:
            out["nextPageToken"] = token
        return out

    def _change_body(self, mz: ManagedZone, change: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(change)
        done_at = mz.change_done_at.get(change["id"], 0.0)
        out["status"] = "done" if time.monotonic() >= done_at else "pending"
        return out

    def dns_changes_create(self, p: dict[str, str], q: dict[str, str], body: Any) -> dict[str, Any]:
        mz = self._mz(p)
        body = body or {}
        additions = body.get("additions") or []
        deletions = body.get("deletions") or []
        if not additions and not deletions:
            raise HttpError(
                400, "required", "The 'entity.change' resource is missing additions or deletions."
            )
        new = dict(mz.rrsets)
        for i, rr in enumerate(deletions):
            key = (rr.get("name", ""), rr.get("type", ""))
            current = new.get(key)
            if (
                current is None
                or sorted(current["rrdatas"]) != sorted(rr.get("rrdatas") or [])
                or int(current["ttl"]) != int(rr.get("ttl", -1))
            ):
                if current is None:
                    raise HttpError(
                        404,
                        "notFound",
                        f"The 'entity.change.deletions[{i}]' resource named '{key[0]} "
                        f"({key[1]})' does not exist.",
                    )
                raise HttpError(
                    412,
                    "conditionNotMet",
                    f"Precondition not met for 'entity.change.deletions[{i}]'",
                )
            del new[key]
        for i, rr in enumerate(additions):
            key = (rr.get("name", ""), rr.get("type", ""))
            if not key[0].endswith(mz.body["dnsName"]) and key[0] != mz.body["dnsName"]:
                raise HttpError(
                    400,
                    "invalid",
                    f"The 'entity.change.additions[{i}].name' parameter '{key[0]}' is not a "
                    "subdomain of the zone.",
                )
            if key in new:
                raise HttpError(
                    409,
                    "alreadyExists",
                    f"The resource 'entity.change.additions[{i}]' named '{key[0]} ({key[1]})' "
                    "already exists",
                )
            new[key] = {
                "kind": "dns#resourceRecordSet",
                "name": key[0],
                "type": key[1],
                "ttl": int(rr.get("ttl", 300)),
                "rrdatas": list(rr.get("rrdatas") or []),
            }
        mz.rrsets = new
        change_id = str(len(mz.changes) + 1)
        change = {
            "kind": "dns#change",
            "id": change_id,
            "startTime": _now_zulu(),
            "additions": copy.deepcopy(additions),
            "deletions": copy.deepcopy(deletions),
            "status": "pending",
        }
        mz.changes.append(change)
        mz.change_done_at[change_id] = time.monotonic() + self.s.change_delay
        return self._change_body(mz, change)

    def dns_changes_list(self, p: dict[str, str], q: dict[str, str], b: Any) -> dict[str, Any]:
        mz = self._mz(p)
        changes = [self._change_body(mz, c) for c in mz.changes]
        return {"kind": "dns#changesListResponse", "changes": changes}

    def dns_changes_get(self, p: dict[str, str], q: dict[str, str], b: Any) -> dict[str, Any]:
        mz = self._mz(p)
        for change in mz.changes:
            if change["id"] == p["change"]:
                return self._change_body(mz, change)
        raise HttpError(
            404,
            "notFound",
            f"The 'parameters.changeId' resource named '{p['change']}' does not exist.",
        )


def add_managed_zone(
    state: GceState, project: str, name: str, dns_name: str, description: str = ""
) -> ManagedZone:
    """Create a managed zone with its SOA and NS sets, as Cloud DNS does."""
    if not dns_name.endswith("."):
        dns_name += "."
    with state.lock:
        if project not in state.projects:
            state.projects.append(project)
        servers = [f"ns-cloud-a{i}.googledomains.com." for i in range(1, 5)]
        mz = ManagedZone(
            body={
                "kind": "dns#managedZone",
                "name": name,
                "dnsName": dns_name,
                "description": description,
                "id": state.next_id()[-12:],
                "nameServers": servers,
                "creationTime": _now_zulu(),
                "visibility": "public",
            }
        )
        mz.rrsets[(dns_name, "NS")] = {
            "kind": "dns#resourceRecordSet",
            "name": dns_name,
            "type": "NS",
            "ttl": 21600,
            "rrdatas": servers,
        }
        mz.rrsets[(dns_name, "SOA")] = {
            "kind": "dns#resourceRecordSet",
            "name": dns_name,
            "type": "SOA",
            "ttl": 21600,
            "rrdatas": [f"{servers[0]} cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"],
        }
        state.managed_zones[(project, name)] = mz
        return mz


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise HttpError(400, "parseError", "Parse Error") from None

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if status == 204 else json.dumps(body, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        state = self.server.state
        try:
            body = self._read_body()
            if split.path.startswith("/_control/"):
                self._send(200, control(state, self.command, split.path, body or {}))
                return
            status, result, headers = self.server.api.handle(self.command, split.path, query, body)
            self._send(status, result, headers)
        except Drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
        except HttpError as exc:
            self._send(exc.status, exc.body, exc.headers)
        except ValueError as exc:
            self._send(400, {"error": {"code": 400, "message": str(exc)}})

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch


def control(state: GceState, verb: str, path: str, body: dict[str, Any]) -> Any:
    """The control API: ``POST /_control/fail`` (a :class:`Fault` as JSON),
    ``POST /_control/suspend`` ``{"project", "error"}``, ``POST /_control/resume``,
    ``POST /_control/reset``, ``POST /_control/zone`` ``{"name", "status"}``,
    ``POST /_control/dns-zone`` ``{"project", "name", "dns_name"}``, ``GET /_control/state``."""
    action = path.removeprefix("/_control/").strip("/")
    if action == "state":
        return state.snapshot()
    if verb != "POST":
        raise HttpError(405, "badMethod", "use POST")
    if action == "fail":
        state.add_fault(Fault(**body))
    elif action == "suspend":
        state.suspend(body.get("project", DEFAULT_PROJECT), body.get("error", "CONSUMER_SUSPENDED"))
    elif action == "resume":
        state.resume(body.get("project"))
    elif action == "reset":
        state.reset()
    elif action == "zone":
        with state.lock:
            if body["name"] not in state.zones:
                state.zones.append(body["name"])
            state.zone_status[body["name"]] = body.get("status", "UP")
    elif action == "dns-zone":
        add_managed_zone(
            state, body.get("project", DEFAULT_PROJECT), body["name"], body["dns_name"]
        )
    else:
        raise HttpError(404, "notFound", f"unknown control action {action!r}")
    return {"ok": True}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], state: GceState, verbose: bool = False) -> None:
        super().__init__(addr, _Handler)
        self.state = state
        self.api = Api(state)
        self.verbose = verbose


class GceDouble:
    """The double in a background thread: ``with GceDouble() as gce: gce.endpoint``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **state_options: Any) -> None:
        if not host.startswith("127.") and host != "localhost":
            raise ValueError("the double only listens on loopback")
        self.state = GceState(**state_options)
        self._server = _Server((host, port), self.state)
        self.host, self.port = self._server.server_address[:2]
        self.state.base_url = self.endpoint
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> GceDouble:
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(poll_interval=0.05),
            name="gce-double",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GceDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # in-process control, same as the HTTP control API
    def fail(self, method: str, error: str, **options: Any) -> None:
        self.state.add_fault(Fault(method=method, error=error, **options))

    def suspend(self, project: str = DEFAULT_PROJECT, error: str = "CONSUMER_SUSPENDED") -> None:
        self.state.suspend(project, error)

    def resume(self, project: str | None = None) -> None:
        self.state.resume(project)

    def reset(self) -> None:
        self.state.reset()

    def add_dns_zone(self, name: str, dns_name: str, project: str = DEFAULT_PROJECT) -> None:
        add_managed_zone(self.state, project, name, dns_name)

    def set_zone_status(self, zone: str, status: str) -> None:
        control(self.state, "POST", "/_control/zone", {"name": zone, "status": status})

    def instances(self) -> list[dict[str, Any]]:
        with self.state.lock:
            self.state.tick()
            return [self.state.render_instance(i) for i in self.state.instances.values()]

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self.state.lock:
            return [c for c in self.state.calls if method is None or c["method"] == method]

    def rrsets(self, name: str, project: str = DEFAULT_PROJECT) -> list[dict[str, Any]]:
        with self.state.lock:
            return [
                copy.deepcopy(r) for r in self.state.managed_zones[(project, name)].rrsets.values()
            ]


try:  # a fixture for tests that import it; the module itself does not need pytest
    import pytest

    @pytest.fixture
    def gce_double() -> Iterator[GceDouble]:
        with GceDouble() as double:
            yield double

except ImportError:  # pragma: no cover
    pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.doubles.gce",
        description="Compute Engine v1 + Cloud DNS v1 REST double (loopback only).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument(
        "--project", action="append", help=f"known project (default {DEFAULT_PROJECT})"
    )
    parser.add_argument("--zone", action="append", help="known zone (repeatable)")
    parser.add_argument(
        "--dns-zone",
        action="append",
        default=[],
        metavar="NAME=DNSNAME",
        help="managed zone to create in the first project, e.g. example-test=example.test.",
    )
    parser.add_argument(
        "--op-delay", type=float, default=0.05, help="seconds until an operation is DONE"
    )
    parser.add_argument(
        "--boot", type=float, default=0.1, help="seconds from PROVISIONING to RUNNING"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    state = GceState(
        projects=tuple(args.project or [DEFAULT_PROJECT]),
        zones=tuple(args.zone or DEFAULT_ZONES),
        op_delay=args.op_delay,
        provisioning=args.boot / 2,
        staging=args.boot / 2,
    )
    server = _Server((args.host, args.port), state, verbose=args.verbose)
    host, port = server.server_address[:2]
    state.base_url = f"http://{host}:{port}"
    for spec in args.dns_zone:
        name, _, dns_name = spec.partition("=")
        add_managed_zone(state, state.projects[0], name, dns_name or name)
    print(f"gce double listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
