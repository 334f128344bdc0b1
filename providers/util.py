"""Helpers the providers and the engine share; no SDK imports.

They live here, under ``providers/``, because the arrows point ``failover -> providers``:
the engine, the state store and the renderer may import this module, a provider may not
import ``failover``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from providers.base import HostSpec

# The placeholders a `run` command may use; the values differ by where the command runs.
PLACEHOLDER = re.compile(r"\{(port|address|host_id|service|generation|python)\}")

# Environment variable (or config key) names that carry credentials. One rule for what
# is redacted, what `${ENV}` registers as a secret and what a local host does not inherit.
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH|TSIG", re.I)


def is_secret_name(name: str) -> bool:
    """True when ``name`` looks like it holds a credential (``AWS_SECRET_ACCESS_KEY``)."""
    return bool(_SECRET_NAME.search(name))


def fill_placeholders(command: str, values: Mapping[str, str]) -> str:
    """``{port}``, ``{address}``... in ``command`` replaced from ``values``, which must
    have an entry for each placeholder name; other braces are left as they are."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], command)


def image_placeholders(spec: HostSpec) -> dict[str, str]:
    """Placeholder values for a host booted from an image (cloud-init, a startup
    script): its address is only known on the host itself, so it listens on all."""
    return {
        "port": str(spec.port),
        "address": "0.0.0.0",
        "host_id": spec.name,
        "service": spec.service,
        "generation": str(spec.generation),
        "python": "python3",
    }


def pid_alive(pid: object) -> bool:
    """True while process ``pid`` exists and is not a zombie.

    A process of another user (PermissionError) counts as alive: it holds what it holds.
    None, 0, negatives and anything that is not a pid count as dead; ``kill(0)`` would
    otherwise ask about our own process group.
    """
    if isinstance(pid, bool) or not isinstance(pid, int | str):
        return False
    try:
        number = int(pid)
    except ValueError:
        return False
    if number <= 0:
        return False
    try:
        os.kill(number, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0), but it holds nothing any more.
    try:
        with open(f"/proc/{number}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def is_loopback_http(endpoint: str | None) -> bool:
    """True for ``http://127.x.y.z:N``, ``http://localhost:N`` and ``http://[::1]:N``: a
    local double, never a cloud."""
    if not endpoint:
        return False
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False
