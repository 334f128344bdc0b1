"""What the GCP compute provider and the Cloud DNS backend share: credentials and errors.

The Google SDKs are imported inside the functions, only when a Google provider is used.

Credentials, in this order:

1. ``credentials_file``: any file ``google.auth.load_credentials_from_file`` reads
   (service account key, authorized user, workload identity federation config);
2. an ``endpoint`` that is plain ``http://`` on a loopback address (a local double or
   emulator): anonymous credentials, so that no token ever travels unencrypted and no
   credential lookup happens in tests;
3. otherwise Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
   ``gcloud auth application-default login``, the metadata server).

A plain ``http://`` endpoint anywhere else is refused by the settings validator.

Errors arrive two ways and both are mapped onto the taxonomy of :mod:`providers.base`,
keeping Google's own reason as ``code``: HTTP errors (``error.errors[].reason`` and the
``google.rpc.ErrorInfo`` reason in ``error.details``) and errors inside a finished
Compute operation (``operation.error.errors[].code``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from providers.base import AccountBlocked
from providers.base import CapacityError
from providers.base import ConflictError
from providers.base import NotFound
from providers.base import ProviderError
from providers.base import QuotaError
from providers.base import TransientError
from providers.retry import retry_after_seconds
from providers.util import is_loopback_http

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)

# Refusals of the whole project/credentials: the provider is unusable.
BLOCKED_REASONS = frozenset(
    {
        "accountDisabled",
        "billingNotEnabled",
        "BILLING_DISABLED",
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        "IAM_PERMISSION_DENIED",
        "forbidden",
        "CONSUMER_SUSPENDED",
        "CONSUMER_INVALID",
        "USER_PROJECT_DENIED",
        "SERVICE_DISABLED",
        "accessNotConfigured",
        "authError",
        "insufficientPermissions",
        "ACCESS_TOKEN_EXPIRED",
        "ACCESS_TOKEN_TYPE_UNSUPPORTED",
        "CREDENTIALS_MISSING",
    }
)
# No room in this zone: try the next zone, then the next provider.
CAPACITY_CODES = frozenset(
    {
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "RESOURCE_NOT_READY",
        "UNSUPPORTED_OPERATION",
    }
)
QUOTA_CODES = frozenset({"QUOTA_EXCEEDED", "quotaExceeded"})
RATE_CODES = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED", "backendError"}
)
NOT_FOUND_CODES = frozenset({"notFound", "RESOURCE_NOT_FOUND"})
CONFLICT_CODES = frozenset({"alreadyExists", "conditionNotMet", "RESOURCE_ALREADY_EXISTS"})
_CODE_IN_MESSAGE = re.compile(r"\b(" + "|".join(sorted(CAPACITY_CODES | QUOTA_CODES)) + r")\b")

_HINTS = {
    "blocked": "the project refuses these credentials or is suspended/without billing; "
    "check `gcloud auth application-default print-access-token`, the project's billing "
    "and IAM roles (roles/compute.instanceAdmin.v1)",
    "capacity": "Google has no room for this machine type in this zone right now; "
    "the next zone is tried, or add zones / another machine_type",
    "quota": "a regional quota of the project is used up; raise it in the console "
    "(IAM & Admin > Quotas) or use another region",
    "transient": "Google's API throttled or failed; retried with backoff",
    "not_found": "the resource does not exist (any more)",
    "conflict": "somebody else changed it first",
    "error": "see the message; Google's reason is in brackets",
}


def region_of(zone: str) -> str:
    """``us-central1-a`` -> ``us-central1``."""
    return zone.rsplit("-", 1)[0] if zone.count("-") >= 2 else zone


def check_endpoint(value: str | None) -> str | None:
    """Settings validator: ``https://`` anywhere, ``http://`` only on loopback."""
    if value is None:
        return None
    value = value.rstrip("/")
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if is_loopback_http(value):
        return value
    raise ValueError(
        "endpoint must be an https:// URL (or http:// on a loopback address, for tests)"
    )


