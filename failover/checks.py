"""Checks of config input that pydantic's types cannot express: DNS names and zones,
`run.env` names, canaries, and YAML keys given twice. :mod:`failover.config` applies
them; they live here to keep that module small."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import yaml

from providers.base import DnsSettings

# A located problem: the config path and the message, as `failover.config` reports them.
Problem = tuple[tuple[Any, ...], str]

# A service's, provider's or DNS provider's name. Matched with fullmatch: `re.match` with
# `$` let "web\n" through, which then broke the cloud-init YAML (issue 11).
NAME = r"[a-z][a-z0-9-]{0,39}"

_DOMAIN = re.compile(r"[a-z0-9*]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def dns_name_problem(name: str) -> str | None:
    """Why ``name`` (lowercase, without its final dot) is not a DNS name; None if it is."""
    if len(name) > 253:
        return f"is not a DNS name: {len(name)} characters, at most 253"
    long = next((label for label in name.split(".") if len(label) > 63), None)
    if long is not None:
        return f"is not a DNS name: a label of {len(long)} characters, at most 63"
    if not _DOMAIN.fullmatch(name):
        return "is not a DNS name"
    return None


def zone_problems(dns: DnsSettings, domains: dict[str, str]) -> list[Problem]:
    # The zone names a file in the state directory (`dns: local`) and a zone at the DNS
    # provider: `../../x` wrote outside the state directory (issue 11).
    zone = dns.zone.rstrip(".").lower()
    problem = dns_name_problem(zone) if dns.zone else "is empty"
    if problem or "*" in zone:
        return [(("dns", "zone"), f"{dns.zone!r} {problem or 'is not a DNS name'}")]
    out: list[Problem] = []
    if not 0 <= dns.ttl <= 2**31 - 1:
        out.append((("dns", "ttl"), "must be between 0 and 2147483647 seconds"))
    for sname, domain in domains.items():
        if domain != zone and not domain.endswith("." + zone):
            out.append((("services", sname, "domain"), f"{domain} is outside the zone {zone}"))
    return out


def env_problems(service: str, env: dict[str, str]) -> list[Problem]:
    # The kernel cannot pass such a variable: every later `check` crashed creating the
    # host (issue 11). The value itself is never quoted: it may be a secret.
    out: list[Problem] = []
    for key, value in env.items():
        loc = ("services", service, "run", "env", key.replace("\0", "\\0"))
        if not key:
            out.append((loc, "an environment variable needs a name"))
        elif "=" in key or "\0" in key:
            out.append((loc, "a variable name cannot contain '=' or a NUL byte"))
        if "\0" in value:
            out.append((loc, "the value contains a NUL byte, which no environment can hold"))
    return out


def canary_problem(canary: str) -> str | None:
    """Why ``canary`` is neither an http(s) URL with a host nor host:port; None if fine."""
    if "://" in canary:
        url = urlsplit(canary)
        try:
            url.port  # noqa: B018 - raises on a bad port
        except ValueError:
            return f"{canary!r}: the port is not a number from 1 to 65535"
        if url.scheme not in ("http", "https") or not url.hostname:
            return f"{canary!r} is not an http:// or https:// URL with a host"
        return None
    host, colon, port = canary.rpartition(":")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"{canary!r} is neither an http(s):// URL nor host:port (port 1-65535)"
    if any(c in host for c in "/ ?#@"):
        return f"{canary!r}: {host!r} is not a host name or address"
    return None


class DuplicateKey(Exception):
    def __init__(self, node: yaml.Node, key: object, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.node, self.key, self.line = node, key, line


class NoDuplicateKeys:
    """Mixed into a PyYAML loader (the C one or the Python one): a key given twice in one
    mapping is refused; YAML keeps the last silently, and a second `services:` dropped
    services from monitoring (issue 11)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[object] = set()
            for key_node, _ in node.value:
                # `<<: *base` then a key of its own overrides the merged one: not a repeat.
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                    key_node, yaml.ScalarNode
                ):
                    continue
                key = self.construct_object(key_node)  # type: ignore[attr-defined]
                if key in seen:
                    raise DuplicateKey(node, key, key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


def node_path(text: str, target: yaml.Node) -> str:
    """Where ``target`` sits in the document, as a config path (``services.web``); read
    again only to word an error, so the fast path keeps no parent links."""
    where = (target.start_mark.line, target.start_mark.column)
    root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())] if root is not None else []
    seen: set[int] = set()
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if (node.start_mark.line, node.start_mark.column) == where and node.tag == target.tag:
            return _loc(loc) or "(top level)"
        if isinstance(node, yaml.MappingNode):
            stack.extend((v, (*loc, str(k.value))) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, (*loc, i)) for i, v in enumerate(node.value))
    return "(top level)"


def _loc(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
