"""The restore step: a final backup from the old host when it can give one, then the
newest backup that verifies streamed into ``data.restore`` on the new host.

The rules (README, "Data"):

- a move takes a final backup from the old host, after ``data.quiesce``; a failover
  does the same when the old host still answers, within ``FAILOVER_BOUND``; either
  falls back to the newest backup and the step's detail says which was used;
- when the state knows of a backup and no store gives one that restores, the run fails
  here, before ``cutover``: the old host is left alone. "No backup yet" only when none
  was ever taken (and no store holds a manifest we cannot read);
- a store that shares fate with a blocked provider is still read (within its retry
  bounds): reads often outlive an account's suspension;
- a move never restores an older backup than the newest the state knows of (the old
  host still has the data: the move fails); a failover or drill may, and says so in
  the detail, keeps it for ``check`` (WARNING) and announces it.
"""

from __future__ import annotations

import socket
import time
from typing import Any
from typing import BinaryIO
from typing import cast

from failover.data.backup import BackupReader
from failover.data.backup import Corrupt
from failover.data.backup import Listing
from failover.data.backup import Sealer
from failover.data.backup import WrongKey
from failover.data.backup import trusted_order
from failover.data.manifest import Manifest
from failover.data.meter import meter
from failover.data.plane import DataUnavailable
from failover.data.plane import EngineLike
from failover.data.plane import _data
from failover.data.plane import _note
from failover.data.plane import command
from failover.data.plane import listings
from failover.data.plane import take_backup
from failover.data.plane import usable
from failover.data.stores import Store
from providers.base import ProviderError
from providers.base import Unsupported

# A failover waits this long at most for the old host's final backup (a move waits
# ``data.timeout``: nobody is down while it runs).
FAILOVER_BOUND = 120.0
QUIESCE_BOUND = 60.0
_KINDS = ("move", "failover")


def final_backup(engine: EngineLike, service: str, kind: str, origin: Any) -> str:
    """A backup from the old host now (after ``quiesce``), as the step's first words;
    "" when the run has no old host that is still the live one."""
    row = engine.store.service(service)
    if kind not in _KINDS or origin is None or not row.active:
        return ""
    if row.active.get("host_id") != origin.host_id:
        return ""
    data = _data(engine, service)
    bound = data.timeout if kind == "move" else min(data.timeout, FAILOVER_BOUND)
    if kind == "failover" and not _answers(engine, service, origin.address):
        return "the old host does not answer: no final backup; "
    started = time.monotonic()
    quiesced = ""
    try:
        if data.quiesce:
            quiesced = _quiesce(engine, service, origin, data.quiesce)
        left = max(1.0, bound - (time.monotonic() - started))
        doc = take_backup(engine, service, timeout=left)
    except ProviderError as exc:
        return f"no final backup from the old host ({exc.message}); "
    return f"final backup {doc['id']} taken from the old host {origin.host_id}{quiesced}; "


def _answers(engine: EngineLike, service: str, address: str | None) -> bool:
    """The service's port accepts a connection (a refusal is no answer here)."""
    if not address:
        return False
    try:
        socket.create_connection((address, engine.config.services[service].port), 2.0).close()
    except OSError:
        return False
    return True


def _quiesce(engine: EngineLike, service: str, origin: Any, text: str) -> str:
    run = command(engine, service, text, origin.host_id, origin.address)
    result = engine.provider(origin.provider).exec_on_host(
        origin.host_id, run, timeout=QUIESCE_BOUND
    )
    if result.status != 0:
        return f" (quiesce exited with status {result.status}: writes may have gone on)"
    return " after quiesce"


def restore(
    engine: EngineLike,
    service: str,
    provider: str,
    host_id: str,
    *,
    kind: str = "deploy",
    origin: Any = None,
) -> tuple[str, dict[str, Any]]:
    """The final backup when there is an old host, then the newest good backup into
    ``data.restore`` on the new host: the step's detail and a record for the run.
    Raises ``DataUnavailable`` when backups exist but none could be restored,
    ``ProviderError`` (of the host's provider) when the host failed."""
    data = _data(engine, service)
    if data.restore is None:  # engine pgbackrest: the host restored itself before starting
        from failover.data.engines import pgbackrest

        return pgbackrest.restore(engine, service, (provider, host_id), kind, origin)
    first = final_backup(engine, service, kind, origin)
    stores, skipped = usable(engine, service, reading=True)
    found, failed = listings(engine, stores, service)
    known = (engine.store.data_state(service) or {}).get("last_backup")
    every = trusted_order([m for listing in found.values() for m in listing.backups])
    if not every:
        why = _each_store(service, stores, found, failed | skipped)
        untrusted = any(listing.skipped for listing in found.values())
        if known or untrusted or (stores and len(failed) == len(stores)):
            newest = f"the newest known is {known['id']}" if known else "backups may exist"
            raise DataUnavailable(
                f"{first}no store gives a backup that can be restored ({why}) and {newest}; "
                f"not starting {service} empty"
            )
        return first + "no backup yet: starting empty" + (f" ({why})" if why else ""), {}
    sealer = Sealer(data.encryption_key)
    run = command(engine, service, data.restore, host_id, None)
    refused: list[str] = []
    for manifest in every:
        if kind == "move" and known and manifest.id < str(known["id"]):
            # The old host still serves everything: better no move than an older copy.
            raise DataUnavailable(
                f"{first}backup {known['id']} (the newest known) cannot be restored"
                + (f" ({'; '.join(refused)})" if refused else " (no store holds it)")
                + f"; a move does not go on with older data: {service} stays where it is"
            )
        for store in stores:
            if manifest.id not in {m.id for m in found.get(store.name, Listing()).backups}:
                continue
            try:
                done = _try(engine, provider, host_id, run, store, manifest, sealer)
            except Unsupported as exc:
                return _on_the_host(engine, service, exc)
            if isinstance(done, str):
                refused.append(done)
                engine.log(f"{service}: refused {done}")
                continue
            detail, record = _restored(manifest, store, done, refused)
            return first + detail + _behind(engine, service, manifest, known, refused), record
    raise DataUnavailable(first + "no backup could be restored: " + "; ".join(refused))


