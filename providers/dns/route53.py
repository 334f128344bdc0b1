"""Amazon Route 53 as the DNS backend (``dns: {type: route53}``).

The hosted zone is found by name (``zone``; ``zone_id`` pins one when several zones share
a name). A cutover is one change batch, atomic on Route 53's side, never a delete in one
request followed by a create in another; the cutovers of a round's parallel moves go in
one batch (:meth:`replace_records`, see :mod:`providers.dns._batch`). The backend then
waits, bounded by ``change_timeout``, for the batch to reach ``INSYNC`` (every Route 53
name server answers it) and returns the records as Route 53 now reports them.
``Throttling`` and ``PriorRequestNotComplete`` (another change of the zone still pending)
are retried with backoff within ``retry_attempts`` and ``retry_max_time``.

With ``expect`` the write is conditional: when the record's current values are not
``expect`` (somebody else cut over in between) it raises ``ConflictError`` and changes
nothing. The backend reads the sets first, then sends a conditional change as a DELETE of
exactly the set it read and a CREATE of the new one (``expect == []``: a CREATE alone).
Route 53 refuses the whole batch with ``InvalidChangeBatch`` when a DELETE no longer
matches or a CREATE meets an existing set; the changes are then sent one by one, so only
the change whose record moved fails. A batch carries at most ``max_batch`` (100) changes,
well under Route 53's 1,000 records and 32,000 characters per batch.

boto3 is imported only when the backend is used (see :mod:`providers._aws`).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Literal
from typing import TypeVar

from pydantic import Field

from providers import _aws
from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import ApiDnsSettings
from providers.base import Check
from providers.base import DnsSettings
from providers.base import Duration
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange
from providers.base import as_settings
from providers.dns._batch import BatchingDns

T = TypeVar("T")

_ESCAPE = re.compile(r"\\(\d{3})")


class Route53Settings(ApiDnsSettings):
    """``dns: {type: route53, zone: example.com, ...}``. Credentials come from boto3's
    own chain (``profile``, ``AWS_*`` variables, an instance role)."""

    type: Literal["route53"]
    zone: str = Field(description="the hosted zone's domain name, e.g. example.com")
    ttl: int = Field(default=30, ge=0, description="TTL of the records the toolkit writes")
    zone_id: str | None = Field(
        default=None, description="hosted zone id, when several zones share the name"
    )
    profile: str | None = Field(
        default=None, description="named profile of ~/.aws/config (default: the SDK's chain)"
    )
    region: str | None = Field(
        default=None, description="signing region (Route 53 is global; default us-east-1)"
    )
    change_timeout: Duration = Field(
        default=120.0, description="how long to wait for a change to reach INSYNC"
    )
    request_timeout: Duration = Field(
        default=30.0, description="connect/read timeout of one API request"
    )


def _unescape(name: str) -> str:
    """Route 53 returns some characters (``*``) as octal escapes: ``\\052``."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), name)


def _bare(name: str) -> str:
    return _unescape(name).rstrip(".").lower()