def load_credentials(credentials_file: str | None, endpoint: str | None, provider: str) -> Any:
    """The credentials for a client (see the module docstring for the order)."""
    import google.auth
    from google.auth import exceptions as auth_exceptions
    from google.auth.credentials import AnonymousCredentials

    try:
        if credentials_file:
            creds, _ = google.auth.load_credentials_from_file(credentials_file, scopes=SCOPES)
            return creds
        if is_loopback_http(endpoint):
            return AnonymousCredentials()
        creds, _ = google.auth.default(scopes=SCOPES)
        return creds
    except (auth_exceptions.DefaultCredentialsError, OSError, ValueError) as exc:
        source = f"credentials_file {credentials_file}" if credentials_file else "ADC"
        raise AccountBlocked(
            f"no usable Google credentials ({source}): {type(exc).__name__}",
            provider=provider,
            code="CREDENTIALS_MISSING",
            hint="set credentials_file, GOOGLE_APPLICATION_CREDENTIALS, or run "
            "`gcloud auth application-default login`",
        ) from None


def _reasons(exc: Any) -> list[str]:
    out: list[str] = []
    info = getattr(exc, "reason", None)
    if isinstance(info, str) and info:
        out.append(info)
    for err in getattr(exc, "errors", None) or []:
        if isinstance(err, dict) and err.get("reason"):
            out.append(str(err["reason"]))
    return out


def _retry_after(exc: Any) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    return retry_after_seconds(headers.get("Retry-After")) if headers else None


def _short(message: str, limit: int = 400) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def classify(codes: Iterable[str], status: int | None, message: str = "") -> type[ProviderError]:
    """The taxonomy class for a set of Google reasons/codes and an HTTP status."""
    found = set(codes)
    found.update(_CODE_IN_MESSAGE.findall(message or ""))
    if found & CAPACITY_CODES:
        return CapacityError
    if found & QUOTA_CODES:
        return QuotaError
    if found & RATE_CODES or status == 429 or (status is not None and status >= 500):
        return TransientError
    if status == 401 or found & BLOCKED_REASONS or status == 403:
        return AccountBlocked
    if status == 404 or found & NOT_FOUND_CODES:
        return NotFound
    if status in (409, 412) or found & CONFLICT_CODES:
        return ConflictError
    return ProviderError


def _pick_code(codes: list[str], cls: type[ProviderError], status: int | None) -> str | None:
    wanted = {
        CapacityError: CAPACITY_CODES,
        QuotaError: QUOTA_CODES,
        TransientError: RATE_CODES,
        AccountBlocked: BLOCKED_REASONS,
    }.get(cls, frozenset())
    for code in codes:
        if code in wanted:
            return code
    if codes:
        return codes[0]
    return str(status) if status else None


def make_error(
    cls: type[ProviderError],
    message: str,
    *,
    provider: str,
    code: str | None,
    zone: str | None,
    retry_after: float | None = None,
    region: str | None = None,
) -> ProviderError:
    scope: str | None = None
    if cls is CapacityError:
        scope = zone
    elif cls is QuotaError:
        scope = region or (region_of(zone) if zone else None)
    where = f" (zone {zone})" if zone and cls in (CapacityError, QuotaError) else ""
    return cls(
        f"{message}{where}",
        provider=provider,
        code=code,
        hint=_HINTS.get(cls.kind),
        scope=scope,
        retry_after=retry_after if cls is TransientError else None,
    )


def map_error(
    exc: BaseException, *, provider: str, zone: str | None = None, what: str = ""
) -> ProviderError:
    """Any exception from a Google SDK call -> one of the taxonomy errors."""
    if isinstance(exc, ProviderError):
        return exc
    from google.api_core import exceptions as core

    prefix = f"{what}: " if what else ""
    if isinstance(exc, core.GoogleAPICallError):
        status = exc.code if isinstance(exc.code, int) else None
        codes = _reasons(exc)
        message = _short(getattr(exc, "message", None) or str(exc))
        cls = classify(codes, status, message)
        return make_error(
            cls,
            f"{prefix}{message}",
            provider=provider,
            code=_pick_code(codes, cls, status),
            zone=zone,
            retry_after=_retry_after(exc),
        )
    return _unanswered(exc, prefix, provider)


