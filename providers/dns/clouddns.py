"""Google Cloud DNS as the DNS backend (``dns: {type: clouddns}``), via ``google-cloud-dns``.

A cutover is one Cloud DNS *change*: the current record set as a deletion and the new
one as an addition, applied atomically by Cloud DNS (never a delete followed by a
create). Cloud DNS itself refuses a change whose deletion does not match the current set
exactly (412 ``conditionNotMet``), so the write is a real compare-and-set: with
``expect`` the backend first checks the current values (``ConflictError`` when they
differ), and a concurrent writer that slips in between makes Cloud DNS refuse the change
(also ``ConflictError``). The backend then waits, bounded by ``change_timeout``, until the
change is ``done`` and returns the record as Cloud DNS now reports it.

The managed zone is ``managed_zone`` when set, else the project's zone whose DNS name is
``zone``. ``google-cloud-dns`` takes ``client_options={"api_endpoint": ...}``, so the
endpoint override works without tricks; credentials follow :mod:`providers._gcp`.
The SDK is imported only when the backend is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property
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
from providers.base import DnsProvider
from providers.base import DnsSettings
from providers.base import Duration
from providers.base import NotFound
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange
from providers.base import TransientError
from providers.base import as_settings
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


class CloudDns(DnsProvider, kind="clouddns", settings=CloudDnsSettings, vendor="google"):
    def __init__(self, settings: DnsSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.cfg = as_settings(CloudDnsSettings, settings)
        self._zone: Any = None

    # ---------------------------------------------------------------- plumbing

    @cached_property
    def _client(self) -> Any:
        def make() -> Any:
            from google.cloud import dns

            creds = _gcp.load_credentials(self.cfg.credentials_file, self.cfg.endpoint, self.name)
            options = {"api_endpoint": self.cfg.endpoint} if self.cfg.endpoint else None
            return dns.Client(project=self.cfg.project, credentials=creds, client_options=options)

        return self._once(make)

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

    def replace_record(self, change: RecordChange) -> Record:
        name, rtype, values, ttl, expect = change
        rtype = rtype.upper()
        wanted = sorted(values)

        def landed(rr: dict[str, Any] | None) -> bool:
            if rr is None:
                return not wanted
            return sorted(rr.get("rrdatas") or []) == wanted and int(rr.get("ttl", -1)) == ttl

        def attempt() -> None:
            # Each attempt re-reads the set: after an answer was lost, a retry sees that
            # the change landed and stops instead of failing the deletion precondition.
            current = self._rrset(name, rtype)
            now = sorted(current.get("rrdatas") or []) if current else []
            if expect is not None and now not in (sorted(expect), wanted):
                raise ConflictError(
                    f"{name} {rtype} is {now}, expected {sorted(expect)}: "
                    "someone else changed the record",
                    provider=self.name,
                    code="conditionNotMet",
                    hint="another watcher cut over first; re-read the state",
                )
            if landed(current):
                return
            zone = self._managed_zone()
            changes = zone.changes()
            if current is not None:
                changes.delete_record_set(
                    zone.resource_record_set(
                        current["name"],
                        current["type"],
                        int(current["ttl"]),
                        list(current["rrdatas"]),
                    )
                )
            if wanted:
                changes.add_record_set(
                    zone.resource_record_set(_fqdn(name), rtype, ttl, list(values))
                )
            try:
                self._once(lambda: changes.create(), f"change {name} {rtype}")
            except ConflictError:
                # Cloud DNS refused the deletion or addition: the set changed under us.
                if landed(self._rrset(name, rtype)):
                    return
                raise
            self._wait(changes, name)

        call_with_retries(
            attempt, attempts=self.cfg.retry_attempts, max_time=self.cfg.retry_max_time
        )
        record = self.get_record(name, rtype)
        return record if record is not None else Record(name.rstrip("."), rtype, [], ttl)

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
