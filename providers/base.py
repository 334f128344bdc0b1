"""The provider interface: what every place a host can live, and every DNS backend, offers.

A provider is a small driver. It knows how to create, find, stop and destroy hosts on
one platform and how to sort that platform's errors into the shared vocabulary below;
the engine (``failover/engine.py``) decides what to do with them. Providers never
import each other and never import the engine. Cloud SDKs are imported inside the
provider's methods, so that merely loading a config that names a provider costs
nothing.
"""

from __future__ import annotations

import enum
import importlib
import re
from abc import ABC
from abc import abstractmethod
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import BinaryIO
from typing import ClassVar
from typing import NamedTuple
from typing import TypeVar

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field

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


# --------------------------------------------------------------------------- hosts


class HostState(enum.StrEnum):
    """Provider-neutral host state (after Libcloud's ``NodeState``)."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"

    @property
    def gone(self) -> bool:
        """True when the host can no longer serve without someone starting it again."""
        return self in (HostState.STOPPED, HostState.TERMINATED)


@dataclass(frozen=True)
class RunSpec:
    """How the service runs on a host: the same for every provider."""

    command: str
    setup: tuple[str, ...] = ()
    restore: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostSpec:
    """Everything a provider needs to create one host of a service.

    ``name`` is deterministic for (service, generation, provider) so a retried or
    resumed create finds the host it made the first time instead of making a second one.
    ``user_data`` is the rendered cloud-init document for providers that boot images.
    """

    name: str
    service: str
    generation: int
    port: int
    run: RunSpec
    user_data: str = ""
    purpose: str = "serve"  # "serve", "drill" or "standby" (a warm standby, out of DNS)
    provider: str = ""  # the configured provider's name, for FAILOVER_PROVIDER on the host

    @property
    def tags(self) -> dict[str, str]:
        return {
            "failover-service": self.service,
            "failover-generation": str(self.generation),
            "failover-purpose": self.purpose,
            "Name": self.name,
        }


@dataclass
class Host:
    """A host as its provider sees it now."""

    id: str
    provider: str
    name: str
    service: str
    generation: int
    state: HostState
    raw_state: str = ""
    reason: str | None = None
    address: str | None = None
    private_address: str | None = None
    zone: str | None = None
    created_at: str | None = None
    purpose: str = "serve"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(
        cls,
        record: dict[str, Any],
        provider: str,
        state: HostState,
        raw_state: str,
        reason: str | None,
        **more: Any,
    ) -> Host:
        """A host from the record a provider keeps beside it (local, ssh and static hosts):
        the record holds the host's tags, the caller says what it observed."""
        return cls(
            id=str(record["id"]),
            provider=provider,
            name=str(record["name"]),
            service=str(record["service"]),
            generation=int(record["generation"]),
            state=state,
            raw_state=raw_state,
            reason=reason,
            created_at=record.get("created_at"),
            purpose=str(record.get("purpose", "serve")),
            **more,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "name": self.name,
            "service": self.service,
            "generation": self.generation,
            "state": self.state.value,
            "raw_state": self.raw_state,
            "reason": self.reason,
            "address": self.address,
            "private_address": self.private_address,
            "zone": self.zone,
            "created_at": self.created_at,
            "purpose": self.purpose,
        }


@dataclass(frozen=True)
class ExecResult:
    """How a command run on a host ended: its exit status and what it wrote to stderr."""

    status: int
    stderr: str


@dataclass
class Check:
    """One line of a ``doctor`` report."""

    name: str
    ok: bool
    detail: str = ""
    level: str = "error"  # when not ok: "error" or "warning"


@dataclass
class AccountReport:
    """What ``check_account`` learned: is the provider usable, and why (not)."""

    state: str  # "available" | "blocked" | "unknown"
    checks: list[Check] = field(default_factory=list)
    reason: str | None = None

    @classmethod
    def from_checks(cls, checks: list[Check]) -> AccountReport:
        """The report of an account that answered and accepted us, from its checks.

        A failed error-level check (no such image, zone or machine type...) makes it
        ``unknown``, not ``available``: a create there would fail, so the planner tries
        it after the healthy providers, yet it is not ``blocked`` (a fix in the config or
        the console makes it usable again). Warnings leave it ``available``.
        """
        failing = [c for c in checks if not c.ok and c.level == "error"]
        reason = "; ".join(
            c.detail if c.detail.startswith(c.name) else f"{c.name}: {c.detail}" for c in failing
        )
        return cls("unknown" if failing else "available", checks, reason or None)


