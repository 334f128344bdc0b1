"""What the Azure compute provider and the Azure DNS backend share: clients, credentials,
long-running operations and the mapping of ARM errors onto the provider taxonomy.

Nothing here imports an Azure SDK at module level; every SDK import happens inside a
function, when a provider of type ``azure`` or ``azuredns`` is actually used.

Credentials
-----------
Normally the SDK's own chain, ``DefaultAzureCredential`` (environment variables, workload
identity, managed identity, the Azure CLI login, ...): no secret ever lives in the config.

For tests only: when ``endpoint`` is a plain ``http://`` URL on a loopback address
(``127.0.0.0/8``, ``::1`` or ``localhost``), the provider talks to a local ARM double, so
it uses :class:`StaticTokenCredential` (a fixed bearer token, no identity lookup) and adds a
per-call policy that sets ``enforce_https=False`` on every request: azure-core refuses to
send a bearer token over plain http otherwise (passing ``enforce_https`` to the client
constructor is silently ignored; a ``per_call_policies`` SansIO policy is the way to set it
for the whole client). Any other endpoint (a sovereign cloud, an https proxy) goes through
``DefaultAzureCredential`` with the token scope derived from the endpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import TypeVar

from providers.base import AccountBlocked
from providers.base import CapacityError
from providers.base import ConflictError
from providers.base import NotFound
from providers.base import ProviderError
from providers.base import QuotaError
from providers.base import TransientError
from providers.retry import call_with_retries
from providers.retry import retry_after_seconds
from providers.util import is_loopback_http

T = TypeVar("T")

# Loopback endpoints get this token from StaticTokenCredential (never a real secret).
TEST_TOKEN = "failover-loopback-test-token"

# ARM error codes, exactly as the provider's issue lists them, plus the zonal variant of
# OverconstrainedAllocationRequest that Azure returns for zonal VMs.
ACCOUNT_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailed",
        "InvalidAuthenticationToken",
        "SubscriptionNotFound",
        "ReadOnlyDisabledSubscription",
        "DisabledSubscription",
        "ClientAuthenticationError",
    }
)
CAPACITY_CODES = frozenset(
    {
        "SkuNotAvailable",
        "AllocationFailed",
        "ZonalAllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
    }
)
QUOTA_CODES = frozenset({"QuotaExceeded"})
# Codes that say "try again" when they arrive inside a failed long-running operation (the
# HTTP status of the operation-status response is then 200, so the status alone says nothing).
TRANSIENT_CODES = frozenset(
    {
        "RetryableError",
        "TooManyRequests",
        "InternalServerError",
        "InternalExecutionError",
        "ServiceUnavailable",
        "GatewayTimeout",
    }
)
NOT_FOUND_CODES = frozenset({"ResourceNotFound", "NotFound"})


class StaticTokenCredential:
    """A ``TokenCredential`` that hands out one fixed token. Used only for loopback http
    endpoints (the test double); it never touches an identity provider."""

    def __init__(self, token: str = TEST_TOKEN) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self) -> None:
        pass


def _allow_http_policy() -> Any:
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class AllowPlainHttp(SansIOHTTPPolicy):  # type: ignore[misc,type-arg]
        """Lets the bearer-token policy send the (static, fake) token over plain http."""

        def on_request(self, request: Any) -> None:
            request.context.options["enforce_https"] = False

    return AllowPlainHttp()


def make_credential(endpoint: str | None) -> Any:
    if is_loopback_http(endpoint):
        return StaticTokenCredential()
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def client_kwargs(endpoint: str | None, polling_interval: float | None) -> dict[str, Any]:
    """Keyword arguments shared by every management client we build.

    The SDK's own retry policy is switched off (``retry_total=0``): retries are ours
    (tenacity, bounded by ``retry_attempts``/``retry_max_time``, honouring Retry-After), so
    a throttled call is neither retried twice over nor hidden from the error mapping.
    """
    kwargs: dict[str, Any] = {
        "retry_total": 0,
        "connection_timeout": 10,
        "read_timeout": 60,
    }
    if endpoint:
        base = endpoint.rstrip("/")
        kwargs["base_url"] = base
        kwargs["credential_scopes"] = [f"{base}/.default"]
    if is_loopback_http(endpoint):
        kwargs["per_call_policies"] = [_allow_http_policy()]
    interval = polling_interval
    if interval is None and is_loopback_http(endpoint):
        interval = 0.0
    if interval is not None:
        kwargs["polling_interval"] = interval
    return kwargs


def opened(client: Any) -> Any:
    """``client`` with its HTTP session open, for a caller that makes it under its lock.

    A management client may then take calls from several threads at once. Microsoft
    states its SDK clients are thread-safe (learn.microsoft.com/dotnet/azure/sdk/
    thread-safety) and the Python guidelines make them immutable (python-client-immutable,
    azure.github.io/azure-sdk/python_design.html); the caveat is azure-core's
    ``RequestsTransport``, which opens its ``requests.Session`` on first use without a
    lock (two threads would make two, one never closed) and says it is not to be
    considered thread-safe because of that one session. Opening it here removes the
    race; what remains is one ``requests.Session`` sending from several threads over
    urllib3's thread-safe pools, as google-auth's ``AuthorizedSession`` does.
    """
    client.__enter__()
    return client


# --------------------------------------------------------------------------- models


def as_json(obj: Any) -> dict[str, Any]:
    """An SDK model (new ``MutableMapping`` models or older msrest models) as the REST JSON
    it came from, so the code reads one shape (``properties.provisioningState`` ...)
    whatever generation of the SDK is installed."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        as_dict = getattr(obj, "as_dict", None)
        if callable(as_dict):
            result: Any = as_dict()
            if isinstance(result, dict):
                return result
        loaded: dict[str, Any] = json.loads(json.dumps(dict(obj), default=str))
        return loaded
    serialize = getattr(obj, "serialize", None)
    if callable(serialize):
        serialized: Any = serialize(keep_readonly=True)
        if isinstance(serialized, dict):
            return serialized
    raise TypeError(f"cannot read {type(obj).__name__} as JSON")


