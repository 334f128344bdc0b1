"""What a data engine's recovery point is, from the state's document (no store asked):
``status``'s ``data.rpo_s`` and ``check``'s warnings."""

from __future__ import annotations

import time
from typing import Any

from failover.data.settings import DataConfig


def rpo(doc: dict[str, Any]) -> dict[str, float]:
    """``status``'s ``data.rpo_s``: now minus the newest archived segment, per store."""
    now = time.time()
    return {name: round(now - float(w["time"]), 1) for name, w in (doc.get("wal") or {}).items()}


def engine_problems(data: DataConfig, doc: dict[str, Any]) -> list[str]:
    if data.engine != "pgbackrest":
        return []
    worst = rpo(doc)
    if not worst and doc.get("last_backup"):
        return ["no WAL archived to any store"]
    best = min(worst.values(), default=0.0)
    if best > data.oldest_ok():
        return [f"recovery point {best:.0f}s old in every store (max_age {data.oldest_ok():g}s)"]
    return []
