"""The configuration file: pydantic models, loading, ``${ENV}`` interpolation, JSON Schema.

Every mistake is reported as ``path: message`` (``services.web.health.fall: must be >= 1``)
through :class:`ConfigError`; nothing here ever lets a traceback reach the operator.
The models of one topic live in their own modules (:mod:`failover.state_config`,
:mod:`failover.health_config`, ...) and the shared base in :mod:`failover.config_base`;
what callers import from here is re-exported.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from typing import Literal

import yaml
from pydantic import Field
from pydantic import PrivateAttr
from pydantic import ValidationError
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic import model_validator

from failover import dnsconfig
from failover import document
from failover.certs_config import CertificatesConfig
from failover.certs_config import TlsConfig
from failover.certs_config import certificate_problems
from failover.checks import NAME as _NAME
from failover.checks import DuplicateKey
from failover.checks import NoDuplicateKeys
from failover.checks import env_problems
from failover.checks import node_path
from failover.config_base import DAY as _DAY
from failover.config_base import ConfigError as ConfigError
from failover.config_base import Located as _Located
from failover.config_base import Model as Model
from failover.config_base import Problems as Problems
from failover.config_base import format_loc as format_loc
from failover.config_base import plain_message as _message
from failover.config_base import untagged
from failover.data.settings import DataConfig
from failover.data.settings import StoreSettings
from failover.health_config import DnsProbe as DnsProbe
from failover.health_config import HealthConfig as HealthConfig
from failover.health_config import HttpProbe as HttpProbe
from failover.health_config import TcpProbe as TcpProbe
from failover.health_config import TlsProbe as TlsProbe
from failover.notify_config import NotifyTargets
from failover.redact import register_secret
from failover.state_config import StateConfig as StateConfig
from failover.state_config import WatcherConfig as WatcherConfig
from failover.state_config import WatchersConfig as WatchersConfig
from failover.status_config import StatusPageConfig
from failover.status_config import status_page_problems
from providers.base import DnsSettings
from providers.base import Duration
from providers.base import ProviderSettings
from providers.base import UnknownType
from providers.base import dns_class
from providers.base import known_types
from providers.base import provider_class
from providers.util import PLACEHOLDER_NAMES
from providers.util import is_secret_name
from providers.util import unknown_placeholders

DEFAULT_CONFIG = "failover.yaml"


class RunConfig(Model):
    command: str = Field(min_length=1, description="foreground process; {port} {address}")
    setup: list[str] = Field(default_factory=list)
    restore: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("command", "setup", "restore")
    @classmethod
    def _placeholders(cls, value: str | list[str]) -> str | list[str]:
        for command in [value] if isinstance(value, str) else value:
            unknown = unknown_placeholders(command)
            if unknown:
                raise ValueError(
                    f"unknown placeholder {', '.join(unknown)}; the known ones are "
                    + ", ".join("{" + n + "}" for n in PLACEHOLDER_NAMES)
                )
        return value


class PolicyConfig(Model):
    auto_failover: bool = True
    providers: list[str] | None = Field(
        default=None, description="priority order; default: the order of `providers`"
    )
    ready_timeout: Duration = Field(default=600.0, gt=0, le=_DAY)
    max_moves_per_hour: int = Field(default=3, ge=0, le=1000)
    fence: Literal["destroy", "stop"] = Field(
        default="destroy", description="what happens to the old host once the service moved"
    )
    standby: Literal["none", "warm"] = Field(
        default="none",
        description="warm: keep a verified host running out of DNS on the next provider of "
        "the priority list; a failover cuts over to it without provisioning",
    )


class ServiceConfig(Model):
    domain: str = Field(default="", description="the DNS name users reach (or `domains`)")
    domains: list[str] = Field(
        default_factory=list,
        description="every DNS name users reach, the first as `domain`",
    )
    port: int = Field(ge=1, le=65535)
    record_type: Literal["A", "AAAA"] = "A"
    run: RunConfig
    health: HealthConfig = Field(default_factory=HealthConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    data: DataConfig | None = Field(default=None, description="backups and restore")
    tls: TlsConfig | None = Field(default=None, description="its certificate: names, files, reload")
    _listed: bool = PrivateAttr(default=False)  # `domains:` given: error paths name its entries

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return dnsconfig.normal_domain(value) if value else value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return [dnsconfig.normal_domain(v) for v in value]

    @model_validator(mode="after")
    def _one_list(self) -> ServiceConfig:
        self._listed = bool(self.domains)
        self.domain, self.domains = dnsconfig.service_domains(self.domain, self.domains)
        return self


# The `type:` values of the tagged lists, as their errors name them.
_KINDS = {
    "stores": "dir, s3, gcs, azureblob",
    "notify": "webhook, slack, pagerduty, email, apprise",
}


class Config(Model):
    """A whole failover.yaml (README: "Configuration")."""

    # Provider and DNS sections are validated by the models their ``type`` brings (see
    # providers.base), so a third-party provider's fields get the same located errors.

    version: Literal[1] = 1
    state: StateConfig = Field(default_factory=StateConfig)
    watcher: WatcherConfig = Field(default_factory=WatcherConfig)
    watchers: WatchersConfig = Field(default_factory=WatchersConfig)
    dns: dict[str, Any] | list[dict[str, Any]] = Field(
        default_factory=lambda: {"type": "local", "zone": "example.test"},
        description="one DNS provider, or a list of named ones",
    )
    dns_audit: Duration = Field(
        default=300.0, gt=0, le=_DAY, description="how often every DNS provider is read back"
    )
    providers: list[dict[str, Any]] = Field(min_length=1)
    services: dict[str, ServiceConfig] = Field(min_length=1)
    stores: list[StoreSettings] = Field(default_factory=list, description="where backups live")
    notify: NotifyTargets = Field(
        default_factory=list, description="where events go: webhook, slack, pagerduty, email"
    )
    status_page: StatusPageConfig | None = Field(
        default=None, description="the status page: title, stores, prefix"
    )
    certificates: CertificatesConfig | None = Field(
        default=None, description="ACME: email, authorities, stores, renew_before"
    )

    @field_validator("dns", mode="before")
    @classmethod
    def _dns_shape(cls, value: Any) -> Any:
        problems = dnsconfig.shape_problems(value)
        if problems:
            raise _Located(problems)
        return value

    @field_validator("stores", "notify", mode="wrap")
    @classmethod
    def _tagged(cls, value: Any, handler: Any, info: ValidationInfo) -> Any:
        # `notify[0].url`, not pydantic's `notify[0].webhook.url` (the type is not a key).
        try:
            return handler(value)
        except ValidationError as exc:
            field = str(info.field_name)
            raise _Located(untagged(field, exc.errors(), _KINDS[field])) from None

    # Filled in by load(); not part of the file.
    path: Path | None = Field(default=None, exclude=True)
    state_dir: Path | None = Field(default=None, exclude=True)

    def provider_settings(self) -> dict[str, ProviderSettings]:
        return self._provider_settings

    def dns_settings(self) -> DnsSettings:
        """The first DNS provider (the one of a single-provider file)."""
        return self._dns_settings[0]

    def dns_list(self) -> list[DnsSettings]:
        return list(self._dns_settings)

    def zones(self) -> dnsconfig.Zones:
        return dnsconfig.Zones(self._dns_settings)

    def service_providers(self, service: str) -> list[str]:
        policy = self.services[service].policy
        return list(policy.providers or [p["name"] for p in self.providers])

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems: list[tuple[tuple[Any, ...], str]] = []
        settings = _provider_problems(self.providers, problems)
        dns_settings = dnsconfig.dns_problems(self.dns, problems, _message)
        problems.extend(
            dnsconfig.domain_problems(
                dns_settings,
                {n: s.domains for n, s in self.services.items()},
                {n: s._listed for n, s in self.services.items()},
            )
        )
        for sname, service in self.services.items():
            problems.extend(_service_problems(sname, service, self, settings))
        problems.extend(status_page_problems(self))
        if not problems:
            self._dns_settings = dns_settings
            problems.extend(certificate_problems(self))
        if problems:
            raise _Located(problems)
        self._provider_settings = settings
        self._dns_settings = dns_settings
        return self

    _provider_settings: dict[str, ProviderSettings]
    _dns_settings: list[DnsSettings]


def _provider_problems(providers: list[Any], problems: Problems) -> dict[str, ProviderSettings]:
    """Each provider's settings, validated by its own type's model."""
    settings: dict[str, ProviderSettings] = {}
    for index, raw in enumerate(providers):
        loc: tuple[Any, ...] = ("providers", index)
        name = raw.get("name") if isinstance(raw, dict) else None
        kind = raw.get("type") if isinstance(raw, dict) else None
        if not isinstance(name, str) or not re.fullmatch(_NAME, name):
            why = "required: lowercase letters, digits and '-', starting with a letter"
            problems.append(((*loc, "name"), why))
            continue
        if name in settings:
            problems.append(((*loc, "name"), f"duplicate provider name {name!r}"))
            continue
        if not isinstance(kind, str):
            problems.append(((*loc, "type"), f"required, one of: {', '.join(known_types())}"))
            continue
        try:
            cls = provider_class(kind)
        except UnknownType as exc:
            problems.append(((*loc, "type"), str(exc)))
            continue
        try:
            settings[name] = cls.Settings.model_validate(raw)
        except ValidationError as exc:
            problems.extend(((*loc, *err["loc"]), _message(err)) for err in exc.errors())
    return settings


def _service_problems(
    sname: str, service: ServiceConfig, config: Config, settings: dict[str, ProviderSettings]
) -> Problems:
    """What one service's section gets wrong against the rest of the file."""
    problems: Problems = []
    if not re.fullmatch(_NAME, sname):
        # Escaped: a name ending in a newline must not split its own message.
        shown = sname.encode("unicode_escape").decode()
        problems.append(
            (("services", shown), "service names use lowercase letters, digits and '-'")
        )
    problems.extend(env_problems(sname, service.run.env))
    listed = service.policy.providers
    named = [p.get("name") for p in config.providers if isinstance(p, dict)]
    for i, pname in enumerate(listed or []):
        if pname not in settings and pname not in named:
            where = ("services", sname, "policy", "providers", i)
            problems.append((where, f"no provider named {pname!r} in `providers`"))
    if listed is not None and len(set(listed)) != len(listed):
        problems.append((("services", sname, "policy", "providers"), "lists a provider twice"))
    problems.extend(_data_problems(sname, service, config))
    if service.health.timeout > service.health.interval:
        problems.append(
            (("services", sname, "health", "timeout"), "must not exceed health.interval")
        )
    return problems