class Route53Dns(BatchingDns, kind="route53", settings=Route53Settings, vendor="aws"):
    """Route 53 records through boto3."""

    conflict_code = "PreconditionFailed"

    # One client made under a lock; the zone id cache is one idempotent assignment.
    shared_across_threads = True

    def __init__(self, settings: DnsSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.cfg = as_settings(Route53Settings, settings)
        self._client_obj: Any = None
        self._zone: tuple[str, bool] | None = None

    # ------------------------------------------------------------------ plumbing

    @property
    def _r53(self) -> Any:
        # Made once under the lock boto3 sessions need (see providers._aws.BUILD_LOCK);
        # the client itself is thread-safe, so one instance serves parallel moves.
        client = self._client_obj
        if client is not None:
            return client
        with _aws.BUILD_LOCK:
            if self._client_obj is None:

                def make() -> Any:
                    region = self.cfg.region or "us-east-1"
                    session = _aws.make_session(self.cfg.profile, region)
                    return _aws.make_client(
                        session,
                        "route53",
                        region=region,
                        endpoint=self.cfg.endpoint,
                        timeout=self.cfg.request_timeout,
                    )

                self._client_obj = _aws.once(make, self.name)
            return self._client_obj

    def _call(self, fn: Callable[[], T]) -> T:
        return _aws.call(
            fn,
            provider=self.name,
            attempts=self.cfg.retry_attempts,
            max_time=self.cfg.retry_max_time,
        )

    @property
    def zone(self) -> str:
        return self.cfg.zone.rstrip(".").lower()

    def fqdn(self, name: str) -> str:
        """``www`` or ``www.example.com`` or ``@`` -> ``www.example.com`` (no final dot)."""
        bare = name.rstrip(".").lower()
        if bare in ("", "@"):
            return self.zone
        if bare == self.zone or bare.endswith("." + self.zone):
            return bare
        return f"{bare}.{self.zone}"

    def _zone_id(self) -> str:
        if self._zone is None:
            self._zone = self._find_zone()
        return self._zone[0]

    def _find_zone(self) -> tuple[str, bool]:
        """(zone id, private?) of the hosted zone named ``zone``; refuses a missing one."""
        if self.cfg.zone_id:
            zid = self.cfg.zone_id.split("/")[-1]
            resp = self._call(lambda: self._r53.get_hosted_zone(Id=zid))
            info = resp.get("HostedZone") or {}
            if _bare(str(info.get("Name", ""))) != self.zone:
                raise ProviderError(
                    f"hosted zone {zid} is {info.get('Name')!r}, not {self.zone}",
                    provider=self.name,
                    code="ZoneMismatch",
                    hint="fix `zone` or `zone_id`",
                )
            return zid, bool((info.get("Config") or {}).get("PrivateZone"))
        found: list[dict[str, Any]] = []
        marker: dict[str, str] = {"DNSName": self.zone + "."}
        while True:
            resp = self._call(functools.partial(self._list_zones, dict(marker)))
            zones = resp.get("HostedZones") or []
            same = [z for z in zones if _bare(str(z.get("Name", ""))) == self.zone]
            found.extend(same)
            # Results are sorted by name: stop at the first zone past ours.
            if len(same) < len(zones) or not resp.get("IsTruncated"):
                break
            marker = {
                "DNSName": str(resp.get("NextDNSName", "")),
                "HostedZoneId": str(resp.get("NextHostedZoneId", "")),
            }
        if not found:
            raise ProviderError(
                f"no hosted zone named {self.zone} in this AWS account",
                provider=self.name,
                code="NoSuchHostedZone",
                hint="create the hosted zone in Route 53 (and delegate the domain to it), "
                "or fix `zone`",
            )
        public = [z for z in found if not (z.get("Config") or {}).get("PrivateZone")]
        pick = public or found
        if len(pick) > 1:
            ids = ", ".join(str(z["Id"]).split("/")[-1] for z in pick)
            raise ProviderError(
                f"several hosted zones are named {self.zone}: {ids}",
                provider=self.name,
                code="AmbiguousZone",
                hint="set `zone_id` to the one to use",
            )
        zone = pick[0]
        return str(zone["Id"]).split("/")[-1], bool((zone.get("Config") or {}).get("PrivateZone"))

    def _list_zones(self, marker: dict[str, str]) -> Any:
        return self._r53.list_hosted_zones_by_name(**marker)

    # ------------------------------------------------------------------ records

    @staticmethod
    def _to_wire(rtype: str, value: str) -> str:
        if rtype == "TXT" and not (value.startswith('"') and value.endswith('"')):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return value

    @staticmethod
    def _from_wire(rtype: str, value: str) -> str:
        if rtype == "TXT" and len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return value

    def _normal(self, rtype: str, values: Sequence[str]) -> list[str]:
        out = []
        for value in values:
            value = value.strip()
            if rtype in ("CNAME", "NS", "MX", "PTR", "SRV"):
                value = value.rstrip(".").lower()
            out.append(value)
        return sorted(out)

    def _get_raw(self, fqdn: str, rtype: str) -> dict[str, Any] | None:
        zid = self._zone_id()
        resp = self._call(
            lambda: self._r53.list_resource_record_sets(
                HostedZoneId=zid, StartRecordName=fqdn + ".", StartRecordType=rtype, MaxItems="1"
            )
        )
        for rrset in resp.get("ResourceRecordSets") or []:
            if _bare(str(rrset.get("Name", ""))) == fqdn and rrset.get("Type") == rtype:
                return dict(rrset)
        return None

    def _list_sets(
        self, keys: set[tuple[str, str]], max_pages: int
    ) -> tuple[dict[tuple[str, str], dict[str, Any]], bool]:
        """The zone's sets among ``keys``, listing at most ``max_pages`` pages; and whether
        the listing reached the zone's end (a key not found is then absent)."""
        zid = self._zone_id()
        found: dict[tuple[str, str], dict[str, Any]] = {}
        start: dict[str, str] = {}
        for _ in range(max_pages):
            resp = self._call(
                functools.partial(
                    self._r53.list_resource_record_sets, HostedZoneId=zid, MaxItems="300", **start
                )
            )
            for rrset in resp.get("ResourceRecordSets") or []:
                key = (_bare(str(rrset.get("Name", ""))), str(rrset.get("Type", "")))
                if key in keys:
                    found.setdefault(key, dict(rrset))
            if not resp.get("IsTruncated") or len(found) == len(keys):
                return found, True
            start = {"StartRecordName": str(resp.get("NextRecordName", ""))}
            start["StartRecordType"] = str(resp.get("NextRecordType", ""))
            if resp.get("NextRecordIdentifier"):
                start["StartRecordIdentifier"] = str(resp["NextRecordIdentifier"])
        return found, False

    def _read_sets(self, changes: Sequence[RecordChange]) -> list[dict[str, Any] | None]:
        keys = [(self.fqdn(c.name), c.rtype.upper()) for c in changes]
        if len(keys) == 1:
            return [self._get_raw(*keys[0])]
        # One listing of the zone instead of a request per record; in a zone so large
        # that the listing would cost more, the sets it did not reach are read singly.
        found, complete = self._list_sets(set(keys), max_pages=max(1, len(keys) // 2))
        return [found.get(k) if complete or k in found else self._get_raw(*k) for k in keys]

    def _as_record(self, change: RecordChange, raw: dict[str, Any] | None) -> Record:
        fqdn, rtype = self.fqdn(change.name), change.rtype.upper()
        if raw is None:
            return Record(name=fqdn, type=rtype, values=[], ttl=change.ttl)
        if "AliasTarget" in raw:
            target = str(raw["AliasTarget"].get("DNSName", "")).rstrip(".")
            return Record(name=fqdn, type=rtype, values=[f"ALIAS {target}"], ttl=0)
        wire = raw.get("ResourceRecords") or []
        values = [self._from_wire(rtype, str(r.get("Value", ""))) for r in wire]
        return Record(name=fqdn, type=rtype, values=values, ttl=int(raw.get("TTL", 0)))

    def get_record(self, name: str, rtype: str = "A") -> Record | None:
        change = RecordChange(name, rtype.upper(), [], 0, None)
        raw = self._get_raw(self.fqdn(name), change.rtype)
        return None if raw is None else self._as_record(change, raw)

    def _wire(self, change: RecordChange, current: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The actions of one change. Conditional changes name the exact set they replace
        (DELETE it, CREATE the new one): Route 53 refuses the whole batch when a DELETE
        does not match the set it holds, so a record moved since the read is not undone."""
        rtype = change.rtype.upper()
        new = {
            "Name": self.fqdn(change.name) + ".",
            "Type": rtype,
            "TTL": int(change.ttl),
            "ResourceRecords": [{"Value": self._to_wire(rtype, v)} for v in change.values],
        }
        if not change.values:
            return [{"Action": "DELETE", "ResourceRecordSet": current}]
        if change.expect is None:
            return [{"Action": "UPSERT", "ResourceRecordSet": new}]
        if current is None:
            return [{"Action": "CREATE", "ResourceRecordSet": new}]
        return [
            {"Action": "DELETE", "ResourceRecordSet": current},
            {"Action": "CREATE", "ResourceRecordSet": new},
        ]

    def _send(self, pending: Sequence[tuple[RecordChange, dict[str, Any] | None]]) -> None:
        zid = self._zone_id()
        actions = [a for change, current in pending for a in self._wire(change, current)]
        first = pending[0][0]
        what = f"{self.fqdn(first.name)} {first.rtype.upper()}"
        if len(pending) > 1:
            what = f"{len(pending)} record sets"
        batch = {"Comment": f"failover: {what}", "Changes": actions}
        resp = self._call(
            lambda: self._r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch=batch)
        )
        info = resp.get("ChangeInfo") or {}
        self._wait_insync(str(info.get("Id", "")), str(info.get("Status", "")))

    def _refused(self, exc: ProviderError) -> bool:
        # InvalidChangeBatch: a DELETE that does not match, a CREATE over an existing
        # set; moto answers InvalidInput for the former.
        return exc.code in ("InvalidChangeBatch", "InvalidInput")

    def _wait_insync(self, change_id: str, status: str) -> None:
        """Poll GetChange until INSYNC, bounded by ``change_timeout``."""
        if not change_id or status == "INSYNC":
            return
        deadline = time.monotonic() + self.cfg.change_timeout
        delay = 0.25
        while True:
            resp = self._call(lambda: self._r53.get_change(Id=change_id))
            status = str((resp.get("ChangeInfo") or {}).get("Status", ""))
            if status == "INSYNC":
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProviderError(
                    f"change {change_id.split('/')[-1]} still {status or 'unknown'} after "
                    f"{self.cfg.change_timeout:g}s",
                    provider=self.name,
                    code="ChangeNotInSync",
                    hint="Route 53 accepted the change but has not propagated it yet; it "
                    "usually completes within a minute (raise `change_timeout`)",
                )
            time.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)

    # ------------------------------------------------------------------ doctor

    def check(self) -> AccountReport:
        checks: list[Check] = []
        try:
            zid, private = _aws.call(
                self._find_zone,
                provider=self.name,
                attempts=min(2, self.cfg.retry_attempts),
                max_time=10.0,
            )
        except AccountBlocked as exc:
            checks.append(Check("credentials", False, str(exc)))
            return AccountReport(state="blocked", checks=checks, reason=str(exc))
        except ProviderError as exc:
            if exc.code in ("NoSuchHostedZone", "AmbiguousZone", "ZoneMismatch"):
                checks.append(Check("credentials", True, "Route 53 answered"))
                checks.append(Check("zone", False, str(exc)))
                # The API answers, but no record can be written: not usable as configured.
                return AccountReport(state="unknown", checks=checks, reason=str(exc))
            checks.append(Check("api", False, str(exc)))
            return AccountReport(state="unknown", checks=checks, reason=str(exc))
        self._zone = (zid, private)
        checks.append(Check("credentials", True, "Route 53 answered"))
        detail = f"{self.zone} is hosted zone {zid}" + (" (private)" if private else "")
        try:
            info = self._call(lambda: self._r53.get_hosted_zone(Id=zid))
            servers = (info.get("DelegationSet") or {}).get("NameServers") or []
            if servers:
                detail += f", name servers {', '.join(servers)}"
        except ProviderError:
            pass
        checks.append(Check("zone", True, detail))
        if private:
            checks.append(
                Check(
                    "zone_public",
                    False,
                    "the zone is private: only resolvers inside its VPCs see the records",
                    level="warning",
                )
            )
        return AccountReport(state="available", checks=checks)

    def close(self) -> None:
        if self._client_obj is not None:
            close = getattr(self._client_obj, "close", None)
            if callable(close):
                close()
            self._client_obj = None
