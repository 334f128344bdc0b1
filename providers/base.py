"""The provider interface: what every place a host can live, and every DNS backend, offers.

A provider is a small driver. It knows how to create, find, stop and destroy hosts on
one platform and how to sort that platform's errors into the shared vocabulary of
:mod:`providers.errors`; the engine (``failover/engine``) decides what to do with them.
Providers never import each other and never import the engine. Cloud SDKs are imported
inside the provider's methods, so that merely loading a config that names a provider
costs nothing.
"""

from __future__ import annotations

import enum
from abc import ABC
from abc import abstractmethod
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import BinaryIO
from typing import ClassVar
from typing import NamedTuple
from typing import TypeVar

from pydantic import BaseModel

# The vocabulary, settings and registry live in their own modules; a provider (or a
# plugin) imports all of it from here.
from providers.errors import AccountBlocked as AccountBlocked
from providers.errors import CapacityError as CapacityError
from providers.errors import ConflictError as ConflictError
from providers.errors import NotFound as NotFound
from providers.errors import ProviderError as ProviderError
from providers.errors import QuotaError as QuotaError
from providers.errors import TransientError as TransientError
from providers.errors import Unsupported as Unsupported
from providers.errors import try_zones as try_zones
from providers.registry import BUILTIN_DNS as BUILTIN_DNS
from providers.registry import BUILTIN_PROVIDERS as BUILTIN_PROVIDERS
from providers.registry import UnknownType as UnknownType
from providers.registry import dns_class as dns_class
from providers.registry import known_types as known_types
from providers.registry import provider_class as provider_class
from providers.settings import ApiDnsSettings as ApiDnsSettings
from providers.settings import CloudSettings as CloudSettings
from providers.settings import DnsSettings as DnsSettings
from providers.settings import Duration as Duration
from providers.settings import ProviderSettings as ProviderSettings
from providers.settings import RetryingDnsSettings as RetryingDnsSettings
from providers.settings import parse_duration as parse_duration

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


@dataclass(frozen=True)
class ProviderContext:
    """What the engine hands every provider: where it may keep files, how to log."""

    state_dir: Path
    log: Callable[[str], None] = lambda message: None
    # Each service's port, for providers that check a machine's port is free (ssh).
    ports: Mapping[str, int] = field(default_factory=dict)


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
    the six methods. Every method raises only the errors of :mod:`providers.errors`,
    never an SDK's own."""

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