def dig(data: Any, *path: str | int) -> Any:
    """``dig(vm, "properties", "storageProfile", "osDisk", "name")`` or None."""
    for key in path:
        if isinstance(key, int):
            if not isinstance(data, list) or len(data) <= key:
                return None
            data = data[key]
        else:
            if not isinstance(data, Mapping):
                return None
            data = data.get(key)
    return data


# --------------------------------------------------------------------------- errors


def arm_error(exc: BaseException) -> tuple[str | None, str, int | None]:
    """(ARM code, message, HTTP status) of an azure-core exception.

    Reads the body itself: the first response carries ``{"error": {"code", "message"}}``,
    a failed long-running operation carries ``{"status": "Failed", "error": {...}}`` on a
    200 response, and a 403 arrives as a plain ``HttpResponseError`` whose body says
    ``AuthorizationFailed``.
    """
    code: str | None = None
    message: str | None = None
    status: int | None = None
    response = getattr(exc, "response", None)
    if response is not None:
        status = getattr(response, "status_code", None)
        body: Any = None
        try:
            body = response.json()
        except Exception:
            try:
                body = json.loads(response.text())
            except Exception:
                body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = error.get("code") or None
            message = error.get("message") or None
            details = error.get("details")
            known = ACCOUNT_CODES | CAPACITY_CODES | QUOTA_CODES | TRANSIENT_CODES
            if code not in known and isinstance(details, list):
                for detail in details:
                    if isinstance(detail, dict) and detail.get("code") in known:
                        code = detail["code"]
                        message = detail.get("message") or message
                        break
    model = getattr(exc, "error", None)
    if code is None and model is not None:
        code = getattr(model, "code", None) or None
        message = message or getattr(model, "message", None)
    if not message:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return code, str(message), status


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for name in ("Retry-After", "retry-after-ms", "x-ms-retry-after-ms"):
        seconds = retry_after_seconds(headers.get(name))
        if seconds is not None:
            return seconds / 1000.0 if name.endswith("-ms") else seconds
    return None