def _data_problems(
    sname: str, service: ServiceConfig, config: Config
) -> list[tuple[tuple[Any, ...], str]]:
    """The stores a service's ``data`` names exist; store names are unique; a store's
    ``provider`` is a configured provider."""
    out: list[tuple[tuple[Any, ...], str]] = []
    names = [s.name for s in config.stores]
    if sname == next(iter(config.services)):  # the store list once, not once per service
        known = [p.get("name") for p in config.providers if isinstance(p, dict)]
        for i, store in enumerate(config.stores):
            if names.index(store.name) != i:
                out.append((("stores", i, "name"), f"duplicate store name {store.name!r}"))
            if store.provider is not None and store.provider not in known:
                out.append((("stores", i, "provider"), f"no provider named {store.provider!r}"))
    data = service.data
    if data is None:
        return out
    loc = ("services", sname, "data")
    if not names:
        out.append((loc, "no `stores` configured: add at least one to back up to"))
    for i, name in enumerate(data.stores or []):
        if name not in names:
            out.append(((*loc, "stores", i), f"no store named {name!r} in `stores`"))
    if data.engine == "pgbackrest":
        from failover.data.engines.pgsettings import repo_problems

        stores = {s.name: s for s in config.stores}
        out.extend(repo_problems(loc, list(data.stores or names), stores))
    if data.encryption_key:
        register_secret(data.encryption_key)
    return out


