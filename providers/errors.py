"""The providers' shared error vocabulary, and the zone loop that reads it.

Every provider sorts its platform's errors into these kinds; the engine decides what to
do with each (``kind``). Re-exported by :mod:`providers.base`, where providers have
always imported them from.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import ClassVar
from typing import TypeVar

# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """Anything a provider cannot do. The engine fails the step with this message.

    ``provider`` names the configured provider (``aws-main``), ``code`` keeps the
    platform's own error code (``InsufficientInstanceCapacity``) so an operator can look
    it up, and ``hint`` says what to do next.
    """

    kind: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        code: str | None = None,
        hint: str | None = None,
        scope: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.code = code
        self.hint = hint
        # The zone/region the error is about (for CapacityError/QuotaError), if known.
        self.scope = scope
        # Seconds the platform asked us to wait (Retry-After), for TransientError.
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        code = f" [{self.code}]" if self.code else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.message}{code}{hint}"


class AccountBlocked(ProviderError):
    """Credentials refused, account suspended or closed: the whole provider is unusable."""

    kind = "blocked"


class CapacityError(ProviderError):
    """No room for this host in this zone/region: try the next zone, then the next provider."""

    kind = "capacity"


class QuotaError(ProviderError):
    """The account's quota is exhausted in this region: try elsewhere."""

    kind = "quota"


class NotFound(ProviderError):
    """The host (or record) does not exist: the engine treats the host as terminated."""

    kind = "not_found"


class TransientError(ProviderError):
    """Throttling, 5xx, timeouts: worth retrying with backoff, a bounded number of times."""

    kind = "transient"


class ConflictError(ProviderError):
    """A conditional write lost: somebody else changed the record first (DNS prerequisite)."""

    kind = "conflict"


class Unsupported(ProviderError):
    """This provider cannot do that at all (run a command on a cloud host it only boots)."""

    kind = "unsupported"


# --------------------------------------------------------------------------- zones

Z = TypeVar("Z")
T = TypeVar("T")


def try_zones(
    zones: Sequence[Z],
    attempt: Callable[[Z], T],
    *,
    provider: str,
    what: str,
    where: Callable[[Z], str],
    scope: str | None = None,
    skip: Callable[[Z], str | None] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> T:
    """``attempt(zone)`` for each zone in order; the first host made is returned.

    A ``CapacityError`` or ``QuotaError`` moves on to the next zone (``attempt`` cleans
    up what it made in its zone before raising); ``skip`` may give a reason not to try a
    zone at all (its region's quota is known to be used up, no subnet there). Any other
    error is raised at once, as it is. When no zone took the host, the error is a
    ``CapacityError`` if any zone had no room, else a ``QuotaError``, else (every zone
    skipped) a ``ProviderError``; it lists each zone's reason, carries the last
    refusal's code and hint, ``scope`` as its scope, and that refusal as its cause.
    ``where(zone)`` names a zone in messages.
    """
    failures: list[ProviderError] = []
    for zone in zones:
        label = where(zone)
        reason = skip(zone) if skip is not None else None
        if reason:
            log(f"{provider}: skipping {label}: {reason}")
            failures.append(ProviderError(reason, provider=provider, scope=label))
            continue
        try:
            return attempt(zone)
        except (CapacityError, QuotaError) as exc:
            exc.scope = exc.scope or label
            failures.append(exc)
    refused = [f for f in failures if isinstance(f, CapacityError | QuotaError)]
    cls: type[ProviderError] = ProviderError
    if any(isinstance(f, CapacityError) for f in refused):
        cls = CapacityError
    elif refused:
        cls = QuotaError
    last = refused[-1] if refused else None
    tried = ", ".join(where(z) for z in zones)
    detail = "; ".join(
        f"{f.scope}: {f.message}" + (f" [{f.code}]" if f.code else "") for f in failures
    )
    raise cls(
        f"no zone could take {what} (tried {tried}): {detail}",
        provider=provider,
        code=last.code if last else None,
        hint=last.hint if last else "check the configured zones",
        scope=scope,
    ) from last
