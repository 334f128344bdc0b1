"""What ``doctor`` checks besides the providers and the DNS zone: the state store (each
etcd member: does it answer, is there a leader; or the SQLite file) and each backup
store (its root or container exists; a probe object is written, read back and deleted).

Each check runs on its own: an etcd that does not answer is reported as such, and the
provider, DNS and store checks still run (a watcher that cannot reach its state is the
moment an operator runs ``doctor``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from failover.data import plane as data_plane
from failover.state import StateError
from providers.base import Check
from providers.base import ProviderError

if TYPE_CHECKING:
    from failover.engine import Engine


def _part(name: str, state: str, checks: list[Check], **extra: Any) -> dict[str, Any]:
    failing = [c for c in checks if not c.ok and c.level == "error"]
    reason = "; ".join(f"{c.name}: {c.detail}" for c in failing) or None
    return {"name": name, "state": state if not failing else "unknown", "reason": reason,
            "checks": [c.__dict__ for c in checks], **extra}  # fmt: skip


def state_store(engine: Engine) -> dict[str, Any]:
    """The state store: each etcd member's status, or the SQLite file."""
    config = engine.config.state
    if config.backend != "etcd":
        assert engine.config.state_dir is not None
        path = engine.config.state_dir / "state.db"
        writable = os.access(path if path.exists() else path.parent, os.W_OK)
        detail = f"{path} {'writable' if writable else 'NOT writable by this user'}"
        return _part("sqlite", "available", [Check("file", writable, detail)], backend="sqlite")
    from failover.state.gateway import TLS
    from failover.state.gateway import Gateway

    checks = []
    for url in config.endpoints:
        one = Gateway(
            [url],
            timeout=config.timeout,
            tls=TLS(config.ca_file, config.cert_file, config.key_file),
            username=config.username,
            password=config.password,
        )
        try:
            status = one.call("/v3/maintenance/status", {})
            members = len(one.members())
        except StateError as exc:
            checks.append(Check(f"member {url}", False, str(exc)))
            continue
        finally:
            one.close()
        leader = status.get("leader")
        errors = "; ".join(status.get("errors") or [])
        ok = bool(leader) and leader != "0" and not errors
        detail = f"etcd {status.get('version', '?')}, {members} member(s), " + (
            f"leader {leader}" if ok else f"no leader{': ' + errors if errors else ''}"
        )
        checks.append(Check(f"member {url}", ok, detail))
    return _part("etcd", "available", checks, backend="etcd", prefix=config.prefix)


def backup_stores(engine: Engine) -> list[dict[str, Any]]:
    """Each backup store: reachable, its root there, a probe object round-tripped."""
    return [_backup_store(engine, settings) for settings in engine.config.stores]


def _backup_store(engine: Engine, settings: Any) -> dict[str, Any]:
    name, kind = settings.name, settings.type
    if kind == "dir":
        root = Path(settings.path).expanduser()
        if not root.is_dir():
            # Never written to: a probe would create the folder on the local disk, under
            # the mount point of a share that is not mounted.
            why = f"{root} does not exist (not mounted?)"
            return _part(name, "unknown", [Check("root", False, why)], type=kind)
    checks: list[Check] = []
    try:
        store = data_plane.plane(engine).store(name)
        store.list("")
        checks.append(Check("root", True, "answers" if kind != "dir" else f"{settings.path}"))
        key, data = f"failover-doctor/probe-{uuid.uuid4().hex[:12]}", os.urandom(64)
        store.put(key, data)
        checks.append(Check("write", True, key))
        same = store.get(key) == data
        checks.append(Check("read", same, "read back" if same else "read back different bytes"))
        store.delete(key)
        checks.append(Check("delete", True, "probe deleted"))
    except ProviderError as exc:
        step = ("root", "write", "read", "delete")[len(checks)]
        checks.append(Check(step, False, exc.message if exc.message else str(exc)))
    return _part(name, "available", checks, type=kind)


def tolerant(fn: Any, problems: list[str]) -> list[str]:
    """``fn()``'s warnings; a state store that does not answer is said once, not raised."""
    try:
        return list(fn())
    except StateError as exc:
        if not problems:
            problems.append(f"some warnings need the state store, which failed: {exc}")
        return []
