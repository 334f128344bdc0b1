"""Cloudflare DNS, through the official ``cloudflare`` SDK (v4).

A zone at Cloudflare survives the loss of an AWS, Google or Azure account: that is the
point of keeping it there. The SDK is imported lazily (``pip install failover[cloudflare]``).

A change is one API call whenever the record set is one record before and after (a
PATCH of the record: ``content`` and ``ttl`` only, so ``proxied``, comments and tags stay
as they were). Sets of several records are changed with one ``/dns_records/batch``
call, which Cloudflare applies in one database transaction: never delete-then-create.

``expect`` is checked against a fresh read just before the write. Cloudflare has no
conditional write, so this narrows the window in which a stale watcher could overwrite
a newer cutover to the time of one API call; the generation check in the engine's
journal remains the real fence.

The SDK's own retries are switched off (``max_retries=0``): throttling and 5xx are
retried here with the bounds in the settings, honouring ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import TypeVar

from pydantic import Field
from pydantic import SecretStr

from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import ApiDnsSettings
from providers.base import Check
from providers.base import ConflictError
from providers.base import DnsProvider
from providers.base import DnsSettings
from providers.base import Duration
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange
from providers.base import TransientError
from providers.base import as_settings
from providers.retry import call_with_retries
from providers.retry import retry_after_seconds

T = TypeVar("T")

# Cloudflare error codes that mean "these credentials are not accepted", whatever the
# HTTP status they come with (6003/6111: malformed header, 9109: invalid token,
# 10000: authentication error, 10001: unable to authenticate).
AUTH_CODES = {6003, 6100, 6101, 6102, 6103, 6111, 9103, 9106, 9109, 10000, 10001}
AUTO_TTL = 1  # Cloudflare's "automatic" TTL, served as 300 seconds
AUTO_TTL_SECONDS = 300


class CloudflareSettings(ApiDnsSettings):
    """``dns: {type: cloudflare, ...}``: a zone in a Cloudflare account."""

    type: Literal["cloudflare"] = "cloudflare"  # type: ignore[assignment]
    api_token: SecretStr = Field(
        description=(
            "API token with Zone:Read and DNS:Edit on the zone; put `${ENV_VAR}` here, "
            "never the token itself"
        )
    )
    zone_id: str | None = Field(
        default=None, description="the zone's id; found by name when left out"
    )
    timeout: Duration = Field(default=10.0, description="timeout of one API call")


def _fqdn(name: str, zone: str) -> str:
    name = name.strip().rstrip(".").lower()
    zone = zone.strip().rstrip(".").lower()
    if name in ("", "@"):
        return zone
    if name == zone or name.endswith("." + zone):
        return name
    return f"{name}.{zone}"


def _ttl(value: Any) -> int:
    ttl = int(value or AUTO_TTL)
    return AUTO_TTL_SECONDS if ttl == AUTO_TTL else ttl


class CloudflareDns(
    DnsProvider, kind="cloudflare", settings=CloudflareSettings, vendor="cloudflare"
):
    """A zone at Cloudflare, changed through its v4 API."""

    def __init__(self, settings: DnsSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.cfg = as_settings(CloudflareSettings, settings)
        self._sdk: Any = None
        self._zone_id: str | None = self.cfg.zone_id

    # ----------------------------------------------------------------- plumbing

    def _client(self) -> Any:
        if self._sdk is None:
            try:
                import cloudflare
            except ImportError:
                raise ProviderError(
                    "the cloudflare SDK is not installed",
                    provider=self.name,
                    code="missing-sdk",
                    hint="pip install 'failover[cloudflare]'",
                ) from None
            self._sdk = cloudflare.Cloudflare(
                api_token=self.cfg.api_token.get_secret_value(),
                base_url=self.cfg.endpoint or None,
                max_retries=0,
                timeout=self.cfg.timeout,
            )
        return self._sdk

    def _api(self, what: str, fn: Callable[[Any], T]) -> T:
        """Call the SDK; turn whatever it raises into the shared taxonomy."""
        client = self._client()
        try:
            return fn(client)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map(what, exc) from None

    def _map(self, what: str, exc: Exception) -> ProviderError:
        import cloudflare

        if isinstance(exc, cloudflare.APIStatusError):
            status = exc.status_code
            errors = list(getattr(exc, "errors", None) or [])
            code = getattr(errors[0], "code", None) if errors else None
            message = (getattr(errors[0], "message", None) if errors else None) or "no detail"
            code_text = str(code) if code is not None else f"HTTP{status}"
            if status in (401, 403) or code in AUTH_CODES:
                return AccountBlocked(
                    f"token rejected by Cloudflare while {what} (HTTP {status}: {message})",
                    provider=self.name,
                    code=code_text,
                    hint=(
                        "check api_token: it must be active and allow Zone:Read and DNS:Edit "
                        f"on {self.cfg.zone}, and the account must not be suspended"
                    ),
                )
            if status == 429:
                return TransientError(
                    f"Cloudflare is throttling us while {what}: {message}",
                    provider=self.name,
                    code=code_text,
                    retry_after=_retry_after(exc),
                    hint="retried with backoff; lower the request rate if it persists",
                )
            if status >= 500:
                return TransientError(
                    f"Cloudflare failed while {what} (HTTP {status}: {message})",
                    provider=self.name,
                    code=code_text,
                    retry_after=_retry_after(exc),
                )
            return ProviderError(
                f"Cloudflare refused {what} (HTTP {status}: {message})",
                provider=self.name,
                code=code_text,
                hint="look the code up in Cloudflare's API documentation",
            )
        if isinstance(exc, cloudflare.APIConnectionError):  # includes APITimeoutError
            kind = "timed out" if isinstance(exc, cloudflare.APITimeoutError) else "unreachable"
            return TransientError(
                f"Cloudflare API {kind} while {what}",
                provider=self.name,
                code="timeout" if kind == "timed out" else "connection",
            )
        return ProviderError(
            f"unexpected answer from Cloudflare while {what}: {type(exc).__name__}: {exc}",
            provider=self.name,
            code=type(exc).__name__,
        )

    def _retry(self, fn: Callable[[], T]) -> T:
        return call_with_retries(
            fn, attempts=self.cfg.retry_attempts, max_time=self.cfg.retry_max_time
        )

    def _zone(self) -> str:
        if self._zone_id:
            return self._zone_id
        zone = self.cfg.zone.rstrip(".").lower()
        page = self._api(
            f"looking up zone {zone}",
            lambda c: c.zones.list(name=zone, per_page=50),
        )
        for item in page.result or []:
            if str(getattr(item, "name", "")).lower() == zone:
                self._zone_id = str(item.id)
                return self._zone_id
        raise ProviderError(
            f"zone {zone} is not in the Cloudflare account (or the token cannot see it)",
            provider=self.name,
            code="zone-not-found",
            hint="give the token Zone:Read on the zone, or set dns.zone_id",
        )

    def _records(self, zone_id: str, fqdn: str, rtype: str) -> list[Any]:
        page = self._api(
            f"listing {fqdn} {rtype}",
            lambda c: c.dns.records.list(
                zone_id=zone_id, name={"exact": fqdn}, type=rtype, per_page=100
            ),
        )
        return [r for r in (page.result or []) if str(r.name).lower() == fqdn]

    def _record(self, fqdn: str, rtype: str, records: list[Any]) -> Record | None:
        if not records:
            return None
        return Record(
            fqdn,
            rtype,
            sorted(str(r.content) for r in records),
            min(_ttl(getattr(r, "ttl", AUTO_TTL)) for r in records),
        )

    # ----------------------------------------------------------------- interface

    def get_record(self, name: str, rtype: str = "A") -> Record | None:
        fqdn = _fqdn(name, self.cfg.zone)
        rtype = rtype.upper()
        return self._retry(
            lambda: self._record(fqdn, rtype, self._records(self._zone(), fqdn, rtype))
        )

    def replace_record(self, change: RecordChange) -> Record:
        name, rtype, values, ttl, expect = change
        fqdn = _fqdn(name, self.cfg.zone)
        rtype = rtype.upper()
        wanted = sorted({str(v).strip() for v in values})
        expected = None if expect is None else sorted({str(v).strip() for v in expect})
        return self._retry(lambda: self._set(fqdn, rtype, wanted, int(ttl), expected))

    def _set(
        self, fqdn: str, rtype: str, wanted: list[str], ttl: int, expected: list[str] | None
    ) -> Record:
        zone_id = self._zone()
        current = self._records(zone_id, fqdn, rtype)
        now = sorted(str(r.content) for r in current)
        proxied = any(bool(getattr(r, "proxied", False)) for r in current)

        def settled(records: list[Any]) -> bool:
            return sorted(str(r.content) for r in records) == wanted and all(
                bool(getattr(r, "proxied", False)) or int(getattr(r, "ttl", 0) or 0) == ttl
                for r in records
            )

        if settled(current):
            # Already what we want (maybe our own earlier attempt, whose answer was lost).
            return self._record(fqdn, rtype, current) or Record(fqdn, rtype, [], 0)
        if expected is not None and now not in (expected, wanted):
            raise ConflictError(
                f"someone else changed the record {fqdn} {rtype}: expected "
                f"{expected or 'no record'}, Cloudflare has {now or 'no record'}",
                provider=self.name,
                code="precondition",
                hint="re-read the record and decide again",
            )
        if len(current) == 1 and len(wanted) == 1:
            record = current[0]
            body: dict[str, Any] = {"content": wanted[0]}
            if not getattr(record, "proxied", False):
                body["ttl"] = ttl  # a proxied record's TTL is always automatic
            self._api(
                f"updating {fqdn} {rtype}",
                lambda c: c.dns.records.edit(
                    record.id, zone_id=zone_id, name=fqdn, type=rtype, **body
                ),
            )
        elif not current and len(wanted) == 1:
            self._api(
                f"creating {fqdn} {rtype}",
                lambda c: c.dns.records.create(
                    zone_id=zone_id,
                    name=fqdn,
                    type=rtype,
                    content=wanted[0],
                    ttl=ttl,
                    proxied=False,
                ),
            )
        else:
            self._batch(zone_id, fqdn, rtype, current, wanted, ttl, proxied)
        after = self._records(zone_id, fqdn, rtype)
        self.context.log(f"dns: cloudflare {fqdn} {rtype} -> {wanted or 'removed'}")
        return self._record(fqdn, rtype, after) or Record(fqdn, rtype, [], 0)

    def _batch(
        self,
        zone_id: str,
        fqdn: str,
        rtype: str,
        current: list[Any],
        wanted: list[str],
        ttl: int,
        proxied: bool,
    ) -> None:
        """Several records: one batch (one transaction at Cloudflare). Records that keep
        their value stay; the others are re-pointed (patch), added or deleted."""
        keep = [r for r in current if str(r.content) in wanted]
        spare = [r for r in current if str(r.content) not in wanted]
        missing = [v for v in wanted if v not in {str(r.content) for r in keep}]
        patches: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        posts: list[dict[str, Any]] = []
        for record in keep:
            if not getattr(record, "proxied", False) and int(record.ttl or 0) != ttl:
                patches.append({"id": record.id, "name": fqdn, "type": rtype, "ttl": ttl})
        for record, value in zip(spare, missing, strict=False):
            patch: dict[str, Any] = {"id": record.id, "name": fqdn, "type": rtype, "content": value}
            if not getattr(record, "proxied", False):
                patch["ttl"] = ttl
            patches.append(patch)
        deletes.extend({"id": r.id} for r in spare[len(missing) :])
        posts.extend(
            {
                "name": fqdn,
                "type": rtype,
                "content": v,
                "ttl": AUTO_TTL if proxied else ttl,
                "proxied": proxied,
            }
            for v in missing[len(spare) :]
        )
        self._api(
            f"replacing {fqdn} {rtype}",
            lambda c: c.dns.records.batch(
                zone_id=zone_id, deletes=deletes, patches=patches, posts=posts
            ),
        )

    def check(self) -> AccountReport:
        checks: list[Check] = []
        try:
            zone_id = self._zone()
        except AccountBlocked as exc:
            checks.append(Check("token accepted", False, exc.message))
            return AccountReport("blocked", checks, exc.message)
        except ProviderError as exc:
            checks.append(Check(f"zone {self.cfg.zone}", False, exc.message))
            return AccountReport("unknown", checks, exc.message)
        checks.append(Check("token accepted", True, "Cloudflare answered with the token"))
        checks.append(Check(f"zone {self.cfg.zone}", True, f"found (id {zone_id})"))
        try:
            self._api(
                "reading DNS records",
                lambda c: c.dns.records.list(zone_id=zone_id, per_page=5),
            )
        except AccountBlocked as exc:
            checks.append(Check("DNS records readable", False, exc.message))
            return AccountReport("blocked", checks, exc.message)
        except ProviderError as exc:
            checks.append(Check("DNS records readable", False, exc.message))
            return AccountReport("unknown", checks, exc.message)
        checks.append(Check("DNS records readable", True, "the token may read the zone's records"))
        if self.cfg.ttl != AUTO_TTL and self.cfg.ttl < 60:
            checks.append(
                Check(
                    "ttl",
                    False,
                    f"ttl {self.cfg.ttl} is below 60: Cloudflare accepts it on Enterprise "
                    "zones only (30); elsewhere the cutover's update would be refused",
                    level="warning",
                )
            )
        return AccountReport("available", checks)

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()
            self._sdk = None


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    return retry_after_seconds(response.headers.get("retry-after"))
