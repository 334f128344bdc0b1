"""Which class a config's ``type:`` names: the built-in providers and DNS backends,
then the entry points of third-party ones. Re-exported by :mod:`providers.base`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from providers.base import ComputeProvider
    from providers.base import DnsProvider

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
