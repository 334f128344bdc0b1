"""What the engine does with a service's data: take a backup on the live host, copy
every complete backup to every store that lacks it, keep ``keep``, and restore the
newest good one into a new host.

The engine calls four functions here (:func:`data_round` from ``check``/``watch``,
:func:`restore` from the restore step, :func:`take_backup` and :func:`catalog` from the
CLI) and :func:`status` for documents. The state keeps one small document per service
(``set_data_state``/``data_state``): the last backup and each store's standing.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any
from typing import BinaryIO
from typing import Protocol
from typing import cast

from failover.data.backup import BackupWriter
from failover.data.backup import Corrupt
from failover.data.backup import Listing
from failover.data.backup import Sealer
from failover.data.backup import collect
from failover.data.backup import copy
from failover.data.backup import iso
from failover.data.backup import prune
from failover.data.backup import scan
from failover.data.backup import trusted_order
from failover.data.engines.measure import engine_problems
from failover.data.engines.measure import rpo
from failover.data.manifest import Manifest
from failover.data.meter import meter
from failover.data.pool import Pool
from failover.data.settings import DataConfig
from failover.data.settings import StoreBase
from failover.data.settings import store_vendor
from failover.data.stores import Store
from failover.data.stores import open_store
from failover.state import Store as StateStore
from providers.base import ComputeProvider
from providers.base import ProviderError
from providers.base import Unsupported
from providers.util import fill_placeholders

if TYPE_CHECKING:
    from failover.config import Config
    from failover.engine.health import Verdict

# A store that failed this many rounds in a row makes `check` WARNING.
FAILING_ROUNDS = 3


class DataError(ProviderError):
    """A backup or restore that cannot be done; the message says why and what to do.
    ``stores``: each store's answer, when it got that far."""

    kind = "data"

    def __init__(self, message: str, *, stores: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.stores = stores or {}


class DataUnavailable(DataError):
    """Backups exist (or existed) but none could be restored: the run must not go on
    with an empty service."""


class EngineLike(Protocol):
    """What this module asks of the engine (a background round brings its own state
    connection: a SQLite connection belongs to the thread that opened it)."""

    config: Config
    store: StateStore

    def provider(self, name: str) -> ComputeProvider: ...

    def log(self, message: str) -> None: ...


class _Plane:
    """The stores of one engine, made once, and its background rounds."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stores: dict[str, Store] = {}
        self.background = False  # `watch`: rounds run beside the probes, not in them
        self.workers: dict[str, threading.Thread] = {}

    def store(self, name: str) -> Store:
        if name not in self.stores:
            settings = next(s for s in self.config.stores if s.name == name)
            base = self.config.path.parent if self.config.path else None
            self.stores[name] = open_store(settings, base)
        return self.stores[name]


def usable(
    engine: EngineLike, service: str, *, reading: bool = False
) -> tuple[list[Store], dict[str, str]]:
    """The service's stores in order, less those whose provider is blocked (unless
    ``reading``: a blocked company may still serve reads; tried with at most
    ``BLOCKED_READS`` attempts and seconds per call) and those that cannot be opened."""
    data = _data(engine, service)
    names = data.stores or [s.name for s in engine.config.stores]
    states = engine.store.provider_states()
    out, skipped = [], {}
    for name in names:
        settings = next(s for s in engine.config.stores if s.name == name)
        state = states.get(settings.provider or "", {}).get("state")
        blocked = bool(settings.provider) and state == "blocked"
        if blocked and not reading:
            skipped[name] = f"skipped: provider {settings.provider} is blocked"
            continue
        try:
            out.append(_bounded(engine, settings) if blocked else plane(engine).store(name))
        except Exception as exc:  # an SDK refusing its settings: this store only
            skipped[name] = f"cannot open store {name}: {exc}"
    return out, skipped


# A store whose provider is blocked is read with this many attempts and seconds per call.
BLOCKED_READS = (2, 20.0)


def _bounded(engine: EngineLike, settings: StoreBase) -> Store:
    attempts, seconds = BLOCKED_READS
    bounded = settings.model_copy(
        update={
            "retry_attempts": min(settings.retry_attempts, attempts),
            "retry_max_time": min(settings.retry_max_time, seconds),
            "timeout": min(settings.timeout, seconds),
        }
    )
    here, key = plane(engine), f"{settings.name} (blocked: reads only)"
    if key not in here.stores:
        config = engine.config
        here.stores[key] = open_store(bounded, config.path.parent if config.path else None)
    return here.stores[key]


def plane(engine: EngineLike) -> _Plane:
    found = getattr(engine, "_data_plane", None)
    if not isinstance(found, _Plane):
        found = _Plane(engine.config)
        engine._data_plane = found  # type: ignore[attr-defined]
    return found


def background(engine: EngineLike) -> None:
    """From now on this engine's rounds back up and copy in a thread per service, so a
    long dump never holds up the probes (``watch``). ``check`` stays in line: it is one
    round, and the verdict is taken before the backup."""
    plane(engine).background = True


class _Side:
    """A background round's view of the engine: the engine's config, providers and
    stores, and its own state connection."""

    def __init__(self, engine: EngineLike) -> None:
        from failover.state import open_store as open_state

        self.engine = engine
        self.config = engine.config
        self.store: StateStore = open_state(engine.config)
        self._data_plane = plane(engine)
        self.on_transfer = getattr(engine, "on_transfer", None)  # progress, as the engine's

    def provider(self, name: str) -> ComputeProvider:
        return self.engine.provider(name)

    def log(self, message: str) -> None:
        self.engine.log(message)


def _in_background(engine: EngineLike, service: str) -> None:
    side = _Side(engine)
    try:
        _round_one(side, service)
    except Exception as exc:  # the next round tries again; a watcher must not die of it
        engine.log(f"{service}: data round failed: {type(exc).__name__}: {exc}")
    finally:
        side.store.close()


def _data(engine: EngineLike, service: str) -> DataConfig:
    data = engine.config.services[service].data
    if data is None:
        raise DataError(f"services.{service}.data is not set: {service} has no backups")
    return data


def command(engine: EngineLike, service: str, text: str, host_id: str, address: str | None) -> str:
    """``{port}``, ``{service}``, ``{python}``... filled in a backup/restore command as in
    ``run`` commands (``{python}`` is this Python: meaningful on local hosts)."""
    svc = engine.config.services[service]
    values = {
        "port": str(svc.port),
        "address": address or "",
        "host_id": host_id,
        "service": service,
        "generation": str(engine.store.service(service).generation),
        "python": shlex.quote(sys.executable),
    }
    return fill_placeholders(text, values)


def _note(engine: EngineLike, service: str, **changes: Any) -> dict[str, Any]:
    doc = engine.store.data_state(service) or {"stores": {}}
    doc.update({k: v for k, v in changes.items() if k != "stores"})
    for name, result in (changes.get("stores") or {}).items():
        entry = doc["stores"].setdefault(name, {"failures": 0})
        if result == "ok":
            entry.update(ok=True, error=None, failures=0)
        else:
            entry.update(ok=False, error=result, failures=int(entry.get("failures", 0)) + 1)
    engine.store.set_data_state(service, doc)
    return doc


# --------------------------------------------------------------------------- backup


def take_backup(
    engine: EngineLike, service: str, *, in_round: bool = False, timeout: float | None = None
) -> dict[str, Any]:
    """Run ``data.backup`` on the live host now and store it; the contract's document.
    ``in_round``: the round's replication that follows records the stores' standing;
    ``timeout``: less than ``data.timeout`` (a failover's final backup)."""
    data = _data(engine, service)
    if data.backup is None:  # engine pgbackrest: a full backup into every repository
        from failover.data.engines import pgbackrest

        return {"stores": pgbackrest.take_backup(engine, service)}
    row = engine.store.service(service)
    if not row.active:
        raise DataError(f"{service} is not deployed: nothing to back up")
    stores, skipped = usable(engine, service)
    if not stores:
        why = f"no store can take a backup ({'; '.join(skipped.values())})"
        _note(engine, service, last_error=why, last_attempt=time.time())
        raise DataError(f"{service}: {why}", stores=skipped)
    # The last backup's size: an estimate of this one's, for the progress shown.
    before = (engine.store.data_state(service) or {}).get("last_backup") or {}
    gauge = meter(engine, service, "backup", total=before.get("bytes"), estimated=True)
    writer = BackupWriter(
        service, stores, Sealer(data.encryption_key), timeout=timeout or data.timeout, meter=gauge
    )
    host = row.active
    provider = engine.provider(host["provider"])
    try:
        with gauge:
            result = provider.exec_on_host(
                host["host_id"],
                command(engine, service, data.backup, host["host_id"], host.get("address")),
                stdout=cast(BinaryIO, writer),
                timeout=timeout or data.timeout,
            )
    except Unsupported as exc:
        raise DataError(
            f"{exc}; {host['provider']} hosts take their own backups on a timer "
            "(cloud-init) and the watcher copies them to the other stores"
        ) from None
    except ProviderError as exc:
        raise _failed(engine, writer, skipped, str(exc)) from None
    if result.status != 0:
        why = f"`{data.backup}` exited with status {result.status}: {result.stderr.strip()[-500:]}"
        raise _failed(engine, writer, skipped, why)
    try:
        manifest = writer.finish()
    except ProviderError as exc:
        # Nothing is recorded: a backup no store gave back does not exist.
        raise _failed(engine, writer, skipped, str(exc)) from None
    results = {s.name: writer.failed.get(s.name, "ok") for s in stores} | skipped
    last = {"id": manifest.id, "taken_at": manifest.taken_at, "taken": manifest.taken}
    _note(
        engine,
        service,
        last_backup=last | {"bytes": manifest.length, "sha256": manifest.sha256},
        last_attempt=time.time(),
        last_error=None,
        behind=None,
        stores={} if in_round else results,
    )
    for store in stores:
        if results[store.name] == "ok":
            _keep(engine, store, service)
    return manifest.summary() | {"stores": results}


def _failed(
    engine: EngineLike, writer: BackupWriter, skipped: dict[str, str], why: str
) -> DataError:
    """A backup that did not happen: its chunks removed, the failure kept for ``check``."""
    service = writer.manifest.service
    writer.abandon()
    _note(engine, service, last_error=f"backup failed: {why}", last_attempt=time.time())
    results = {s.name: writer.failed.get(s.name, "not written") for s in writer.stores}
    return DataError(f"{service}: the backup failed: {why}", stores=results | skipped)


def _keep(engine: EngineLike, store: Store, service: str) -> None:
    data = _data(engine, service)
    # Without a key a forger can make verifying manifests: the newest backup the state
    # knows of (taken or seen by this watcher) survives any number of them.
    newest = ((engine.store.data_state(service) or {}).get("last_backup") or {}).get("id")
    # Pruning is retried next round; a failing store is reported by its round.
    with contextlib.suppress(ProviderError):
        sealer = Sealer(data.encryption_key)
        listing = scan(store, service, sealer)
        gone = prune(store, service, data.keep, listing, frozenset([newest] if newest else []))
        collect(store, service, sealer)
        own = sum(
            c[0] for m in listing.backups if not m.deduped and m.id not in gone for c in m.chunks
        )
        _held(engine, service, store.name, own + Pool(store, service, sealer.keys).held_bytes())


def _held(engine: EngineLike, service: str, name: str, held: int) -> None:
    """The bytes ``name`` holds for the service, for ``status`` (no store is asked there)."""
    doc = engine.store.data_state(service) or {"stores": {}}
    doc["stores"].setdefault(name, {"failures": 0})["bytes"] = held
    engine.store.set_data_state(service, doc)


def listings(
    engine: EngineLike, stores: list[Store], service: str
) -> tuple[dict[str, Listing], dict[str, str]]:
    """Each store's verified backups, asked concurrently; and the stores that failed.
    A manifest that does not verify is logged by name and kept in the state (``check``
    warns of it) until a round finds none."""
    found: dict[str, Listing] = {}
    failed: dict[str, str] = {}
    if not stores:
        return found, failed
    sealer = Sealer(_data(engine, service).encryption_key)
    with ThreadPoolExecutor(max_workers=min(8, len(stores))) as pool:
        futures = {s.name: pool.submit(scan, s, service, sealer) for s in stores}
        for name, future in futures.items():
            try:
                found[name] = future.result()
            except ProviderError as exc:
                failed[name] = str(exc)
    untrusted = sorted(w for listing in found.values() for w in listing.skipped.values())
    for warning in untrusted:
        engine.log(f"{service}: skipped {warning}")
    _note(engine, service, untrusted=untrusted or None)
    return found, failed


def replicate(engine: EngineLike, service: str) -> tuple[dict[str, str], Manifest | None]:
    """Copy every complete backup to every store of the service that lacks it (within
    the ``keep`` newest), verifying each chunk; then prune. Each store's result, and the
    newest complete backup any store holds."""
    data = _data(engine, service)
    stores, skipped = usable(engine, service)
    found, results = listings(engine, stores, service)
    by_id: dict[str, tuple[Store, Manifest]] = {}
    for store in stores:
        for manifest in found[store.name].backups if store.name in found else []:
            by_id.setdefault(manifest.id, (store, manifest))
    ordered = trusted_order([m for _, m in by_id.values()])
    wanted = [m.id for m in ordered][: data.keep]
    for store in stores:
        if store.name not in results:
            results.update(_fill(engine, service, store, found[store.name], wanted, by_id))
    newest = ordered[0] if ordered else None
    return results | skipped, newest


def _fill(
    engine: EngineLike,
    service: str,
    store: Store,
    present: Listing,
    wanted: list[str],
    by_id: dict[str, tuple[Store, Manifest]],
) -> dict[str, str]:
    data = _data(engine, service)
    have = {m.id for m in present.backups}
    try:
        for backup_id in wanted:
            if backup_id not in have:
                source, manifest = by_id[backup_id]
                try:
                    copy(manifest, source, store, Sealer(data.encryption_key))
                except Corrupt as exc:
                    # The source's copy is damaged: its store is at fault, not this one.
                    return {source.name: exc.message, store.name: "ok"}
        _keep(engine, store, service)
    except ProviderError as exc:
        return {store.name: str(exc)}
    return {store.name: "ok"}


def data_round(
    engine: EngineLike, verdicts: dict[str, Verdict], *, dry_run: bool = False
) -> dict[str, Verdict]:
    """``check``/``watch``: a backup of every service that is due, replication, and the
    verdicts of services whose data is at risk turned WARNING."""
    out = {}
    for service, verdict in verdicts.items():
        if engine.config.services[service].data is None:
            continue
        if not dry_run:
            try:
                _start_round(engine, service)
            except Exception as exc:  # data at risk is a WARNING, never a reason to stop judging
                engine.log(f"{service}: data round failed: {type(exc).__name__}: {exc}")
                _note(engine, service, last_error=f"{exc}", last_attempt=time.time())
        out[service] = _judge(engine, service, verdict)
    return out


def _start_round(engine: EngineLike, service: str) -> None:
    here = plane(engine)
    if not here.background:
        _round_one(engine, service)
        return
    running = here.workers.get(service)
    if running is not None and running.is_alive():
        return  # the last round's backup is still streaming
    worker = threading.Thread(
        target=_in_background, args=(engine, service), daemon=True, name=f"data-{service}"
    )
    here.workers[service] = worker
    worker.start()


# A failing store is tried again this often at most (its retries take time each round).
RETRY_FAILING = 60.0


def _round_one(engine: EngineLike, service: str) -> None:
    """Back up when ``every`` has passed since the last backup (or attempt); copy to the
    stores that lack a backup after a backup, while a store is failing (at most every
    ``RETRY_FAILING`` seconds), and every ``every`` anyway: a round costs no store call
    otherwise."""
    data = _data(engine, service)
    if data.engine == "pgbackrest":
        from failover.data.engines import pgbackrest

        return pgbackrest.round_one(engine, service)
    doc = engine.store.data_state(service) or {}
    row = engine.store.service(service)
    now = time.time()
    last = float((doc.get("last_backup") or {}).get("taken") or 0.0)
    attempted = float(doc.get("last_attempt") or 0.0)
    took = False
    # A last backup later than now is a clock stepped back: waiting for it would take no
    # backup for as long as the step (fault lab: a watcher's clock jumped -900 s).
    since = now - max(last, attempted)
    if (since >= data.every or since < 0) and row.active and row.health_state != "down":
        try:
            take_backup(engine, service, in_round=True)
            took = True
        except ProviderError as exc:  # a failed backup is a warning about data, never more
            engine.log(str(exc))
    failing = any(not e.get("ok") for e in (doc.get("stores") or {}).values())
    since = now - float(doc.get("last_sync") or 0.0)
    if not (took or since >= (min(data.every, RETRY_FAILING) if failing else data.every)):
        return
    results, newest = replicate(engine, service)
    changes: dict[str, Any] = {"stores": results, "last_sync": now}
    if newest is not None and newest.taken > last and not took:
        # Taken on the host by its own timer (cloud hosts), found in a store.
        changes["last_backup"] = {
            "id": newest.id,
            "taken_at": newest.taken_at,
            "taken": newest.taken,
            "bytes": newest.length,
            "sha256": newest.sha256,
        }
    _note(engine, service, **changes)


def problems(engine: EngineLike, service: str) -> list[str]:
    """Why the service's data is at risk, from the state (no store is asked)."""
    data = engine.config.services[service].data
    if data is None:
        return []
    doc = engine.store.data_state(service) or {}
    out = []
    last = doc.get("last_backup")
    limit = data.backup_max_age()
    if not last:
        out.append("no backup yet")
    elif time.time() - float(last["taken"]) > limit:
        age = time.time() - float(last["taken"])
        out.append(f"newest backup {last['id']} is {age:.0f}s old (max_age {limit:g}s)")
    if doc.get("last_error") and float(doc.get("last_attempt") or 0) > float(
        (last or {}).get("taken") or 0
    ):
        out.append(f"the last backup failed: {doc['last_error']}")
    if doc.get("behind"):
        out.append(doc["behind"]["message"])
    out.extend(f"skipped {w}" for w in doc.get("untrusted") or [])
    out.extend(engine_problems(data, doc))
    for name, entry in sorted((doc.get("stores") or {}).items()):
        if int(entry.get("failures", 0)) >= FAILING_ROUNDS:
            out.append(f"store {name} failed {entry['failures']} rounds: {entry.get('error')}")
    return out


def _judge(engine: EngineLike, service: str, verdict: Verdict) -> Verdict:
    from failover.engine.health import OK
    from failover.engine.health import WARNING

    found = problems(engine, service)
    row = engine.store.service(service)
    if not found or verdict.exit_code != OK or not row.active:
        return verdict
    return replace(verdict, exit_code=WARNING, message=f"{verdict.message}; data: {found[0]}")


# --------------------------------------------------------------------------- documents


def catalog(engine: EngineLike, service: str) -> list[dict[str, Any]]:
    """``failover backups``: every complete backup, newest first, with the stores that
    hold it."""
    if _data(engine, service).engine == "pgbackrest":
        from failover.data.engines import pgbackrest

        return pgbackrest.catalog(engine, service)
    stores, _ = usable(engine, service, reading=True)
    found, failed = listings(engine, stores, service)
    if failed and not found:
        raise DataError(f"{service}: no store answered ({'; '.join(failed.values())})")
    every = trusted_order([m for listing in found.values() for m in listing.backups])
    trusted = {m.id for m in every}
    rows: dict[str, dict[str, Any]] = {}
    for store in stores:
        for m in found[store.name].backups if store.name in found else []:
            if m.id in trusted:
                rows.setdefault(m.id, m.summary() | {"stores": []})["stores"].append(store.name)
    return [rows[i] for i in sorted(rows, reverse=True)]


def status(engine: EngineLike, service: str) -> dict[str, Any] | None:
    """``status --json``'s ``data`` object, from the state (no store is asked)."""
    data = engine.config.services[service].data
    if data is None:
        return None
    doc = engine.store.data_state(service) or {}
    last = doc.get("last_backup")
    stores = doc.get("stores") or {}
    newest = last["id"] if last else None
    return {
        "last_backup": {
            "id": last["id"],
            "taken_at": last.get("taken_at") or iso(float(last["taken"])),
            "age_s": round(time.time() - float(last["taken"]), 1),
        }
        if last
        else None,
        "stores": {
            name: {
                "ok": bool(entry.get("ok")),
                "newest": newest if entry.get("ok") else None,
                **({"bytes": entry["bytes"]} if "bytes" in entry else {}),
                **({"error": entry["error"]} if entry.get("error") else {}),
            }
            for name, entry in sorted(stores.items())
        },
        "problems": problems(engine, service),
        **({"rpo_s": rpo(doc)} if data.engine == "pgbackrest" else {}),
    }


def warnings(engine: EngineLike) -> list[str]:
    """doctor: a service whose every store sits at one company, or at the company its
    live host (or a store's fate-sharing provider) belongs to, loses its data with it."""
    from providers.base import provider_class

    config = engine.config
    out = []
    for name, svc in config.services.items():
        if svc.data is None:
            continue
        chosen = [
            s
            for s in config.stores
            if s.name in (svc.data.stores or [t.name for t in config.stores])
        ]
        vendors = {}
        for store in chosen:
            vendor = store_vendor(store)
            if store.provider and store.provider in config.provider_settings():
                settings = config.provider_settings()[store.provider]
                vendor = provider_class(settings.type).vendor or vendor
            vendors[store.name] = vendor
        known = set(vendors.values())
        if len(known) != 1 or "" in known or "local" in known:
            continue
        vendor = known.pop()
        active = engine.store.service(name).active
        lives = ""
        if active and active["provider"] in config.provider_settings():
            here = config.provider_settings()[active["provider"]]
            if provider_class(here.type).vendor == vendor:
                lives = f", the company {name} lives on ({active['provider']})"
        out.append(
            f"{name}: every store ({', '.join(vendors)}) is at {vendor}{lives}: if that "
            "account is closed the backups go with it; add a store at another company"
        )
    return out
