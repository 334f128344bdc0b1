"""Azure DNS: one ``create_or_update`` of the record set (an atomic replace), then a read back.

With ``expect`` the write is conditional: the record set is read with its etag, its values
compared with ``expect``, and the replace is sent with ``If-Match: <etag>`` (or
``If-None-Match: *`` when the record set must not exist yet), so a concurrent change made
between the read and the write is refused by Azure (412) rather than overwritten. Both
cases raise ``ConflictError``.

Credentials and the error mapping are shared with the compute provider
(``providers/_azure.py``); azure-mgmt-dns is imported only when used.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import TypeVar

from pydantic import Field

from providers import _azure
from providers._azure import as_json
from providers._azure import dig
from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import ApiDnsSettings
from providers.base import Check
from providers.base import ConflictError
from providers.base import DnsProvider
from providers.base import NotFound
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange

T = TypeVar("T")

# record type -> (property holding the list, key of one value) in the ARM RecordSet shape
_RECORDS: dict[str, tuple[str, str]] = {
    "A": ("ARecords", "ipv4Address"),
    "AAAA": ("AAAARecords", "ipv6Address"),
    "TXT": ("TXTRecords", "value"),
}


class AzureDnsSettings(ApiDnsSettings):
    """``dns: {type: azuredns, ...}``."""

    type: Literal["azuredns"] = "azuredns"
    subscription_id: str = Field(description="subscription of the DNS zone")
    resource_group: str = Field(description="resource group of the DNS zone")


class AzureDns(DnsProvider, kind="azuredns", settings=AzureDnsSettings, vendor="microsoft"):
    """Record sets in an Azure DNS zone through azure-mgmt-dns."""

    settings: AzureDnsSettings
    # One client, made under a lock with its session open (providers._azure.opened).
    shared_across_threads = True

    def __init__(self, settings: AzureDnsSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self._lock = threading.Lock()
        self._client: Any = None
        self._credential: Any = None

    # ----------------------------------------------------------------- plumbing

    def _dns(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                from azure.mgmt.dns import DnsManagementClient

                s = self.settings
                self._credential = _azure.make_credential(s.endpoint)
                kwargs = _azure.client_kwargs(s.endpoint, None)
                kwargs.pop("polling_interval", None)  # record sets are not long-running
                made = DnsManagementClient(self._credential, s.subscription_id, **kwargs)
                self._client = _azure.opened(made)
            return self._client

    def close(self) -> None:
        with self._lock:
            objs = (self._client, self._credential)
            self._client = self._credential = None
        for obj in objs:
            closer = getattr(obj, "close", None)
            if callable(closer):
                with contextlib.suppress(Exception):
                    closer()

    def _call(self, fn: Callable[[], T], action: str) -> T:
        return _azure.guarded(
            fn,
            provider=self.name,
            action=action,
            attempts=self.settings.retry_attempts,
            max_time=self.settings.retry_max_time,
        )

    @property
    def _zone(self) -> str:
        return self.settings.zone.rstrip(".")

    def _relative(self, name: str) -> str:
        fqdn = name.rstrip(".").lower()
        zone = self._zone.lower()
        if fqdn == zone:
            return "@"
        if fqdn.endswith("." + zone):
            return name.rstrip(".")[: -(len(zone) + 1)]
        raise ProviderError(
            f"{name} is not inside the zone {self._zone}",
            provider=self.name,
            code="NameOutsideZone",
            hint="the service's domain must be in the dns zone of the config",
        )

    def _kind(self, rtype: str) -> tuple[str, str]:
        try:
            return _RECORDS[rtype.upper()]
        except KeyError:
            raise ProviderError(
                f"record type {rtype} is not supported (A, AAAA, TXT)",
                provider=self.name,
                code="UnsupportedType",
                hint="use an A or AAAA record for the service's domain",
            ) from None

    def _read(self, name: str, rtype: str) -> dict[str, Any] | None:
        client = self._dns()
        relative = self._relative(name)
        try:
            return as_json(
                self._call(
                    lambda: client.record_sets.get(
                        self.settings.resource_group, self._zone, relative, rtype.upper()
                    ),
                    f"read {rtype} {name}",
                )
            )
        except NotFound as exc:
            if exc.code and exc.code not in ("NotFound", "ResourceNotFound"):
                # ParentResourceNotFound: the zone itself is missing, not the record.
                raise ProviderError(
                    exc.message,
                    provider=self.name,
                    code=exc.code,
                    hint=f"create the zone {self._zone} in {self.settings.resource_group}",
                ) from exc
            return None

    def _record(self, name: str, rtype: str, body: dict[str, Any]) -> Record:
        prop, key = self._kind(rtype)
        props = body.get("properties") or {}
        values: list[str] = []
        for item in props.get(prop) or []:
            value = item.get(key) if isinstance(item, dict) else None
            if isinstance(value, list):  # TXT: a list of strings per record
                values.append("".join(str(v) for v in value))
            elif value is not None:
                values.append(str(value))
        return Record(
            name=name.rstrip("."), type=rtype.upper(), values=values, ttl=int(props.get("TTL") or 0)
        )

    # ----------------------------------------------------------------- interface

    def get_record(self, name: str, rtype: str = "A") -> Record | None:
        self._kind(rtype)
        body = self._read(name, rtype)
        return None if body is None else self._record(name, rtype, body)

    def replace_record(self, change: RecordChange) -> Record:
        name, rtype, values, ttl, expect = change
        from azure.mgmt.dns import models

        rtype = rtype.upper()
        self._kind(rtype)
        client = self._dns()
        relative = self._relative(name)
        if_match: str | None = None
        if_none_match: str | None = None
        if expect is not None:
            current = self._read(name, rtype)
            if current is None:
                if list(expect):
                    raise ConflictError(
                        f"{rtype} {name} does not exist; expected {sorted(expect)}",
                        provider=self.name,
                        code="PreconditionFailed",
                        hint="somebody else changed the record first; re-read and decide again",
                    )
                if_none_match = "*"
            else:
                now = self._record(name, rtype, current).values
                if sorted(now) != sorted(expect):
                    raise ConflictError(
                        f"{rtype} {name} is {sorted(now)}, expected {sorted(expect)}",
                        provider=self.name,
                        code="PreconditionFailed",
                        hint="somebody else changed the record first; re-read and decide again",
                    )
                if_match = current.get("etag") or None

        record_set = models.RecordSet(ttl=ttl)
        if rtype == "A":
            record_set.a_records = [models.ARecord(ipv4_address=v) for v in values]
        elif rtype == "AAAA":
            record_set.aaaa_records = [models.AaaaRecord(ipv6_address=v) for v in values]
        else:
            record_set.txt_records = [models.TxtRecord(value=[v]) for v in values]

        self._call(
            lambda: client.record_sets.create_or_update(
                self.settings.resource_group,
                self._zone,
                relative,
                rtype,
                record_set,
                if_match=if_match,
                if_none_match=if_none_match,
            ),
            f"replace {rtype} {name}",
        )
        back = self.get_record(name, rtype)
        if back is None or sorted(back.values) != sorted(values) or back.ttl != ttl:
            raise ProviderError(
                f"{rtype} {name}: read back {back.to_dict() if back else None} after writing "
                f"{sorted(values)} ttl {ttl}",
                provider=self.name,
                code="ReadBackMismatch",
                hint="a concurrent writer changed it; look at the zone's activity log",
            )
        return back

    def check(self) -> AccountReport:
        s = self.settings
        try:
            client = self._dns()
            zone = as_json(
                self._call(
                    lambda: client.zones.get(s.resource_group, self._zone),
                    f"read zone {self._zone}",
                )
            )
        except AccountBlocked as exc:
            return AccountReport(
                state="blocked", checks=[Check("dns zone", False, str(exc))], reason=exc.message
            )
        except NotFound as exc:
            return AccountReport(
                state="available",
                checks=[Check("dns zone", False, f"{self._zone} not in {s.resource_group}")],
                reason=exc.message,
            )
        except ProviderError as exc:
            return AccountReport(
                state="unknown", checks=[Check("dns zone", False, str(exc))], reason=exc.message
            )
        except Exception as exc:  # credential construction, missing SDK
            return AccountReport(
                state="unknown",
                checks=[Check("azure sdk", False, f"{type(exc).__name__}: {exc}")],
                reason=str(exc),
            )
        servers = dig(zone, "properties", "nameServers") or []
        detail = f"{self._zone} in {s.resource_group}"
        if servers:
            detail += f" (name servers: {', '.join(servers)})"
        return AccountReport(state="available", checks=[Check("dns zone", True, detail)])