# --------------------------------------------------------------------------- interpolation

_ENV = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}")


def interpolate(data: Any, loc: tuple[Any, ...] = ()) -> tuple[Any, list[str]]:
    """Replace ``${NAME}`` in every string from the environment (``$${NAME}`` escapes)."""
    problems: list[str] = []

    def walk(node: Any, where: tuple[Any, ...]) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*where, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*where, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:

            def sub(match: re.Match[str]) -> str:
                if match.group(1):
                    return "${" + match.group(2) + "}"
                name = match.group(2)
                value = os.environ.get(name)
                if value is None:
                    problems.append(f"{format_loc(where)}: environment variable {name} is not set")
                    return ""
                if is_secret_name(name) or is_secret_name(str(where[-1] if where else "")):
                    register_secret(value)
                return value

            return _ENV.sub(sub, node)
        return node

    return walk(data, loc), problems


# --------------------------------------------------------------------------- loading


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    return Path(path or os.environ.get("FAILOVER_CONFIG") or DEFAULT_CONFIG)


def resolve_state_dir(
    config_path: Path, state_dir: str | os.PathLike[str] | None, in_file: str | None = None
) -> Path:
    chosen = state_dir or os.environ.get("FAILOVER_STATE_DIR")
    if chosen:
        return Path(chosen).resolve()
    here = config_path.resolve().parent
    return (here / Path(in_file).expanduser() if in_file else here / ".failover").resolve()


