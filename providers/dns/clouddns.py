"""Google Cloud DNS as the DNS backend (``dns: {type: clouddns}``), via ``google-cloud-dns``.

A cutover is one Cloud DNS *change*: the current record set as a deletion and the new
one as an addition, applied atomically by Cloud DNS (never a delete followed by a
create); the cutovers of a round's parallel moves go in one change
(:meth:`replace_records`, see :mod:`providers.dns._batch`). Cloud DNS itself refuses a
change whose deletion does not match the current set exactly (412 ``conditionNotMet``),
so the write is a real compare-and-set: with ``expect`` the backend first checks the
current values (``ConflictError`` when they differ), and a concurrent writer that slips
in between makes Cloud DNS refuse the change; the changes of a refused batch are then
sent one by one, so only the change whose record moved fails (``ConflictError``). The
backend then waits, bounded by ``change_timeout``, until the change is ``done`` and
returns the records as Cloud DNS now reports them.

The managed zone is ``managed_zone`` when set, else the project's zone whose DNS name is
``zone``. ``google-cloud-dns`` takes ``client_options={"api_endpoint": ...}``, so the
endpoint override works without tricks; credentials follow :mod:`providers._gcp`.
The SDK is imported only when the backend is used.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Literal
from typing import TypeVar

from pydantic import Field
from pydantic import field_validator

from providers import _gcp
from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import ApiDnsSettings
from providers.base import Check
from providers.base import ConflictError
from providers.base import DnsSettings
from providers.base import Duration
from providers.base import NotFound
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange
from providers.base import TransientError
from providers.base import as_settings
from providers.dns._batch import BatchingDns
from providers.retry import call_with_retries

T = TypeVar("T")


class CloudDnsSettings(ApiDnsSettings):
    """``dns: {type: clouddns, zone: example.com, project: ...}``."""

    type: Literal["clouddns"]
    zone: str = Field(description="the zone's DNS name, e.g. example.com")
    ttl: int = Field(default=30, ge=0, description="TTL of the records the toolkit writes")
    project: str = Field(description="Google Cloud project that hosts the managed zone")
    managed_zone: str | None = Field(
        default=None,
        description="managed zone resource name (default: the zone whose DNS name is `zone`)",
    )
    credentials_file: str | None = Field(
        default=None, description="credentials JSON; else Application Default Credentials"
    )
    change_timeout: Duration = Field(
        default=120.0, description="how long to wait for a change to be done"
    )
    request_timeout: Duration = Field(default=30.0, description="timeout of one API request")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return _gcp.check_endpoint(value)


def _fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


class CloudDns(BatchingDns, kind="clouddns", settings=CloudDnsSettings, vendor="google"):
    conflict_code = "conditionNotMet"

    # One client made under a lock with its AuthorizedSession (made lazily, without a
    # lock, by google.cloud.client) created there too; see GcpProvider on sharing it.
    # The managed-zone cache is one idempotent assignment.
    shared_across_threads = True

    def __init__(self, settings: DnsSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.cfg = as_settings(CloudDnsSettings, settings)
        self._zone: Any = None
        self._lock = threading.Lock()
        self._made: Any = None

    # ---------------------------------------------------------------- plumbing

    @property
    def _client(self) -> Any:
        def make() -> Any:
            from google.cloud import dns

            creds = _gcp.load_credentials(self.cfg.credentials_file, self.cfg.endpoint, self.name)
            options = {"api_endpoint": self.cfg.endpoint} if self.cfg.endpoint else None
            client = dns.Client(project=self.cfg.project, credentials=creds, client_options=options)
            client._http  # noqa: B018 - its session, made here under the lock
            return client

        made = self._made
        if made is None:
            with self._lock:
                if self._made is None:
                    self._made = self._once(make)
                made = self._made
        return made

    def _once(self, fn: Callable[[], T], what: str = "") -> T:
        try:
            return fn()
        except ProviderError:
            raise
        except Exception as exc:
            raise _gcp.map_error(exc, provider=self.name, what=what) from None

    def _call(self, fn: Callable[[], T], what: str = "") -> T:
        return call_with_retries(
            lambda: self._once(fn, what),
            attempts=self.cfg.retry_attempts,
            max_time=self.cfg.retry_max_time,
        )

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        # The SDK's own connection: same endpoint, credentials and error types as its
        # objects; used for the rrsets list filters (name/type) the SDK does not expose.
        return self._client._connection.api_request(
            method=method, path=path, timeout=float(self.cfg.request_timeout), **kwargs
        )

    def _managed_zone(self) -> Any:
        if self._zone is not None:
            return self._zone
        client = self._client
        want = _fqdn(self.cfg.zone)
        if self.cfg.managed_zone:
            zone = client.zone(self.cfg.managed_zone)
            self._call(lambda: zone.reload(), "get managed zone")
            if zone.dns_name and zone.dns_name.lower() != want:
                raise ProviderError(
                    f"managed zone {self.cfg.managed_zone} serves {zone.dns_name}, not {want}",
                    provider=self.name,
                    hint="fix `zone` or `managed_zone`",
                )
        else:
            zones = self._call(
                lambda: [z for z in client.list_zones() if (z.dns_name or "").lower() == want],
                "list managed zones",
            )
            if not zones:
                raise NotFound(
                    f"no managed zone serves {want} in project {self.cfg.project}",
                    provider=self.name,
                    code="notFound",
                    hint="create it (gcloud dns managed-zones create) or set managed_zone",
                )
            if len(zones) > 1:
                raise ProviderError(
                    f"several managed zones serve {want} ({', '.join(z.name for z in zones)})",
                    provider=self.name,
                    hint="set managed_zone to the public one",
                )
            zone = zones[0]
        self._zone = zone
        return zone

    def _rrset(self, name: str, rtype: str) -> dict[str, Any] | None:
        zone = self._managed_zone()
        path = f"/projects/{self.cfg.project}/managedZones/{zone.name}/rrsets"
        data = self._call(
            lambda: self._api(
                "GET", path, query_params={"name": _fqdn(name), "type": rtype.upper()}
            ),
            f"read {name} {rtype}",
        )
        for rr in data.get("rrsets") or []:
            if rr.get("name", "").lower() == _fqdn(name) and rr.get("type") == rtype.upper():
                return dict(rr)
        return None

    @staticmethod
    def _record(name: str, rr: dict[str, Any]) -> Record:
        return Record(
            name.rstrip("."), rr["type"], list(rr.get("rrdatas") or []), int(rr.get("ttl", 0))
        )

    # ---------------------------------------------------------------- interface

    def get_record(self, name: str, rtype: str = "A") -> Record | None:
        rr = self._rrset(name, rtype)
        return self._record(name, rr) if rr is not None else None

    def _zone_sets(
        self, keys: set[tuple[str, str]], max_pages: int
    ) -> tuple[dict[tuple[str, str], dict[str, Any]], bool]:
        """The zone's sets among ``keys``, listing at most ``max_pages`` pages; and whether
        the listing reached the zone's end (a key not found is then absent)."""
        zone = self._managed_zone()
        path = f"/projects/{self.cfg.project}/managedZones/{zone.name}/rrsets"
        found: dict[tuple[str, str], dict[str, Any]] = {}
        query: dict[str, str] = {}
        for _ in range(max_pages):
            page = functools.partial(self._api, "GET", path, query_params=dict(query))
            data = self._call(page, "list record sets")
            for rr in data.get("rrsets") or []:
                key = (str(rr.get("name", "")).lower(), str(rr.get("type", "")))
                if key in keys:
                    found[key] = dict(rr)
            if not data.get("nextPageToken") or len(found) == len(keys):
                return found, True
            query = {"pageToken": str(data["nextPageToken"])}
        return found, False

    def _read_sets(self, changes: Sequence[RecordChange]) -> list[dict[str, Any] | None]:
        keys = [(_fqdn(c.name), c.rtype.upper()) for c in changes]
        if len(keys) == 1:
            return [self._rrset(*keys[0])]
        # One listing of the zone instead of a request per record; in a zone so large
        # that the listing would cost more, the sets it did not reach are read singly.
        found, complete = self._zone_sets(set(keys), max_pages=max(1, len(keys) // 2))
        return [found.get(k) if complete or k in found else self._rrset(*k) for k in keys]

    def _as_record(self, change: RecordChange, raw: dict[str, Any] | None) -> Record:
        if raw is None:
            return Record(change.name.rstrip("."), change.rtype.upper(), [], change.ttl)
        return self._record(change.name, raw)

    def _send(self, pending: Sequence[tuple[RecordChange, dict[str, Any] | None]]) -> None:
        # One Cloud DNS change: every deletion must match its current set exactly, and
        # the whole change is applied or refused as one.
        zone = self._managed_zone()
        changes = zone.changes()
        for change, current in pending:
            if current is not None:
                changes.delete_record_set(
                    zone.resource_record_set(
                        current["name"],
                        current["type"],
                        int(current["ttl"]),
                        list(current["rrdatas"]),
                    )
                )
            if change.values:
                changes.add_record_set(
                    zone.resource_record_set(
                        _fqdn(change.name), change.rtype.upper(), change.ttl, list(change.values)
                    )
                )
        first = pending[0][0]
        what = f"{first.name} {first.rtype}" if len(pending) == 1 else f"{len(pending)} sets"
        self._once(lambda: changes.create(), f"change {what}")
        self._wait(changes, what)

    def _refused(self, exc: ProviderError) -> bool:
        # 412 conditionNotMet (a deletion that no longer matches), 409 alreadyExists
        # (an addition over a set made since), 404 (a deleted set gone since).
        return isinstance(exc, ConflictError | NotFound)

    def _retrying(self, attempt: Callable[[], T]) -> T:
        # The change itself is sent once per attempt (a lost answer is seen by the next
        # attempt's read, not by blindly sending it again).
        return call_with_retries(
            attempt, attempts=self.cfg.retry_attempts, max_time=self.cfg.retry_max_time
        )

    def _wait(self, changes: Any, name: str) -> None:
        deadline = time.monotonic() + float(self.cfg.change_timeout)
        delay = 0.05
        while changes.status != "done":
            if time.monotonic() >= deadline:
                raise TransientError(
                    f"change {changes.name} for {name} not done after {self.cfg.change_timeout:g}s",
                    provider=self.name,
                    code="CHANGE_TIMEOUT",
                    hint="Cloud DNS accepted the change; it may still complete",
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 2.0)
            self._call(lambda: changes.reload(), "change status")

    def check(self) -> AccountReport:
        checks: list[Check] = []
        try:
            quotas = self._call(lambda: self._client.quotas(), "get project")
            checks.append(
                Check(
                    "project",
                    True,
                    f"project {self.cfg.project} reachable "
                    f"(rrsets per zone: {quotas.get('rrsetsPerManagedZone', '?')})",
                )
            )
            zone = self._managed_zone()
            checks.append(Check("zone", True, f"managed zone {zone.name} serves {zone.dns_name}"))
            self._rrset(self.cfg.zone, "SOA")
            checks.append(Check("records", True, "record sets readable"))
        except AccountBlocked as exc:
            checks.append(Check("credentials", False, str(exc)))
            return AccountReport("blocked", checks, reason=str(exc))
        except NotFound as exc:
            checks.append(Check("zone", False, str(exc)))
            return AccountReport("unknown", checks, reason=str(exc))
        except Exception as exc:  # never raise from doctor
            checks.append(Check("api", False, str(exc)))
            return AccountReport("unknown", checks, reason=str(exc))
        return AccountReport("available", checks)