# --------------------------------------------------------------------------- durations

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """``500ms``, ``2s``, ``1m``, ``1h``, ``1d`` or a plain number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 2s, 1m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration; use e.g. 500ms, 2s, 1m or 1h")
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        raise ValueError("a duration must be a finite number >= 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]

# --------------------------------------------------------------------------- settings


class ProviderSettings(BaseModel):
    """Base of every provider's section in ``providers:``; each type adds its own fields."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: str


class DnsSettings(BaseModel):
    """Base of the ``dns:`` section; each DNS type adds its own fields."""

    model_config = ConfigDict(extra="forbid")

    type: str
    zone: str
    ttl: int = 30
    #: Unique among the file's DNS providers (section 12); a single mapping is named
    #: after its type.
    name: str = Field(default="", description="this DNS provider's name; default: its type")
    vendor: str | None = Field(
        default=None,
        description="the company that runs it, when not the backend's own (doctor warns "
        "when every provider of a zone is one company)",
    )


class RetryingDnsSettings(DnsSettings):
    """Fields every DNS backend that talks to a server shares: retry bounds."""

    retry_attempts: int = Field(default=5, ge=1, le=50)
    retry_max_time: Duration = Field(default=60.0, description="total time retries may take")


class ApiDnsSettings(RetryingDnsSettings):
    """Fields every DNS backend behind a vendor's HTTP API shares: retry bounds and an
    endpoint override (what :class:`CloudSettings` is for compute)."""

    endpoint: str | None = Field(
        default=None, description="API endpoint override (tests, compatible or sovereign clouds)"
    )


class CloudSettings(ProviderSettings):
    """Fields every cloud provider shares: an endpoint override and retry bounds."""

    endpoint: str | None = Field(
        default=None, description="API endpoint override (tests, compatible or sovereign clouds)"
    )
    retry_attempts: int = Field(default=5, ge=1, le=50)
    retry_max_time: Duration = Field(default=60.0, description="total time retries may take")
    operation_timeout: Duration = Field(
        default=600.0, description="how long to wait on one long-running operation"
    )


@dataclass(frozen=True)
class ProviderContext:
    """What the engine hands every provider: where it may keep files, how to log."""

    state_dir: Path
    log: Callable[[str], None] = lambda message: None
    # Each service's port, for providers that check a machine's port is free (ssh).
    ports: Mapping[str, int] = field(default_factory=dict)


S = TypeVar("S", bound=ProviderSettings)


M = TypeVar("M", bound=BaseModel)


# Spelled out here: inside a provider class, ``type`` is the provider's kind.
ProviderSettingsClass = type[ProviderSettings]
DnsSettingsClass = type[DnsSettings]


def _identify(
    cls: Any, kind: str | None, settings: type[BaseModel] | None, vendor: str | None
) -> None:
    if kind is not None:
        cls.type = kind
    if settings is not None:
        cls.Settings = settings
    if vendor is not None:
        cls.vendor = vendor


def as_settings(model: type[M], settings: BaseModel) -> M:
    """``settings`` as the provider's own Settings model (a caller may hand the generic
    one, e.g. a plugin's or a test's)."""
    if isinstance(settings, model):
        return settings
    return model.model_validate(settings.model_dump())


