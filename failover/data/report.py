"""``failover backup``'s document on every path: taken, or why not (and each store's
answer), so a script reading ``--json`` always has something to read."""

from __future__ import annotations

from typing import Any

from failover.data.plane import DataError
from failover.data.plane import EngineLike
from failover.data.plane import take_backup
from providers.base import ProviderError


def backup_document(engine: EngineLike, service: str) -> dict[str, Any]:
    """The contract's document; on failure its fields are null, ``stores`` says what
    each store answered and ``error`` why."""
    try:
        return take_backup(engine, service)
    except ProviderError as exc:
        stores = exc.stores if isinstance(exc, DataError) else {}
        return {
            "service": service,
            "id": None,
            "taken_at": None,
            "bytes": None,
            "sha256": None,
            "new_bytes": None,
            "chunks": None,
            "stores": stores,
            "error": str(exc),
        }


def backup_lines(doc: dict[str, Any]) -> list[str]:
    if doc.get("error") is None:
        from failover.output import backup_lines as taken

        return taken(doc)
    lines = [f"{doc['service']}: no backup: {doc['error']}"]
    return lines + [f"  {name:<16} {result}" for name, result in doc["stores"].items()]