# libyaml's parser when PyYAML was built with it (Debian's and the wheels are): 20 ms
# instead of 155 ms at 200 services, paid by every cron-driven `check` (issue 16).
# Checks on the parsed document (constructors) subclass this, so they apply to either.
_YamlBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(NoDuplicateKeys, _YamlBase):  # type: ignore[misc]
    """The loader of ``failover.yaml``."""


def parse(
    text: str, source: str = DEFAULT_CONFIG, *, notify: bool = True, cache: Path | None = None
) -> Config:
    """Parse and validate config text. Raises ConfigError with located problems.
    ``notify=False``: without the ``notify:`` targets, for the commands that never notify
    (their secrets are needed only to notify: issue 21). ``cache``: where the parsed
    document of this text may be kept (see :mod:`failover.document`)."""
    data = document.cached(cache, text)
    if data is None:
        data = _document(text, source)
        document.keep(cache, text, data)
    if not notify:
        data = {k: v for k, v in data.items() if k != "notify"}
    # No `${` in the text: nothing to fill in, no walk over every value (issue 28).
    return _validate(data, source, env="${" in text)


def _document(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_Loader)
    except DuplicateKey as exc:
        where = node_path(text, exc.node)
        raise ConfigError(
            [f"{where}: duplicate key {exc.key!r} (line {exc.line})"], source
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        raise ConfigError([f"{where}: YAML syntax error: {problem}"], source) from None
    except RecursionError:
        raise ConfigError([f"{source}: nesting too deep"], source) from None
    if data is None:
        raise ConfigError([f"{source}: the file is empty (`failover init` writes a starter)"])
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of settings"], source)
    # Refused before anything expands the aliases (issue 3), by what they add (issue 28).
    blown = document.blowup(data)
    if blown:
        raise ConfigError([f"{source}: the document is too large: {blown}"], source)
    return data


def _validate(data: dict[str, Any], source: str, *, env: bool = True) -> Config:
    data, problems = interpolate(data) if env else (data, [])
    if problems:
        raise ConfigError(problems, source)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        out: list[str] = []
        for err in exc.errors():
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, _Located):
                out.extend(f"{format_loc(loc)}: {msg}" for loc, msg in ctx_err.problems)
            else:
                out.append(f"{format_loc(tuple(err['loc'])) or '(top level)'}: {_message(err)}")
        raise ConfigError(out, source) from None
    except RecursionError:
        raise ConfigError([f"{source}: nesting too deep"], source) from None


def load(
    path: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    *,
    notify: bool = True,
) -> Config:
    config_path = resolve_path(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{config_path}: no such file (write one with `failover init`, or pass --config)"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{config_path}: cannot read: {exc}"]) from None
    # The parsed document is kept where the command line or the environment puts the
    # state (or beside the file): the file's own `state.dir` is known once it is parsed.
    cache = resolve_state_dir(config_path, state_dir) / "config.parsed.json"
    config = parse(text, str(config_path), notify=notify, cache=cache)
    config.path = config_path.resolve()
    config.state_dir = resolve_state_dir(config_path, state_dir, config.state.dir)
    return config


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the file, with the built-in provider and DNS types spelled out."""
    from failover.schema import file_schema

    providers, dns = [], []
    for kind in known_types():
        try:
            providers.append(provider_class(kind).Settings)
        except Exception:
            continue
    for kind in known_types(dns=True):
        try:
            dns.append(dns_class(kind).Settings)
        except Exception:
            continue
    return file_schema(Config, providers, dns)
