"""A small Azure Resource Manager double, driven only through the real Azure SDKs.

It speaks the ARM shapes that azure-mgmt-compute, azure-mgmt-network and azure-mgmt-dns
read and write for the handful of resources the ``azure`` provider and the ``azuredns``
backend use, as the public REST specifications (Azure/azure-rest-api-specs) and their
``examples/`` show them:

* ``Microsoft.Compute/virtualMachines`` (PUT, GET with ``$expand=instanceView``, list,
  the subscription's list with ``statusOnly=true``, DELETE, POST ``deallocate``),
  ``Microsoft.Compute/disks`` (GET, list, DELETE; OS disks appear when a VM is created),
  ``Microsoft.Compute/skus`` (resource SKUs of a location);
* ``Microsoft.Network/networkInterfaces`` and ``publicIPAddresses`` (PUT, GET, list, DELETE);
* ``/subscriptions/{id}`` and ``/subscriptions/{id}/resourcegroups/{name}`` (GET, PUT for
  resource groups);
* ``Microsoft.Network/dnsZones`` and their record sets (PUT with If-Match / If-None-Match,
  GET, DELETE), etags included.

Long-running operations follow the ARM protocol: the first response is 201 (PUT) or 202
(DELETE, POST) with ``Azure-AsyncOperation`` (and ``Location`` for DELETE/POST) headers; the
operation resource answers ``{"status": "InProgress"}`` for ``lro_polls`` polls, then
``Succeeded`` or ``Failed`` with ``{"error": {"code", "message"}}``; ``provisioningState`` of
the resource goes ``Creating`` -> ``Succeeded`` (or ``Failed``). No ``Retry-After`` is sent
on operations, so clients with ``polling_interval=0`` poll at once. Every error body is the
ARM ``{"error": {"code", "message"}}``.

Public IP addresses are handed out in 127.80.0.0/16 (private ones in 127.80.250.0/24)
where nothing listens: a VM of the double can never answer a probe.

Control API (no auth), also available as methods of :class:`AzureDouble`:

* ``POST /_control/faults`` ``{"code": "AllocationFailed", "method": "PUT",
  "path": "/virtualMachines/", "stage": "first"|"lro"|"race"|"ignore", "status": 409,
  "message": "...", "retry_after": 1, "times": 1}``: the next matching call(s) fail with
  that ARM error, on the first response (``first``) or inside the long-running operation
  (``lro``). ``race`` (DNS record set PUT) changes the record set behind the caller's back
  just before the write; ``ignore`` answers success without storing anything.
* ``POST /_control/subscription`` ``{"state": "Disabled"}``: a disabled subscription reads
  fine but refuses every write with ``ReadOnlyDisabledSubscription``.
* ``POST /_control/lro`` ``{"polls": 2, "hang": false}``; ``POST /_control/skus``
  ``{"skus": [...]}``; ``POST /_control/zones`` ``{"name": "example.test"}``;
  ``POST /_control/resourcegroups`` ``{"name": ..., "location": ...}``;
  ``POST /_control/reset``; ``GET /_control/state`` (resources, custom data, request log).

Run standalone: ``python -m tests.doubles.azure --port 8080``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import datetime as dt
import json
import re
import signal
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-00000000fa11"
DEFAULT_RESOURCE_GROUP = "failover-rg"
DEFAULT_LOCATION = "westeurope"
DEFAULT_TENANT = "00000000-0000-0000-0000-0000000000aa"

# code -> (HTTP status, message template) for errors on the first response.
ERRORS: dict[str, tuple[int, str]] = {
    "AuthenticationFailed": (401, "Authentication failed."),
    "InvalidAuthenticationToken": (401, "The access token is invalid."),
    "ExpiredAuthenticationToken": (
        401,
        "The access token expiry UTC time is earlier than current UTC time.",
    ),
    "AuthorizationFailed": (
        403,
        "The client 'failover-test' with object id '00000000-0000-0000-0000-0000000000bb' "
        "does not have authorization to perform action '{action}' over scope '{scope}' or "
        "the scope is invalid. If access was recently granted, please refresh your credentials.",
    ),
    "SubscriptionNotFound": (404, "The subscription '{subscription}' could not be found."),
    "ReadOnlyDisabledSubscription": (
        409,
        "The subscription '{subscription}' is disabled and therefore marked as read only. "
        "You cannot perform any write actions on this subscription until it is re-enabled.",
    ),
    "DisabledSubscription": (409, "The subscription '{subscription}' is disabled."),
    "SkuNotAvailable": (
        409,
        "The requested VM size for resource '{scope}' is currently not available in location "
        "'{location}'. Please try another size or deploy to a different location or zones.",
    ),
    "AllocationFailed": (
        409,
        "Allocation failed. We do not have sufficient capacity for the requested VM size in "
        "this region.",
    ),
    "ZonalAllocationFailed": (
        409,
        "Allocation failed. We do not have sufficient capacity for the requested VM size in "
        "this zone.",
    ),
    "OverconstrainedAllocationRequest": (
        409,
        "Allocation failed. VM(s) with the following constraints cannot be allocated, because "
        "the condition is too restrictive.",
    ),
    "QuotaExceeded": (
        409,
        "Operation could not be completed as it results in exceeding approved Total Regional "
        "Cores quota.",
    ),
    "OperationNotAllowed": (
        409,
        "Operation could not be completed as it results in exceeding approved "
        "standardBSFamily Cores quota.",
    ),
    "TooManyRequests": (429, "The request is being throttled."),
    "RetryableError": (500, "A retryable error occurred."),
    "InternalServerError": (500, "An internal server error occurred."),
    "ServiceUnavailable": (503, "The service is temporarily unavailable."),
    "ResourceNotFound": (404, "The Resource '{scope}' was not found."),
    "NotFound": (404, "The resource '{scope}' was not found."),
    "Conflict": (409, "The operation conflicts with the state of the resource."),
}

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourcegroups/(?P<rg>[^/]+)"
_LOC = r"/providers/(?P<ns>[^/]+)/locations/(?P<loc>[^/]+)"
_VM = _RG + r"/providers/microsoft\.compute/virtualmachines/(?P<name>[^/]+)"
_ZONE = _RG + r"/providers/microsoft\.network/dnszones/(?P<zone>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern + "$", re.IGNORECASE))
    for name, pattern in [
        ("operation", _SUB + _LOC + r"/operations/(?P<op>[^/]+)"),
        ("opresult", _SUB + _LOC + r"/operationresults/(?P<op>[^/]+)"),
        ("skus", _SUB + r"/providers/microsoft\.compute/skus"),
        ("vms_all", _SUB + r"/providers/microsoft\.compute/virtualmachines"),
        ("subscription", _SUB),
        ("resourcegroup", _RG),
        ("vm_action", _VM + r"/(?P<action>deallocate|start|poweroff)"),
        ("vm", _VM),
        ("vms", _RG + r"/providers/microsoft\.compute/virtualmachines"),
        ("disk", _RG + r"/providers/microsoft\.compute/disks/(?P<name>[^/]+)"),
        ("disks", _RG + r"/providers/microsoft\.compute/disks"),
        ("nic", _RG + r"/providers/microsoft\.network/networkinterfaces/(?P<name>[^/]+)"),
        ("nics", _RG + r"/providers/microsoft\.network/networkinterfaces"),
        ("pip", _RG + r"/providers/microsoft\.network/publicipaddresses/(?P<name>[^/]+)"),
        ("pips", _RG + r"/providers/microsoft\.network/publicipaddresses"),
        ("recordset", _ZONE + r"/(?P<rtype>A|AAAA|CNAME|TXT|MX|NS|PTR|SRV|CAA|SOA)/(?P<rel>[^/]+)"),
        ("zone", _ZONE),
    ]
]

KIND_TYPES = {
    "vm": "Microsoft.Compute/virtualMachines",
    "disk": "Microsoft.Compute/disks",
    "nic": "Microsoft.Network/networkInterfaces",
    "pip": "Microsoft.Network/publicIPAddresses",
}
RECORD_PROPS = {
    "A": "ARecords",
    "AAAA": "AAAARecords",
    "TXT": "TXTRecords",
    "MX": "MXRecords",
    "NS": "NSRecords",
    "PTR": "PTRRecords",
    "SRV": "SRVRecords",
    "CAA": "caaRecords",
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def default_skus(location: str) -> list[dict[str, Any]]:
    """Resource SKUs as ``ListAvailableResourceSkusForARegion`` shows them."""
    skus = []
    for name, size, family, cpus, memory in [
        ("Standard_B1s", "B1s", "standardBSFamily", "1", "1"),
        ("Standard_B2s", "B2s", "standardBSFamily", "2", "4"),
        ("Standard_D2s_v5", "D2s_v5", "standardDSv5Family", "2", "8"),
    ]:
        skus.append(
            {
                "resourceType": "virtualMachines",
                "name": name,
                "tier": "Standard",
                "size": size,
                "family": family,
                "locations": [location],
                "locationInfo": [{"location": location, "zones": ["1", "2", "3"]}],
                "capabilities": [
                    {"name": "vCPUs", "value": cpus},
                    {"name": "MemoryGB", "value": memory},
                ],
                "restrictions": [],
            }
        )
    return skus


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Reply:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


class AzureState:
    """Everything the double knows; every method runs under ``lock``."""

    def __init__(
        self,
        subscription: str = DEFAULT_SUBSCRIPTION,
        resource_group: str = DEFAULT_RESOURCE_GROUP,
        location: str = DEFAULT_LOCATION,
        lro_polls: int = 1,
    ) -> None:
        self.lock = threading.RLock()
        self.subscription = subscription
        self.location = location
        self.default_rg = resource_group
        self.lro_polls = lro_polls
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.sub_state = "Enabled"
            self.resource_groups: dict[str, dict[str, Any]] = {}
            self.resources: dict[str, dict[str, Any]] = {}  # lower(id) -> resource
            self.custom_data: dict[str, str] = {}  # lower(vm id) -> decoded customData
            self.zones: dict[str, dict[str, Any]] = {}
            self.records: dict[str, dict[str, Any]] = {}
            self.ops: dict[str, dict[str, Any]] = {}
            self.faults: list[dict[str, Any]] = []
            self.requests: list[dict[str, Any]] = []
            self.skus = default_skus(self.location)
            self.hang = False
            self.ip_counter = 0
            self.add_resource_group(self.default_rg, self.location)

    # ----------------------------------------------------------------- control

    def add_resource_group(self, name: str, location: str) -> dict[str, Any]:
        with self.lock:
            rg = {
                "id": f"/subscriptions/{self.subscription}/resourceGroups/{name}",
                "name": name,
                "type": "Microsoft.Resources/resourceGroups",
                "location": location,
                "properties": {"provisioningState": "Succeeded"},
            }
            self.resource_groups[name.lower()] = rg
            return rg

    def add_zone(self, name: str, resource_group: str | None = None) -> dict[str, Any]:
        with self.lock:
            rg = resource_group or self.default_rg
            zone_id = (
                f"/subscriptions/{self.subscription}/resourceGroups/{rg}"
                f"/providers/Microsoft.Network/dnszones/{name}"
            )
            zone = {
                "id": zone_id,
                "name": name,
                "type": "Microsoft.Network/dnszones",
                "location": "global",
                "etag": str(uuid.uuid4()),
                "tags": {},
                "properties": {
                    "maxNumberOfRecordSets": 10000,
                    "numberOfRecordSets": 2,
                    "nameServers": ["ns1-01.azure-double.test.", "ns2-01.azure-double.test."],
                },
            }
            self.zones[zone_id.lower()] = zone
            return zone

    def add_fault(self, fault: dict[str, Any]) -> dict[str, Any]:
        code = fault.get("code")
        if not code:
            raise ValueError("a fault needs a code")
        status, message = ERRORS.get(code, (409, f"{code}."))
        entry = {
            "code": code,
            "status": int(fault.get("status") or status),
            "message": fault.get("message") or message,
            "method": (fault.get("method") or "").upper() or None,
            "path": (fault.get("path") or "").lower() or None,
            "stage": fault.get("stage") or "first",
            "retry_after": fault.get("retry_after"),
            "times": int(fault.get("times") or 1),
        }
        if entry["stage"] not in ("first", "lro", "race", "ignore"):
            raise ValueError("stage is first, lro, race or ignore")
        with self.lock:
            self.faults.append(entry)
        return entry

    def take_fault(self, method: str, path: str, stages: tuple[str, ...]) -> dict[str, Any] | None:
        with self.lock:
            for fault in self.faults:
                if fault["stage"] not in stages:
                    continue
                if fault["method"] and fault["method"] != method:
                    continue
                if fault["path"] and fault["path"] not in path.lower():
                    continue
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self.faults.remove(fault)
                return fault
            return None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            kinds: dict[str, list[str]] = {k: [] for k in KIND_TYPES}
            for resource in self.resources.values():
                for kind, rtype in KIND_TYPES.items():
                    if resource["type"] == rtype:
                        kinds[kind].append(resource["name"])
            return {
                "subscription": {"id": self.subscription, "state": self.sub_state},
                "resources": {k: sorted(v) for k, v in kinds.items()},
                "vms": {
                    r["name"]: {
                        "zones": r.get("zones"),
                        "tags": r.get("tags"),
                        "provisioningState": r["properties"].get("provisioningState"),
                        "power": r.get("_power"),
                        "customData": self.custom_data.get(r["id"].lower()),
                    }
                    for r in self.resources.values()
                    if r["type"] == KIND_TYPES["vm"]
                },
                "records": {
                    r["_key"]: {
                        "etag": r["etag"],
                        "ttl": r["properties"].get("TTL"),
                        "properties": r["properties"],
                    }
                    for r in self.records.values()
                },
                "faults": copy.deepcopy(self.faults),
                "requests": list(self.requests),
            }

    def next_ip(self) -> str:
        self.ip_counter += 1
        n = self.ip_counter
        return f"127.80.{(n // 250) % 250}.{n % 250 + 1}"


class AzureDouble:
    """The double as an in-process server: ``with AzureDouble() as az: az.url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        subscription: str = DEFAULT_SUBSCRIPTION,
        resource_group: str = DEFAULT_RESOURCE_GROUP,
        location: str = DEFAULT_LOCATION,
        lro_polls: int = 1,
    ) -> None:
        self.state = AzureState(subscription, resource_group, location, lro_polls)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def subscription(self) -> str:
        return self.state.subscription

    @property
    def resource_group(self) -> str:
        return self.state.default_rg

    @property
    def location(self) -> str:
        return self.state.location

    def subnet_id(self, vnet: str = "failover-vnet", subnet: str = "default") -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{subnet}"
        )

    def start(self) -> AzureDouble:
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread:
            self.thread.join(timeout=5)

    def __enter__(self) -> AzureDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # control, in process
    def fail(self, code: str, **fault: Any) -> dict[str, Any]:
        return self.state.add_fault({"code": code, **fault})

    def set_subscription_state(self, state: str) -> None:
        with self.state.lock:
            self.state.sub_state = state

    def set_lro(self, polls: int | None = None, hang: bool | None = None) -> None:
        with self.state.lock:
            if polls is not None:
                self.state.lro_polls = polls
            if hang is not None:
                self.state.hang = hang

    def add_zone(self, name: str) -> dict[str, Any]:
        return self.state.add_zone(name)

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()

    def reset(self) -> None:
        self.state.reset()


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    state: AzureState
    protocol_version = "HTTP/1.1"
    server_version = "azure-double/1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    # ----------------------------------------------------------------- plumbing

    def _send(self, reply: Reply) -> None:
        data = b""
        if reply.body is not None:
            data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        if reply.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ArmError(
                400, "InvalidRequestContent", "The request content is not valid JSON."
            ) from None

    def _base(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1'}"

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            body = self._body()
            if path.startswith("/_control"):
                reply = self._control(method, path, body)
            else:
                reply = self._arm(method, path, query, body)
        except ArmError as exc:
            headers = {}
            if exc.retry_after is not None:
                headers["Retry-After"] = str(exc.retry_after)
            reply = Reply(
                exc.status, {"error": {"code": exc.code, "message": exc.message}}, headers
            )
        except Exception as exc:  # a bug in the double: say so, as ARM would
            reply = Reply(500, {"error": {"code": "DoubleBug", "message": repr(exc)}})
        self._send(reply)

    # ----------------------------------------------------------------- control API

    def _control(self, method: str, path: str, body: Any) -> Reply:
        st = self.state
        body = body or {}
        name = path.removeprefix("/_control").strip("/")
        try:
            if name == "state" and method == "GET":
                return Reply(200, st.snapshot())
            if method != "POST":
                return Reply(405, {"error": {"code": "MethodNotAllowed", "message": path}})
            if name == "faults":
                return Reply(200, st.add_fault(body))
            if name == "subscription":
                with st.lock:
                    st.sub_state = body.get("state", "Enabled")
                return Reply(200, {"state": st.sub_state})
            if name == "lro":
                with st.lock:
                    if "polls" in body:
                        st.lro_polls = int(body["polls"])
                    if "hang" in body:
                        st.hang = bool(body["hang"])
                return Reply(200, {"polls": st.lro_polls, "hang": st.hang})
            if name == "skus":
                with st.lock:
                    st.skus = list(body.get("skus") or [])
                return Reply(200, {"count": len(st.skus)})
            if name == "zones":
                return Reply(200, st.add_zone(body["name"], body.get("resource_group")))
            if name == "resourcegroups":
                return Reply(
                    200, st.add_resource_group(body["name"], body.get("location", st.location))
                )
            if name == "reset":
                st.reset()
                return Reply(200, {"reset": True})
        except (KeyError, ValueError, TypeError) as exc:
            return Reply(400, {"error": {"code": "BadControlRequest", "message": str(exc)}})
        return Reply(404, {"error": {"code": "NoSuchControl", "message": path}})

    # ----------------------------------------------------------------- ARM

    def _arm(self, method: str, path: str, query: dict[str, str], body: Any) -> Reply:
        st = self.state
        with st.lock:
            st.requests.append(
                {
                    "method": method,
                    "path": path,
                    "query": dict(query),
                    "if_match": self.headers.get("If-Match"),
                    "if_none_match": self.headers.get("If-None-Match"),
                }
            )
            del st.requests[:-500]
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        if "api-version" not in query:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        route, match = None, None
        for name, pattern in ROUTES:
            match = pattern.match(path)
            if match:
                route = name
                break
        if route is None or match is None:
            raise ArmError(404, "InvalidResourceType", f"No route for {method} {path}.")
        groups = match.groupdict()
        sub = groups["sub"]
        if sub.lower() != st.subscription.lower():
            raise ArmError(
                404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found."
            )
        if route in ("operation", "opresult"):
            return self._operation(route, groups["op"])

        fault = st.take_fault(method, path, ("first",))
        if fault:
            raise ArmError(
                fault["status"],
                fault["code"],
                fault["message"].format(
                    subscription=sub,
                    scope=path,
                    action=f"{method} {route}",
                    location=st.location,
                ),
                fault.get("retry_after"),
            )
        writes = method in ("PUT", "DELETE", "POST", "PATCH")
        if st.sub_state in ("Disabled", "Deleted") and writes:
            status, message = ERRORS["ReadOnlyDisabledSubscription"]
            raise ArmError(status, "ReadOnlyDisabledSubscription", message.format(subscription=sub))

        if route == "subscription":
            return self._subscription(method)
        if route == "skus":
            return self._skus(query)
        if route == "vms_all":
            return self._list_all_vms(query)
        rg_name = groups["rg"]
        if route == "resourcegroup":
            return self._resource_group(method, rg_name, body)
        if rg_name.lower() not in st.resource_groups:
            raise ArmError(
                404, "ResourceGroupNotFound", f"Resource group '{rg_name}' could not be found."
            )
        prefix = f"/subscriptions/{st.subscription}/resourceGroups/{rg_name}/providers/"
        if route in ("zone", "recordset"):
            return self._dns(method, route, prefix, groups, body)
        if route in ("vms", "disks", "nics", "pips"):
            return self._list(route[:-1], rg_name)
        kind = "vm" if route == "vm_action" else route
        resource_id = prefix + KIND_TYPES[kind] + "/" + groups["name"]
        if route == "vm_action":
            if method != "POST":
                raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed here.")
            return self._vm_action(resource_id, groups["action"], path)
        if method == "GET":
            return Reply(200, self._view(self._get(resource_id), query))
        if method == "PUT":
            return self._put(kind, resource_id, groups["name"], body or {}, path)
        if method == "DELETE":
            return self._delete(kind, resource_id, path)
        raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed here.")

    # ----------------------------------------------------------------- subscription

    def _subscription(self, method: str) -> Reply:
        st = self.state
        if method != "GET":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed here.")
        return Reply(
            200,
            {
                "id": f"/subscriptions/{st.subscription}",
                "subscriptionId": st.subscription,
                "tenantId": DEFAULT_TENANT,
                "displayName": "failover double",
                "state": st.sub_state,
                "subscriptionPolicies": {
                    "locationPlacementId": "Public_2014-09-01",
                    "quotaId": "PayAsYouGo_2014-09-01",
                    "spendingLimit": "Off",
                },
                "authorizationSource": "RoleBased",
            },
        )

    def _resource_group(self, method: str, name: str, body: Any) -> Reply:
        st = self.state
        with st.lock:
            if method == "GET":
                rg = st.resource_groups.get(name.lower())
                if rg is None:
                    raise ArmError(
                        404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found."
                    )
                return Reply(200, rg)
            if method == "PUT":
                existed = name.lower() in st.resource_groups
                location = (body or {}).get("location")
                if not location:
                    raise ArmError(400, "LocationRequired", "The location property is required.")
                return Reply(200 if existed else 201, st.add_resource_group(name, location))
        raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed here.")

    def _skus(self, query: dict[str, str]) -> Reply:
        st = self.state
        wanted = None
        found = re.search(r"location\s+eq\s+'([^']+)'", query.get("$filter", ""), re.IGNORECASE)
        if found:
            wanted = found.group(1).lower()
        with st.lock:
            value = [
                sku
                for sku in st.skus
                if wanted is None or wanted in [loc.lower() for loc in sku.get("locations", [])]
            ]
        return Reply(200, {"value": copy.deepcopy(value), "nextLink": None})

    # ----------------------------------------------------------------- resources

    def _get(self, resource_id: str) -> dict[str, Any]:
        resource = self.state.resources.get(resource_id.lower())
        if resource is None:
            name = resource_id.rsplit("/", 1)[-1]
            rtype = resource_id.split("/providers/", 1)[-1].rsplit("/", 1)[0]
            rg = resource_id.split("/resourceGroups/", 1)[-1].split("/", 1)[0]
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{rtype}/{name}' under resource group '{rg}' was not found. "
                "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        return resource

    def _view(self, resource: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        """The resource as the API shows it (internal ``_`` keys hidden)."""
        with self.state.lock:
            view = {k: copy.deepcopy(v) for k, v in resource.items() if not k.startswith("_")}
            if resource["type"] == KIND_TYPES["vm"] and query.get("$expand") == "instanceView":
                view["properties"]["instanceView"] = self._instance_view(resource)
            return view

    @staticmethod
    def _instance_view(vm: dict[str, Any]) -> dict[str, Any]:
        state = vm["properties"]["provisioningState"]
        statuses: list[dict[str, Any]] = []
        if state == "Failed":
            error = vm.get("_error") or {}
            statuses.append(
                {
                    "code": f"ProvisioningState/failed/{error.get('code', 'Unknown')}",
                    "level": "Error",
                    "displayStatus": "Provisioning failed",
                    "message": error.get("message", ""),
                }
            )
        else:
            statuses.append(
                {
                    "code": f"ProvisioningState/{state.lower()}",
                    "level": "Info",
                    "displayStatus": f"Provisioning {state.lower()}",
                }
            )
        power = vm.get("_power")
        if power:
            display = {"running": "VM running", "deallocated": "VM deallocated"}
            statuses.append(
                {
                    "code": f"PowerState/{power}",
                    "level": "Info",
                    "displayStatus": display.get(power, f"VM {power}"),
                }
            )
        return {"computerName": vm["name"], "statuses": statuses}

    def _list(self, kind: str, rg: str) -> Reply:
        st = self.state
        prefix = f"/subscriptions/{st.subscription}/resourcegroups/{rg.lower()}/providers/"
        with st.lock:
            value = [
                self._view(r, {})
                for key, r in st.resources.items()
                if key.startswith(prefix) and r["type"] == KIND_TYPES[kind]
            ]
        return Reply(200, {"value": value})

    def _list_all_vms(self, query: dict[str, str]) -> Reply:
        """The subscription's VMs; with ``statusOnly=true`` only their run-time status (id,
        name, ``properties.instanceView``), as ARM answers it: no tags, no profiles."""
        st = self.state
        with st.lock:
            vms = [r for r in st.resources.values() if r["type"] == KIND_TYPES["vm"]]
            if query.get("statusOnly", "").lower() != "true":
                return Reply(200, {"value": [self._view(vm, {}) for vm in vms]})
            value = [
                {
                    "id": vm["id"],
                    "name": vm["name"],
                    "type": vm["type"],
                    "location": vm["location"],
                    "properties": {
                        "vmId": vm["properties"].get("vmId"),
                        "instanceView": self._instance_view(vm),
                    },
                }
                for vm in vms
            ]
        return Reply(200, {"value": value})

    def _base_resource(
        self, kind: str, resource_id: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        location = body.get("location")
        if not location:
            raise ArmError(
                400, "LocationRequired", "The location property is required for this definition."
            )
        resource: dict[str, Any] = {
            "id": resource_id,
            "name": name,
            "type": KIND_TYPES[kind],
            "location": location,
            "tags": dict(body.get("tags") or {}),
        }
        if body.get("zones"):
            resource["zones"] = list(body["zones"])
        return resource

    def _ref_exists(self, ref: str | None, what: str, by: str) -> dict[str, Any]:
        resource = self.state.resources.get((ref or "").lower())
        if resource is None:
            raise ArmError(
                400,
                "InvalidResourceReference",
                f"Resource {ref} referenced by resource {by} was not found. Please make sure "
                f"that the referenced {what} exists.",
            )
        return resource

    def _put(
        self, kind: str, resource_id: str, name: str, body: dict[str, Any], path: str
    ) -> Reply:
        st = self.state
        props = body.get("properties") or {}
        with st.lock:
            existing = st.resources.get(resource_id.lower())
            resource = self._base_resource(kind, resource_id, name, body)
            if existing is not None:
                # A PUT replaces the definition but keeps what the platform assigned.
                for key in ("_power", "_ip", "_private"):
                    if key in existing:
                        resource[key] = existing[key]
                for key in ("zones",):
                    if key in existing and key not in resource:
                        resource[key] = existing[key]
            if kind == "pip":
                ip = resource.get("_ip") or st.next_ip()
                resource["_ip"] = ip
                resource["sku"] = body.get("sku") or {"name": "Standard"}
                resource["properties"] = {
                    "publicIPAddressVersion": props.get("publicIPAddressVersion", "IPv4"),
                    "publicIPAllocationMethod": props.get("publicIPAllocationMethod", "Static"),
                    "idleTimeoutInMinutes": props.get("idleTimeoutInMinutes", 4),
                    "ipAddress": ip,
                }
                if existing is not None and existing["properties"].get("ipConfiguration"):
                    resource["properties"]["ipConfiguration"] = existing["properties"][
                        "ipConfiguration"
                    ]
                progress = "Updating"
            elif kind == "nic":
                configs = []
                for index, config in enumerate(props.get("ipConfigurations") or []):
                    cprops = config.get("properties") or {}
                    subnet = (cprops.get("subnet") or {}).get("id")
                    if not subnet or "/subnets/" not in subnet.lower():
                        raise ArmError(
                            400,
                            "InvalidRequestFormat",
                            "Cannot parse the request: the ipConfiguration needs a subnet id.",
                        )
                    cname = config.get("name") or f"ipconfig{index + 1}"
                    out = {
                        "name": cname,
                        "id": f"{resource_id}/ipConfigurations/{cname}",
                        "properties": {
                            "privateIPAddress": (existing or {}).get("_private")
                            or f"127.80.250.{(st.ip_counter % 250) + 1}",
                            "privateIPAllocationMethod": cprops.get(
                                "privateIPAllocationMethod", "Dynamic"
                            ),
                            "subnet": {"id": subnet},
                            "primary": index == 0,
                            "privateIPAddressVersion": "IPv4",
                            "provisioningState": "Succeeded",
                        },
                    }
                    resource["_private"] = out["properties"]["privateIPAddress"]
                    pip_id = (cprops.get("publicIPAddress") or {}).get("id")
                    if pip_id:
                        pip = self._ref_exists(pip_id, "public IP address", resource_id)
                        holder = pip["properties"].get("ipConfiguration", {}).get("id", "")
                        if holder and not holder.lower().startswith(resource_id.lower() + "/"):
                            raise ArmError(
                                400,
                                "PublicIPAddressInUse",
                                f"Resource {pip_id} is already in use by {holder}.",
                            )
                        pip["properties"]["ipConfiguration"] = {"id": out["id"]}
                        out["properties"]["publicIPAddress"] = {"id": pip["id"]}
                    configs.append(out)
                if not configs:
                    raise ArmError(
                        400,
                        "InvalidRequestFormat",
                        "Network interface needs at least one IP configuration.",
                    )
                resource["properties"] = {
                    "ipConfigurations": configs,
                    "dnsSettings": {"dnsServers": [], "appliedDnsServers": []},
                    "enableAcceleratedNetworking": False,
                    "enableIPForwarding": False,
                }
                if existing is not None and existing["properties"].get("virtualMachine"):
                    resource["properties"]["virtualMachine"] = existing["properties"][
                        "virtualMachine"
                    ]
                progress = "Updating"
            elif kind == "vm":
                resource["properties"] = self._vm_properties(resource, props, existing, path)
                progress = "Creating" if existing is None else "Updating"
                if existing is None:
                    resource["_power"] = None
            else:
                raise ArmError(405, "MethodNotAllowed", "Disks are created with their VM here.")

            resource["properties"]["provisioningState"] = progress
            st.resources[resource_id.lower()] = resource
            fault = st.take_fault("PUT", path, ("lro",))

            def done() -> None:
                resource["properties"]["provisioningState"] = "Succeeded"
                if kind == "vm":
                    resource["_power"] = "running"

            def failed(error: dict[str, Any]) -> None:
                resource["properties"]["provisioningState"] = "Failed"
                resource["_error"] = error
                if kind == "vm":
                    resource["_power"] = None

            op_url = self._start_op(done, failed, fault)
            return Reply(
                200 if existing is not None else 201,
                self._view(resource, {}),
                {"Azure-AsyncOperation": op_url},
            )

    def _vm_properties(
        self,
        vm: dict[str, Any],
        props: dict[str, Any],
        existing: dict[str, Any] | None,
        path: str,
    ) -> dict[str, Any]:
        st = self.state
        size = (props.get("hardwareProfile") or {}).get("vmSize")
        self._check_size(size, vm["location"], vm.get("zones"), vm["id"])
        storage = props.get("storageProfile") or {}
        image = storage.get("imageReference") or {}
        if not image:
            raise ArmError(
                400, "InvalidParameter", "Required parameter 'imageReference' is missing (null)."
            )
        os_disk_in = storage.get("osDisk") or {}
        rg_prefix = vm["id"].split("/providers/", 1)[0]
        disk_name = os_disk_in.get("name") or f"{vm['name']}_OsDisk_1_{uuid.uuid4().hex}"
        disk_id = f"{rg_prefix}/providers/Microsoft.Compute/disks/{disk_name}"
        storage_type = (os_disk_in.get("managedDisk") or {}).get(
            "storageAccountType", "Standard_LRS"
        )
        os_profile_in = dict(props.get("osProfile") or {})
        custom = os_profile_in.pop("customData", None)
        if custom is not None:
            try:
                decoded = base64.b64decode(custom, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise ArmError(
                    400, "InvalidParameter", "Custom data in OSProfile must be in Base64 encoding."
                ) from None
            st.custom_data[vm["id"].lower()] = decoded
        if not os_profile_in.get("adminUsername") and existing is None:
            raise ArmError(
                400, "InvalidParameter", "Required parameter 'adminUsername' is missing (null)."
            )
        nics = (props.get("networkProfile") or {}).get("networkInterfaces") or []
        if not nics:
            raise ArmError(
                400, "InvalidParameter", "Required parameter 'networkProfile' is missing (null)."
            )
        for ref in nics:
            nic = self._ref_exists(ref.get("id"), "network interface", vm["id"])
            holder = nic["properties"].get("virtualMachine", {}).get("id")
            if holder and holder.lower() != vm["id"].lower():
                raise ArmError(
                    400,
                    "NicInUse",
                    f"Network interface {nic['id']} is used by existing resource {holder}.",
                )
            nic["properties"]["virtualMachine"] = {"id": vm["id"]}
        # The OS disk appears as soon as the VM is being created (before allocation).
        disk_key = disk_id.lower()
        if disk_key not in st.resources:
            st.resources[disk_key] = {
                "id": disk_id,
                "name": disk_name,
                "type": KIND_TYPES["disk"],
                "location": vm["location"],
                "tags": {},
                "sku": {"name": storage_type},
                "managedBy": vm["id"],
                **({"zones": vm["zones"]} if vm.get("zones") else {}),
                "properties": {
                    "osType": "Linux",
                    "hyperVGeneration": "V2",
                    "creationData": {
                        "createOption": "FromImage",
                        "imageReference": {"id": json.dumps(image)},
                    },
                    "diskSizeGB": 30,
                    "timeCreated": _now(),
                    "provisioningState": "Succeeded",
                    "diskState": "Attached",
                },
            }
        return {
            "vmId": (existing or {}).get("properties", {}).get("vmId") or str(uuid.uuid4()),
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {
                "imageReference": image,
                "osDisk": {
                    "osType": "Linux",
                    "name": disk_name,
                    "createOption": os_disk_in.get("createOption", "FromImage"),
                    "caching": os_disk_in.get("caching", "ReadWrite"),
                    "managedDisk": {"storageAccountType": storage_type, "id": disk_id},
                    "diskSizeGB": 30,
                },
                "dataDisks": [],
            },
            "osProfile": {**os_profile_in, "secrets": os_profile_in.get("secrets", [])},
            "networkProfile": {"networkInterfaces": nics},
            "timeCreated": (existing or {}).get("properties", {}).get("timeCreated") or _now(),
        }

    def _check_size(
        self, size: str | None, location: str, zones: list[str] | None, scope: str
    ) -> None:
        st = self.state
        if not size:
            raise ArmError(
                400, "InvalidParameter", "Required parameter 'vmSize' is missing (null)."
            )
        for sku in st.skus:
            if (
                sku.get("resourceType") != "virtualMachines"
                or sku.get("name", "").lower() != size.lower()
            ):
                continue
            if location.lower() not in [loc.lower() for loc in sku.get("locations", [])]:
                continue
            blocked_zones: set[str] = set()
            for restriction in sku.get("restrictions") or []:
                if restriction.get("type") == "Location":
                    break
                blocked_zones.update((restriction.get("restrictionInfo") or {}).get("zones") or [])
            else:
                offered = set()
                for info in sku.get("locationInfo") or []:
                    offered.update(info.get("zones") or [])
                if not zones or all(z in offered and z not in blocked_zones for z in zones):
                    return
        status, message = ERRORS["SkuNotAvailable"]
        raise ArmError(status, "SkuNotAvailable", message.format(scope=scope, location=location))

    def _vm_action(self, resource_id: str, action: str, path: str) -> Reply:
        st = self.state
        with st.lock:
            vm = self._get(resource_id)
            fault = st.take_fault("POST", path, ("lro",))
            target = {"deallocate": "deallocated", "poweroff": "stopped", "start": "running"}[
                action.lower()
            ]
            vm["_power"] = {
                "deallocated": "deallocating",
                "stopped": "stopping",
                "running": "starting",
            }[target]

            def done() -> None:
                vm["_power"] = target

            def failed(error: dict[str, Any]) -> None:
                vm["_power"] = "running"

            op_url = self._start_op(done, failed, fault)
            location_url = op_url.replace("/operations/", "/operationResults/")
            return Reply(202, None, {"Azure-AsyncOperation": op_url, "Location": location_url})

    def _delete(self, kind: str, resource_id: str, path: str) -> Reply:
        st = self.state
        with st.lock:
            resource = st.resources.get(resource_id.lower())
            if resource is None:
                return Reply(204)
            if kind == "nic":
                holder = resource["properties"].get("virtualMachine", {}).get("id")
                if holder and holder.lower() in st.resources:
                    raise ArmError(
                        400,
                        "NicInUse",
                        f"Network Interface {resource_id} is used by existing resource {holder}. "
                        "In order to delete the network interface, it must be dissociated from "
                        "the resource.",
                    )
            if kind == "pip":
                holder = resource["properties"].get("ipConfiguration", {}).get("id", "")
                nic_id = holder.split("/ipConfigurations/")[0].lower() if holder else ""
                if nic_id and nic_id in st.resources:
                    raise ArmError(
                        400,
                        "PublicIPAddressInUse",
                        f"Public IP address {resource_id} can not be deleted since it is still "
                        f"allocated to resource {holder}.",
                    )
            if kind == "disk":
                holder = resource.get("managedBy")
                if holder and holder.lower() in st.resources:
                    raise ArmError(
                        409,
                        "OperationNotAllowed",
                        f"Disk {resource['name']} is attached to VM {holder}.",
                    )
            fault = st.take_fault("DELETE", path, ("lro",))
            if kind != "disk":
                resource["properties"]["provisioningState"] = "Deleting"

            def done() -> None:
                st.resources.pop(resource_id.lower(), None)
                if kind == "vm":
                    st.custom_data.pop(resource_id.lower(), None)
                    for other in st.resources.values():
                        if other.get("managedBy", "").lower() == resource_id.lower():
                            other["managedBy"] = None
                            other["properties"]["diskState"] = "Unattached"
                        vm_ref = other.get("properties", {}).get("virtualMachine", {})
                        if vm_ref.get("id", "").lower() == resource_id.lower():
                            other["properties"].pop("virtualMachine", None)
                if kind == "nic":
                    for other in st.resources.values():
                        ref = other.get("properties", {}).get("ipConfiguration", {})
                        if ref.get("id", "").lower().startswith(resource_id.lower() + "/"):
                            other["properties"].pop("ipConfiguration", None)

            def failed(error: dict[str, Any]) -> None:
                if kind != "disk":
                    resource["properties"]["provisioningState"] = "Failed"

            op_url = self._start_op(done, failed, fault)
            location_url = op_url.replace("/operations/", "/operationResults/")
            return Reply(202, None, {"Azure-AsyncOperation": op_url, "Location": location_url})

    # ----------------------------------------------------------------- operations

    def _start_op(
        self,
        done: Callable[[], None],
        failed: Callable[[dict[str, Any]], None],
        fault: dict[str, Any] | None,
    ) -> str:
        st = self.state
        op_id = str(uuid.uuid4())
        error = None
        if fault:
            error = {
                "code": fault["code"],
                "message": fault["message"].format(
                    subscription=st.subscription, scope="", action="", location=st.location
                ),
            }
        st.ops[op_id] = {
            "id": op_id,
            "status": "InProgress",
            "remaining": st.lro_polls,
            "done": done,
            "failed": failed,
            "error": error,
            "startTime": _now(),
        }
        return (
            f"{self._base()}/subscriptions/{st.subscription}/providers/Microsoft.Compute"
            f"/locations/{st.location}/operations/{op_id}?api-version=2024-07-01"
        )

    def _advance(self, op: dict[str, Any]) -> None:
        st = self.state
        if op["status"] != "InProgress" or st.hang:
            return
        if op["remaining"] > 0:
            op["remaining"] -= 1
            return
        op["endTime"] = _now()
        if op["error"]:
            op["status"] = "Failed"
            op["failed"](op["error"])
        else:
            op["status"] = "Succeeded"
            op["done"]()

    def _operation(self, route: str, op_id: str) -> Reply:
        st = self.state
        with st.lock:
            op = st.ops.get(op_id)
            if op is None:
                raise ArmError(404, "ResourceNotFound", f"The operation '{op_id}' was not found.")
            self._advance(op)
            body: dict[str, Any] = {
                "id": f"/subscriptions/{st.subscription}/providers/Microsoft.Compute"
                f"/locations/{st.location}/operations/{op_id}",
                "name": op_id,
                "status": op["status"],
                "startTime": op["startTime"],
            }
            if "endTime" in op:
                body["endTime"] = op["endTime"]
            if op["status"] == "Failed":
                body["error"] = op["error"]
            if route == "operation":
                return Reply(200, body)
            # Location polling: 202 while running, the result when done.
            if op["status"] == "InProgress":
                return Reply(202, None, {"Location": f"{self._base()}{self.path}"})
            if op["status"] == "Failed":
                return Reply(409, {"error": op["error"]})
            return Reply(204)

    # ----------------------------------------------------------------- DNS

    def _dns(
        self, method: str, route: str, prefix: str, groups: dict[str, str], body: Any
    ) -> Reply:
        st = self.state
        zone_name = groups["zone"]
        zone_id = f"{prefix}Microsoft.Network/dnszones/{zone_name}"
        with st.lock:
            zone = st.zones.get(zone_id.lower())
            if route == "zone":
                if method == "GET":
                    if zone is None:
                        raise ArmError(
                            404,
                            "ResourceNotFound",
                            f"The Resource 'Microsoft.Network/dnszones/{zone_name}' under resource "
                            f"group '{groups['rg']}' was not found.",
                        )
                    return Reply(200, copy.deepcopy(zone))
                if method == "PUT":
                    created = zone is None
                    zone = st.add_zone(zone_name, groups["rg"])
                    return Reply(201 if created else 200, copy.deepcopy(zone))
                raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed here.")
            if zone is None:
                raise ArmError(
                    404,
                    "ParentResourceNotFound",
                    f"Can not perform requested operation on nested resource. Parent resource "
                    f"'{zone_name}' not found.",
                )
            rtype = groups["rtype"].upper()
            rel = groups["rel"]
            key = f"{zone_id}/{rtype}/{rel}".lower()
            current = st.records.get(key)
            if method == "GET":
                if current is None:
                    raise ArmError(
                        404,
                        "NotFound",
                        f"The resource record '{rel}' does not exist in resource group "
                        f"'{groups['rg']}' of subscription '{st.subscription}'.",
                    )
                return Reply(200, self._record_view(current))
            if method == "DELETE":
                self._precondition(current, rel)
                st.records.pop(key, None)
                return Reply(200 if current else 204)
            if method != "PUT":
                raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed here.")
            race = st.take_fault("PUT", self.path, ("race",))
            if race and current is not None:
                current["etag"] = str(uuid.uuid4())
                current["properties"]["TTL"] = current["properties"].get("TTL", 0) + 1
            self._precondition(current, rel)
            props = dict((body or {}).get("properties") or {})
            fqdn = f"{zone_name}." if rel == "@" else f"{rel}.{zone_name}."
            record = {
                "_key": key,
                "id": f"{zone_id}/{rtype}/{rel}",
                "name": rel,
                "type": f"Microsoft.Network/dnszones/{rtype}",
                "etag": str(uuid.uuid4()),
                "properties": {
                    "metadata": props.get("metadata") or {},
                    "TTL": int(props.get("TTL") or 3600),
                    "fqdn": fqdn,
                    "provisioningState": "Succeeded",
                },
            }
            prop = RECORD_PROPS.get(rtype)
            if prop:
                record["properties"][prop] = props.get(prop) or []
            if rtype == "CNAME":
                record["properties"]["CNAMERecord"] = props.get("CNAMERecord")
            if st.take_fault("PUT", self.path, ("ignore",)):
                return Reply(200 if current else 201, self._record_view(record))
            st.records[key] = record
            return Reply(200 if current else 201, self._record_view(record))

    def _precondition(self, current: dict[str, Any] | None, rel: str) -> None:
        if_match = self.headers.get("If-Match")
        if_none_match = self.headers.get("If-None-Match")
        if if_match and (current is None or if_match.strip('"') != current["etag"]):
            raise ArmError(
                412,
                "PreconditionFailed",
                f"The Record set {rel} has been modified (etag mismatch).",
            )
        if if_none_match == "*" and current is not None:
            raise ArmError(412, "PreconditionFailed", f"The Record set {rel} already exists.")

    @staticmethod
    def _record_view(record: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in record.items() if not k.startswith("_")}


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Azure Resource Manager double (tests only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--subscription", default=DEFAULT_SUBSCRIPTION)
    parser.add_argument("--resource-group", default=DEFAULT_RESOURCE_GROUP)
    parser.add_argument("--location", default=DEFAULT_LOCATION)
    parser.add_argument("--dns-zone", action="append", default=[], help="DNS zone to create")
    parser.add_argument("--lro-polls", type=int, default=1)
    args = parser.parse_args(argv)
    double = AzureDouble(
        args.host,
        args.port,
        subscription=args.subscription,
        resource_group=args.resource_group,
        location=args.location,
        lro_polls=args.lro_polls,
    )
    for zone in args.dns_zone:
        double.add_zone(zone)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    double.start()
    print(
        f"azure double listening on {double.url} subscription={double.subscription} "
        f"resource_group={double.resource_group} location={double.location}",
        flush=True,
    )
    stop.wait()
    double.stop()


if __name__ == "__main__":
    main()