def map_error(
    exc: BaseException,
    *,
    provider: str,
    action: str,
    scope: str | None = None,
) -> ProviderError:
    """One azure-core / azure-identity exception -> one taxonomy error (not raised)."""
    from azure.core.exceptions import HttpResponseError
    from azure.core.exceptions import ServiceRequestError
    from azure.core.exceptions import ServiceResponseError

    if isinstance(exc, ProviderError):
        return exc
    code, message, status = arm_error(exc)
    text = f"{action}: {message}"
    refused = _refusal(exc, code, message, status, action=action, provider=provider, scope=scope)
    if refused is not None:
        return refused
    if (
        status == 429
        or (status is not None and status >= 500)
        or code in TRANSIENT_CODES
        or isinstance(exc, ServiceRequestError | ServiceResponseError)
    ):
        return TransientError(
            text,
            provider=provider,
            code=code or (str(status) if status else type(exc).__name__),
            retry_after=_retry_after(exc),
            hint="Azure is throttling or failing for now; retried with backoff",
        )
    if code == "PreconditionFailed" or status == 412:
        return ConflictError(
            text,
            provider=provider,
            code=code or "PreconditionFailed",
            hint="somebody else changed it first; re-read and decide again",
        )
    not_found = code is None or code in NOT_FOUND_CODES or code.endswith("NotFound")
    if status == 404 and not_found and code != "ResourceGroupNotFound":
        return NotFound(text, provider=provider, code=code or "ResourceNotFound")
    if code == "ResourceGroupNotFound":
        return ProviderError(
            text,
            provider=provider,
            code=code,
            hint="create the resource group (az group create) or fix resource_group",
        )
    if isinstance(exc, HttpResponseError):
        return ProviderError(
            text,
            provider=provider,
            code=code or (str(status) if status else None),
            hint="see the Azure error code and message",
        )
    return ProviderError(
        f"{action}: {type(exc).__name__}: {message}",
        provider=provider,
        code=code,
    )


def _refusal(
    exc: BaseException,
    code: str | None,
    message: str,
    status: int | None,
    *,
    action: str,
    provider: str,
    scope: str | None,
) -> ProviderError | None:
    """The error when Azure refused us (credentials, subscription, capacity, quota), or
    None for any other failure."""
    from azure.core.exceptions import ClientAuthenticationError

    text = f"{action}: {message}"
    if isinstance(exc, ClientAuthenticationError) and status is None:
        # Raised by the credential itself: nothing to authenticate with, or refused.
        return AccountBlocked(
            f"{action}: Azure credentials unavailable or refused: {message}",
            provider=provider,
            code=code or "ClientAuthenticationError",
            hint="log in (az login, a service principal in AZURE_CLIENT_ID/AZURE_TENANT_ID/"
            "AZURE_CLIENT_SECRET, or a managed identity) with access to the subscription",
        )
    if code in ACCOUNT_CODES or isinstance(exc, ClientAuthenticationError):
        return AccountBlocked(
            text,
            provider=provider,
            code=code or "ClientAuthenticationError",
            hint="the subscription or the credentials are refused: check the subscription "
            "state in the portal and the role assignment of the identity in use",
        )
    if code in CAPACITY_CODES:
        return CapacityError(
            text,
            provider=provider,
            code=code,
            scope=scope,
            hint="no capacity for this size here; try another zone, location or size",
        )
    if code in QUOTA_CODES or (code == "OperationNotAllowed" and "quota" in message.lower()):
        return QuotaError(
            text,
            provider=provider,
            code=code,
            scope=scope,
            hint="request a quota increase for this VM family in this location "
            "(Portal > Subscriptions > Usage + quotas)",
        )
    return None


def guarded(
    fn: Callable[[], T],
    *,
    provider: str,
    action: str,
    scope: str | None = None,
    attempts: int = 5,
    max_time: float = 60.0,
) -> T:
    """Run ``fn`` (one SDK call, or a begin + wait), mapping every Azure exception onto the
    taxonomy and retrying only ``TransientError`` (bounded; Retry-After honoured)."""

    def once() -> T:
        try:
            return fn()
        except ProviderError:
            raise
        except Exception as exc:
            if not _is_azure_exception(exc):
                raise
            raise map_error(exc, provider=provider, action=action, scope=scope) from exc

    return call_with_retries(once, attempts=attempts, max_time=max_time)


def _is_azure_exception(exc: BaseException) -> bool:
    from azure.core.exceptions import AzureError

    return isinstance(exc, AzureError)


def wait_for(poller: Any, *, timeout: float, provider: str, action: str) -> Any:
    """Wait for a long-running operation, bounded. ``LROPoller.result(timeout)`` returns a
    half-empty model when the time runs out instead of raising, so check ``done()``."""
    poller.wait(timeout=timeout)
    if not poller.done():
        raise TransientError(
            f"{action}: the operation did not finish within {timeout:g}s",
            provider=provider,
            code="OperationTimedOut",
            hint="Azure is slow; raise operation_timeout or look at the activity log",
        )
    return poller.result()
