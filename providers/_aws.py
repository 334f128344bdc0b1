"""What the AWS compute provider and the Route 53 DNS backend share: clients and errors.

boto3 and botocore are imported inside the functions, only when an AWS provider is
actually used. Every call to AWS goes through :func:`call`, which turns botocore's
exceptions into the taxonomy of :mod:`providers.base` (keeping the AWS error code) and
retries :class:`~providers.base.TransientError` with :func:`providers.retry.call_with_retries`.
botocore's own retries are switched off so that the bounds in the config are the only ones.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from providers.base import AccountBlocked
from providers.base import CapacityError
from providers.base import NotFound
from providers.base import ProviderError
from providers.base import QuotaError
from providers.base import TransientError
from providers.retry import call_with_retries
from providers.retry import retry_after_seconds

T = TypeVar("T")

# The error codes of the issue, and a few siblings AWS uses for the same thing elsewhere.
BLOCKED_CODES = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "OptInRequired",
        "Blocked",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccountSuspended",
        # What STS, Route 53 and other non-EC2 APIs answer for the same refusals.
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
    }
)
CAPACITY_CODES = frozenset({"InsufficientInstanceCapacity", "Unsupported"})
QUOTA_CODES = frozenset({"InstanceLimitExceeded", "VcpuLimitExceeded"})
TRANSIENT_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ServiceUnavailable",
        "InternalError",
        "Unavailable",
        "PriorRequestNotComplete",  # Route 53: the previous change of this zone is still pending
    }
)
NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound"})

_HINTS = {
    "blocked": "the AWS account or these credentials are refused; check the credentials "
    "(profile, AWS_* variables), the IAM permissions and the account's standing",
    "capacity": "AWS has no capacity for this instance type here; another zone, region or "
    "instance type may have room",
    "quota": "the account's EC2 quota is exhausted in this region; ask AWS for more "
    "(Service Quotas) or use another region",
    "transient": "AWS throttled or failed the request; it was retried and may work later",
    "not_found": "the resource no longer exists",
}

_ACCESS_KEY = re.compile(r"\b(AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")


def scrub(text: str) -> str:
    """Remove anything that looks like an AWS access key id from an AWS message."""
    return _ACCESS_KEY.sub("***", text)


_LOADER: Any = None
# boto3 sessions are not thread-safe, its clients are ("Multithreading or
# multiprocessing with clients", boto3 guide; boto/boto3#1592): sessions and the clients
# made from them are built under this one lock, which also guards the shared loader.
# Building happens once per provider and service, so the lock is never contended for long.
BUILD_LOCK = threading.RLock()


def make_session(profile: str | None, region: str | None) -> Any:
    """A boto3 session using the SDK's own credential chain (optionally a named profile).

    The sessions of one process share botocore's data loader, so the (large) service
    models are parsed once, not once per provider instance.
    """
    global _LOADER
    import boto3
    import botocore.loaders
    import botocore.session

    with BUILD_LOCK:
        if _LOADER is None:
            _LOADER = botocore.loaders.create_loader()
        core = botocore.session.Session(profile=profile or None)
        core.register_component("data_loader", _LOADER)
        session = boto3.session.Session(botocore_session=core, region_name=region or None)
        paths = _LOADER.search_paths
        paths[:] = list(dict.fromkeys(paths))  # boto3 appends its data path per session
        return session


def make_client(
    session: Any, service: str, *, region: str, endpoint: str | None, timeout: float
) -> Any:
    """A client of ``session`` (botocore retries off), built under the session lock: the
    client may then be used from any number of threads at once."""
    with BUILD_LOCK:
        return session.client(
            service,
            region_name=region,
            endpoint_url=endpoint or None,
            config=client_config(timeout),
        )


def client_config(timeout: float) -> Any:
    """botocore retries off (we retry ourselves, within the configured bounds)."""
    from botocore.config import Config

    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=max(timeout, 0.1),
        read_timeout=max(timeout, 0.1),
    )


def map_error(exc: BaseException, provider: str, scope: str | None = None) -> ProviderError:
    """The taxonomy error for a botocore/boto3 exception (or ``exc`` itself if already one)."""
    if isinstance(exc, ProviderError):
        return exc
    import botocore.exceptions as bex

    if isinstance(exc, bex.ClientError):
        return _client_error(exc, provider, scope)
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return AccountBlocked(
            "no usable AWS credentials found",
            provider=provider,
            code="NoCredentials",
            hint="configure credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "an instance role) or set `profile`",
        )
    if isinstance(exc, bex.ProfileNotFound):
        return AccountBlocked(
            scrub(str(exc)),
            provider=provider,
            code="ProfileNotFound",
            hint="create the profile in ~/.aws/config or fix `profile`",
        )
    if isinstance(exc, bex.HTTPClientError | bex.ConnectionError):
        # Connection refused/reset, read and connect timeouts, closed connections.
        return TransientError(
            scrub(str(exc)),
            provider=provider,
            code=type(exc).__name__,
            hint="the AWS endpoint did not answer; check the network and `endpoint`",
        )
    from botocore.parsers import ResponseParserError

    if isinstance(exc, ResponseParserError):
        # Not an AWS answer (an HTML error page of a proxy or load balancer, a cut body).
        return TransientError(
            "the AWS endpoint sent a response that is not an AWS answer",
            provider=provider,
            code="ResponseParserError",
            hint="a proxy or the endpoint failed; retried",
        )
    if isinstance(exc, bex.BotoCoreError):
        return ProviderError(scrub(str(exc)), provider=provider, code=type(exc).__name__)
    return ProviderError(
        scrub(f"{type(exc).__name__}: {exc}"), provider=provider, code=type(exc).__name__
    )


def _client_error(exc: Any, provider: str, scope: str | None) -> ProviderError:
    """The taxonomy error for an AWS API's answer (a botocore ``ClientError``): by its
    error code, else by its HTTP status."""
    error = dict(exc.response.get("Error", {}) or {})
    if not error.get("Code"):
        # Some servers nest the error one level deeper (<Errors><Error>...).
        nested = (exc.response.get("Errors") or {}).get("Error") or {}
        if isinstance(nested, list):
            nested = nested[0] if nested else {}
        if isinstance(nested, dict) and nested.get("Code"):
            error = nested
    meta = exc.response.get("ResponseMetadata", {}) or {}
    status = int(meta.get("HTTPStatusCode") or 0)
    code = str(error.get("Code") or (f"HTTP{status}" if status else "Unknown"))
    message = scrub(str(error.get("Message") or exc))
    op = getattr(exc, "operation_name", "") or ""
    text = f"{op}: {message}" if op else message
    if code in BLOCKED_CODES or code in ("HTTP401", "HTTP403"):
        return AccountBlocked(text, provider=provider, code=code, hint=_HINTS["blocked"])
    if code in CAPACITY_CODES:
        return CapacityError(
            text, provider=provider, code=code, hint=_HINTS["capacity"], scope=scope
        )
    if code in QUOTA_CODES:
        return QuotaError(text, provider=provider, code=code, hint=_HINTS["quota"], scope=scope)
    if code in NOT_FOUND_CODES:
        return NotFound(text, provider=provider, code=code, hint=_HINTS["not_found"])
    if code in TRANSIENT_CODES or status >= 500 or status == 429:
        headers = meta.get("HTTPHeaders", {}) or {}
        return TransientError(
            text,
            provider=provider,
            code=code,
            hint=_HINTS["transient"],
            retry_after=retry_after_seconds(headers.get("retry-after")),
        )
    return ProviderError(text, provider=provider, code=code)


def once(fn: Callable[[], T], provider: str, scope: str | None = None) -> T:
    """Run ``fn`` once, mapping any exception onto the taxonomy."""
    try:
        return fn()
    except ProviderError:
        raise
    except Exception as exc:
        raise map_error(exc, provider, scope) from None


def call(
    fn: Callable[[], T],
    *,
    provider: str,
    attempts: int,
    max_time: float,
    scope: str | None = None,
) -> T:
    """Run ``fn`` with errors mapped; retry ``TransientError`` within the bounds given."""
    return call_with_retries(
        lambda: once(fn, provider, scope), attempts=attempts, max_time=max_time
    )