def _each_store(
    service: str, stores: list[Store], found: dict[str, Listing], failed: dict[str, str]
) -> str:
    out = [f"{name}: {why}" for name, why in failed.items()]
    for store in stores:
        listing = found.get(store.name)
        if listing is not None:
            out.append(f"{store.name}: holds no backup of {service}")
            out.extend(listing.skipped.values())
    return "; ".join(out)


def _behind(
    engine: EngineLike,
    service: str,
    restored: Manifest,
    known: dict[str, Any] | None,
    refused: list[str],
) -> str:
    """When the state knows a newer backup than the one restored: say so, keep it for
    ``check`` and tell the operators."""
    if not known or str(known["id"]) <= restored.id:
        return ""
    message = (
        f"restored backup {restored.id} although backup {known['id']} (taken "
        f"{known.get('taken_at')}) is newer: no store gives it"
        + (f" ({'; '.join(refused)})" if refused else "")
        + f"; what {service} wrote after {restored.taken_at} is not on the new host"
    )
    _note(engine, service, behind={"message": message, "newest": known["id"]})
    announce = getattr(engine, "announce", None)
    if announce is not None:
        announce("backup_stale", service, reason=message, key=f"behind-{known['id']}")
    return "; NOT THE NEWEST: " + message


def _try(
    engine: EngineLike,
    provider: str,
    host_id: str,
    run: str,
    store: Store,
    manifest: Manifest,
    sealer: Sealer,
) -> float | str:
    """One backup from one store into the restore command: the seconds it took, or why
    it was refused. Errors of the host's provider are raised (the host is at fault)."""
    started = time.monotonic()
    where = f"backup {manifest.id} in store {store.name}"
    timeout = _data(engine, manifest.service).timeout
    try:
        with meter(engine, manifest.service, "restore", total=manifest.length) as gauge:
            reader = BackupReader(store, manifest, sealer, gauge)
            result = engine.provider(provider).exec_on_host(
                host_id, run, stdin=cast(BinaryIO, reader), timeout=timeout
            )
    except (Corrupt, WrongKey) as exc:
        # The message names the store and the backup already.
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    except ProviderError as exc:
        if exc.provider == provider:
            raise
        return f"{where}: {exc}"
    if result.status != 0 or not reader.done:
        return (
            f"{where}: the restore command exited with status {result.status}: "
            f"{result.stderr.strip()[-300:]}"
        )
    return time.monotonic() - started


def _on_the_host(engine: EngineLike, service: str, exc: Unsupported) -> tuple[str, dict[str, Any]]:
    """A host booted from an image restores itself at boot (``failover.data.agent``),
    from the stores it can reach; when it cannot, it cannot take the service."""
    from failover.data.agent import host_config

    data = _data(engine, service)
    if host_config(service, data, list(engine.config.stores)) is None:
        why = (
            "its backups are encrypted and the key stays with the watcher"
            if data.encryption_key
            else "no store it can reach itself (dir stores and connection strings are "
            "the watcher's)"
        )
        raise Unsupported(
            f"{exc.message}, and {service}'s data cannot be restored there: {why}",
            provider=exc.provider,
        ) from None
    return "restored at boot by the host itself (failover.data.agent, from its cloud stores)", {}


def _restored(
    manifest: Manifest, store: Store, seconds: float, refused: list[str]
) -> tuple[str, dict[str, Any]]:
    age = max(0.0, time.time() - manifest.taken)
    record = {
        "backup": manifest.id,
        "store": store.name,
        "taken_at": manifest.taken_at,
        "age_s": round(age, 1),
        "bytes": manifest.length,
        "restore_s": round(seconds, 3),
    }
    detail = (
        f"restored backup {manifest.id} from store {store.name} ({manifest.length} bytes, "
        f"{age:.0f}s old, sha256 verified) in {seconds:.1f}s"
    )
    if refused:
        detail += "; refused first: " + "; ".join(refused)
    return detail, record
