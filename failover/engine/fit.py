"""Which providers can take a service at all, before any account is asked.

A service with ``data:`` needs its newest backup on the new host: streamed in through
:meth:`~providers.base.ComputeProvider.exec_on_host`, or pulled by the host itself at
boot (:mod:`failover.data.agent`, cloud images) from a store it can reach. A provider
that can do neither (a ``static`` machine, kept by hand; a cloud host whose backups are
encrypted or sit in a directory only the watcher sees) would start the service empty, or
fail at ``restore`` every time: the planner skips it and says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from failover.data.agent import host_config
from providers.base import ComputeProvider
from providers.base import provider_class

if TYPE_CHECKING:
    from failover.config import Config


def restore_problem(config: Config, service: str, provider: str) -> str | None:
    """Why ``provider`` cannot restore ``service``'s data; None when it can (or there is
    no data to restore)."""
    data = config.services[service].data
    settings = config.provider_settings().get(provider)
    if data is None or settings is None:
        return None
    cls = provider_class(settings.type)
    if not cls.restores_data:
        return (
            f"cannot restore {service}'s data: {settings.type} machines run the service "
            "as they were set up, nothing is copied onto them"
        )
    if cls.exec_on_host is not ComputeProvider.exec_on_host:
        return None
    if host_config(service, data, list(config.stores)) is None:
        why = (
            "its backups are encrypted and the key stays with the watcher"
            if data.encryption_key
            else "no store a new host can reach by itself (dir stores and connection "
            "strings are the watcher's)"
        )
        return f"cannot restore {service}'s data: {settings.type} hosts restore at boot, and {why}"
    return None