def _unanswered(exc: BaseException, prefix: str, provider: str) -> ProviderError:
    """The taxonomy error for a call the API did not answer: credentials that yield no
    token, retries given up, a transport that failed, anything else unexpected."""
    from google.api_core import exceptions as core
    from google.auth import exceptions as auth_exceptions

    def transient(message: str, code: str) -> TransientError:
        return TransientError(
            f"{prefix}{message}", provider=provider, code=code, hint=_HINTS["transient"]
        )

    def blocked(message: str, code: str, hint: str = _HINTS["blocked"]) -> AccountBlocked:
        return AccountBlocked(f"{prefix}{message}", provider=provider, code=code, hint=hint)

    if isinstance(exc, core.RetryError):
        return transient(f"gave up retrying: {_short(str(exc))}", "RetryError")
    if isinstance(exc, auth_exceptions.RefreshError):
        if getattr(exc, "retryable", False):
            return transient(f"token refresh failed: {_short(str(exc))}", "RefreshError")
        return blocked("Google refused to issue a token for these credentials", "RefreshError")
    if isinstance(exc, auth_exceptions.InvalidOperation):
        # google-auth answers a 401 by refreshing the token; credentials that cannot be
        # refreshed (anonymous ones, against a loopback endpoint) raise this instead.
        return blocked(
            "the API answered 401 Unauthenticated and the credentials cannot be refreshed", "401"
        )
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return blocked(
            "no Google credentials found",
            "CREDENTIALS_MISSING",
            "set credentials_file or run `gcloud auth application-default login`",
        )
    if isinstance(exc, auth_exceptions.TransportError):
        return transient(
            f"cannot reach Google's auth endpoint: {type(exc).__name__}", "TransportError"
        )
    try:
        import requests

        if isinstance(exc, requests.exceptions.Timeout):
            return transient("request timed out", "Timeout")
        if isinstance(exc, requests.exceptions.RequestException):
            return transient(f"cannot reach the API: {type(exc).__name__}", type(exc).__name__)
    except ImportError:  # pragma: no cover - requests comes with google-api-core
        pass
    if isinstance(exc, TimeoutError | ConnectionError):
        return TransientError(
            f"{prefix}{type(exc).__name__}", provider=provider, code=type(exc).__name__
        )
    return ProviderError(
        f"{prefix}unexpected {type(exc).__name__}: {_short(str(exc))}",
        provider=provider,
        code=type(exc).__name__,
    )


def map_operation_error(
    op: Any, *, provider: str, zone: str | None, what: str = ""
) -> ProviderError:
    """A finished Compute operation with ``error.errors[]`` -> one taxonomy error."""
    errors = list(op.error.errors) if op.error else []
    codes = [e.code for e in errors if e.code]
    message = "; ".join(f"{e.code}: {e.message}" for e in errors) or (
        op.http_error_message or "operation failed"
    )
    status = int(op.http_error_status_code) if op.http_error_status_code else None
    cls = classify(codes, status, "")
    region = None
    if cls is QuotaError:
        for e in errors:
            for detail in e.error_details:
                dims = dict(detail.quota_info.dimensions) if detail.quota_info else {}
                region = region or dims.get("region")
    prefix = f"{what}: " if what else ""
    return make_error(
        cls,
        f"{prefix}operation {op.name} failed: {_short(message)}",
        provider=provider,
        code=_pick_code(codes, cls, status),
        zone=zone,
        region=region,
    )


def operation_failed(op: Any) -> bool:
    return bool(op.error and len(op.error.errors)) or bool(
        op.http_error_status_code and op.http_error_status_code >= 400
    )