class ComputeProvider(ABC):
    """Base class for compute providers. Subclasses set ``type``/``Settings`` and fill in
    the six methods. Every method raises only the errors above, never an SDK's own."""

    Settings: ClassVar[type[ProviderSettings]] = ProviderSettings
    type: ClassVar[str] = ""
    # The company behind the platform, for doctor's shared-fate warning ("aws", "google").
    vendor: ClassVar[str] = ""

    def __init_subclass__(
        cls,
        *,
        kind: str | None = None,
        settings: ProviderSettingsClass | None = None,
        vendor: str | None = None,
        **kwargs: Any,
    ) -> None:
        # `class AwsProvider(ComputeProvider, kind="aws", settings=AwsSettings, ...)`: the
        # provider's identity on its class line. Plain class attributes work as well.
        super().__init_subclass__(**kwargs)
        _identify(cls, kind, settings, vendor)

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        self.settings = as_settings(self.Settings, settings)
        self.name = settings.name
        self.context = context

    @abstractmethod
    def create_host(self, spec: HostSpec) -> Host:
        """Create the host ``spec`` describes and return it, usually still ``pending``.

        Idempotent on ``spec.name``: when a host of that name exists (made by an earlier,
        interrupted or retried call) it is returned instead of a second one. Zones are
        tried in the configured order. Raises ``CapacityError``/``QuotaError`` when no
        zone could take it, ``AccountBlocked`` when the account is refused,
        ``TransientError`` once the bounded retries are used up; whatever a failed create
        made is removed first, or the error names what was left where.
        """

    @abstractmethod
    def get_host(self, host_id: str) -> Host | None:
        """The host as the provider sees it now; None when no such host exists (never
        made, or gone so long that the platform forgot it). A host being deleted may be
        returned as ``terminated``. Raises ``AccountBlocked``, ``TransientError``..."""

    # True when get_hosts answers many ids with one API call: a round then asks this
    # provider once, not once per host.
    batches_lookups: ClassVar[bool] = False
    # True when one instance may serve several threads at once (its SDK clients are
    # thread-safe and made under a lock): the parallel moves of a round then share it
    # instead of each building its own clients (a boto3 session costs ~25 MB and 0.15 s).
    shared_across_threads: ClassVar[bool] = False
    # True when a CapacityError speaks for one service only (a list of machines: none
    # serves, or is free for, that service): the round's other moves still try it.
    capacity_per_service: ClassVar[bool] = False
    # False when a new host can take no backup in: it neither runs commands
    # (exec_on_host) nor boots an image that restores itself. The planner then skips it
    # for a service with `data:` (a move there could only start the service empty).
    restores_data: ClassVar[bool] = True

    def get_hosts(self, host_ids: list[str]) -> dict[str, Host | None]:
        """:meth:`get_host` for several ids, in one call where the platform can (set
        ``batches_lookups``); by default one call each. Raises as ``get_host`` does, for
        the whole batch; an id left out of the answer is one the provider could not
        answer for alone (a machine of several did not answer): never taken as gone."""
        return {host_id: self.get_host(host_id) for host_id in host_ids}

    @abstractmethod
    def list_hosts(self, service: str) -> list[Host]:
        """Every host of this provider tagged for ``service``, in any purpose, so the
        engine can rebuild the picture when local state is lost. Terminated hosts may be
        left out. An empty list means none; errors are raised, never an empty list."""

    @abstractmethod
    def stop_host(self, host_id: str) -> None:
        """Stop the host so it serves nothing, keeping it (and its disk) for a restart or a
        look. Idempotent: a stopped or terminated host is fine; a host that does not exist
        may raise ``NotFound``, which the engine treats as gone. Returns once the platform
        has accepted the stop; raises ``AccountBlocked``, ``TransientError``..."""

    @abstractmethod
    def destroy_host(self, host_id: str) -> None:
        """Destroy the host and everything billable made for it (disks, addresses, NICs).
        Idempotent: a missing or already terminated host is fine. Raises a
        ``ProviderError`` naming what is left where when something could not be removed."""

    @abstractmethod
    def check_account(self) -> AccountReport:
        """Is the API reachable, does it accept us, can a host be made as configured?

        Never raises. ``blocked``: credentials refused, account suspended or closed.
        ``unknown``: the API did not answer, or it answered but a configuration check
        (image, zone, machine type...) failed; ``reason`` says which. ``available``:
        every error-level check passed (warnings may remain). See
        :meth:`AccountReport.from_checks`.
        """

    def check_service(self, service: str, port: int) -> AccountReport | None:
        """What a move of ``service`` (on ``port``) needs to know of this provider beyond
        :meth:`check_account`, which is asked once per round: for a list of machines,
        whether one of them is free or serving on that port. Connects to nothing that
        belongs to another service. None (the default): the account says it all. Never
        raises."""
        return None

    def exec_on_host(
        self,
        host_id: str,
        command: str,
        *,
        stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run ``command`` through ``/bin/sh -c`` on the host, in the service's working
        folder with its ``run.env``, streaming ``stdin``/``stdout``. Optional: providers
        that cannot reach into a host raise ``Unsupported``."""
        raise Unsupported(f"{self.type} hosts cannot run commands", provider=self.name)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections. Safe to call more than once; the provider
        may be used again afterwards (clients are made anew)."""


@dataclass
class Record:
    """A DNS record set as the authoritative side reports it."""

    name: str
    type: str
    values: list[str]
    ttl: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "values": list(self.values), "ttl": self.ttl}


class RecordChange(NamedTuple):
    """One atomic replacement of a record set (see :meth:`DnsProvider.set_record`)."""

    name: str
    rtype: str
    values: list[str]
    ttl: int
    expect: list[str] | None


def txt_strings(values: Sequence[str]) -> list[str]:
    """TXT values without the quotes some backends answer them in (RFC 1035's form)."""
    out = []
    for value in values:
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out.append(value)
    return sorted(out)


class DnsProvider(ABC):
    """Base class for DNS backends. ``set_record`` is one atomic replace of the record
    set, never delete-then-create; with ``expect`` it refuses (``ConflictError``) when the
    current values are not ``expect``, so a stale watcher cannot undo a newer cutover."""

    Settings: ClassVar[type[DnsSettings]] = DnsSettings
    type: ClassVar[str] = ""
    vendor: ClassVar[str] = ""
    #: True when :meth:`replace_records` sends several changes as one request to the
    #: authority (a Route 53 change batch, one Cloud DNS change, one RFC 2136 message).
    #: The engine then gathers the cutovers of a round's parallel moves for this zone
    #: into batches; backends without it are called change by change, side by side.
    batches_changes: ClassVar[bool] = False
    #: The most changes one request carries (the authority's own limits are higher).
    max_batch: ClassVar[int] = 100
    #: True when one instance may serve several threads at once (see ComputeProvider).
    shared_across_threads: ClassVar[bool] = False

    def __init_subclass__(
        cls,
        *,
        kind: str | None = None,
        settings: DnsSettingsClass | None = None,
        vendor: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        _identify(cls, kind, settings, vendor)

    def __init__(self, settings: DnsSettings, context: ProviderContext) -> None:
        self.settings = as_settings(self.Settings, settings)
        self.context = context
        self.name = f"dns:{settings.name or settings.type}"

    @abstractmethod
    def get_record(self, name: str, rtype: str = "A") -> Record | None:
        """The record set ``name``/``rtype`` as the authority holds it now; None when it
        does not exist. ``name`` may be relative to the zone or fully qualified. Raises
        ``AccountBlocked``, ``TransientError`` (after the bounded retries)..."""

    def set_record(
        self,
        name: str,
        rtype: str,
        values: Sequence[str],
        ttl: int,
        *,
        expect: Sequence[str] | None = None,
    ) -> Record:
        """Replace the record set with ``values``/``ttl`` in one atomic change and return
        what the authority now answers.

        Idempotent: a set that already holds ``values`` (a resumed or repeated cutover)
        succeeds. With ``expect``, raises ``ConflictError`` unless the current values are
        ``expect`` (``[]``: the set must not exist) or already ``values``. Also raises
        ``AccountBlocked``, ``TransientError`` and the taxonomy's other errors.
        """
        change = RecordChange(
            name, rtype.upper(), list(values), ttl, None if expect is None else list(expect)
        )
        return self.replace_record(change)

    @abstractmethod
    def replace_record(self, change: RecordChange) -> Record:
        """What a backend implements for :meth:`set_record`, with the same contract;
        ``change.rtype`` is upper case."""

    def replace_records(self, changes: Sequence[RecordChange]) -> list[Record | ProviderError]:
        """Several changes to this zone (different record sets), each with
        :meth:`set_record`'s contract, in as few requests as the backend allows.

        One result per change, in order: the record as the authority now answers, or the
        error that change alone would have raised. A change whose ``expect`` does not hold
        gets its ``ConflictError`` and the others are still applied: a backend whose
        authority refuses a whole request over one condition sends the changes again one
        by one (:meth:`one_by_one`). An error that stops the whole request (blocked,
        unreachable) is every change's result. This default applies them one by one.
        """
        return self.one_by_one(changes)

    def one_by_one(self, changes: Sequence[RecordChange]) -> list[Record | ProviderError]:
        """Each change in its own :meth:`replace_record`, each error kept as its result."""
        out: list[Record | ProviderError] = []
        for change in changes:
            try:
                out.append(self.replace_record(change))
            except ProviderError as exc:
                out.append(exc)
        return out

    def get_txt(self, name: str) -> list[str] | None:
        """The TXT record set ``name`` as its strings, unquoted whatever the backend's
        own form (an ACME DNS-01 challenge reads back what it wrote); None: absent."""
        record = self.get_record(name, "TXT")
        return None if record is None else txt_strings(record.values)

    def set_txt(
        self, name: str, values: Sequence[str], ttl: int, *, expect: Sequence[str] | None = None
    ) -> list[str]:
        """:meth:`set_record` for a TXT set of plain strings (no spaces or quotes:
        challenge tokens); ``[]`` removes it. The same conditions as any record."""
        return txt_strings(self.set_record(name, "TXT", values, ttl, expect=expect).values)

    @abstractmethod
    def check(self) -> AccountReport:
        """Reachable, credentials accepted, zone present. Never raises: ``blocked`` when
        the credentials or account are refused, ``unknown`` when the API does not answer
        or the zone cannot be found, ``available`` otherwise."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections. Safe to call more than once."""


# --------------------------------------------------------------------------- registry

# Built-in types, imported only when a config uses them. Third parties add their own
# through the entry point groups ``failover.providers`` and ``failover.dns``.
BUILTIN_PROVIDERS: dict[str, str] = {
    "local": "providers.local:LocalProvider",
    "aws": "providers.aws:AwsProvider",
    "gcp": "providers.gcp:GcpProvider",
    "azure": "providers.azure:AzureProvider",
    "ssh": "providers.ssh:SshProvider",
    "static": "providers.static:StaticProvider",
}
BUILTIN_DNS: dict[str, str] = {
    "local": "providers.dns.local:LocalDns",
    "route53": "providers.dns.route53:Route53Dns",
    "clouddns": "providers.dns.clouddns:CloudDns",
    "azuredns": "providers.dns.azuredns:AzureDns",
    "rfc2136": "providers.dns.rfc2136:Rfc2136Dns",
    "cloudflare": "providers.dns.cloudflare:CloudflareDns",
}


class UnknownType(LookupError):
    pass


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _lookup(kind: str, builtin: dict[str, str], group: str) -> Any:
    if kind in builtin:
        try:
            return _load(builtin[kind])
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("providers."):
                raise UnknownType(f"type {kind!r} is not available in this build") from None
            raise
    for ep in entry_points(group=group):
        if ep.name == kind:
            return ep.load()
    known = sorted(set(builtin) | {ep.name for ep in entry_points(group=group)})
    raise UnknownType(f"unknown type {kind!r} (known: {', '.join(known)})")


def provider_class(kind: str) -> type[ComputeProvider]:
    cls: type[ComputeProvider] = _lookup(kind, BUILTIN_PROVIDERS, "failover.providers")
    return cls


def dns_class(kind: str) -> type[DnsProvider]:
    cls: type[DnsProvider] = _lookup(kind, BUILTIN_DNS, "failover.dns")
    return cls


def known_types(dns: bool = False) -> list[str]:
    builtin = BUILTIN_DNS if dns else BUILTIN_PROVIDERS
    group = "failover.dns" if dns else "failover.providers"
    return sorted(set(builtin) | {ep.name for ep in entry_points(group=group)})
