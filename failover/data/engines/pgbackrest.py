"""Engine ``pgbackrest``, the watcher's side: read the repositories (newest archived WAL
segment, backups), take full and differential backups on the live host, and finish a
new host's restore (the host's own part is :mod:`failover.data.engines.pgconf`).

The watcher reads the repositories with pgBackRest itself, from a configuration of its
own rendered from the same stores (``<state>/pgbackrest/<service>/``), so ``check`` and
``status`` see what a new host would restore, whichever host is live.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any
from typing import BinaryIO
from typing import cast

from failover.data.engines.pgconf import CONF
from failover.data.engines.pgconf import DATA
from failover.data.engines.pgconf import chosen
from failover.data.engines.pgconf import connection_fields
from failover.data.engines.pgconf import pgbackrest
from failover.data.engines.pgconf import render_conf
from failover.data.plane import DataError
from failover.data.plane import DataUnavailable
from failover.data.plane import EngineLike
from failover.data.plane import _data
from failover.data.plane import _note
from failover.data.plane import command
from failover.data.settings import AzureBlobStoreSettings
from failover.data.settings import DataConfig
from failover.data.settings import S3StoreSettings
from providers.base import ProviderError
from providers.util import private_dir
from providers.util import write_private

_SEGMENT = re.compile(r"(?:^|/)([0-9A-F]{24})-[0-9a-f]{40}(?:\.\w+)?$")
# A read of one repository's listing; a backup may take the data's timeout.
READ_TIMEOUT = 60.0


def _conf(engine: EngineLike, service: str) -> Path:
    state = engine.config.state_dir
    assert state is not None
    here = state / "pgbackrest" / service
    private_dir(here)
    data = _data(engine, service)
    text = render_conf(service, data, engine.config.stores, engine.config.services[service].port)
    text = text.replace(DATA, str(here / "unused")).replace(CONF, str(here))
    write_private(here / "pgbackrest.conf", text.encode())
    return here / "pgbackrest.conf"


def _env(engine: EngineLike, service: str) -> dict[str, str]:
    """The watcher's environment, with each S3 repository's keys from the SDK's credential
    chain (the same keys its S3 store uses) unless ``PGBACKREST_REPO<n>_S3_KEY`` is set,
    and each Azure repository's shared key from its store's connection string unless
    ``PGBACKREST_REPO<n>_AZURE_KEY`` is: through the environment, never the command line
    or the file."""
    env = dict(os.environ)
    for n, store in enumerate(chosen(_data(engine, service), engine.config.stores), start=1):
        if isinstance(store, AzureBlobStoreSettings):
            key = connection_fields(store.connection_string or "").get("AccountKey")
            if key and f"PGBACKREST_REPO{n}_AZURE_KEY" not in env:
                env[f"PGBACKREST_REPO{n}_AZURE_KEY"] = key
            continue
        prefix = f"PGBACKREST_REPO{n}_S3_"
        if not isinstance(store, S3StoreSettings) or prefix + "KEY" in env:
            continue
        from providers._aws import make_session

        found = make_session(None, store.region).get_credentials()
        if found is None:
            continue
        keys = found.get_frozen_credentials()
        env |= {prefix + "KEY": keys.access_key, prefix + "KEY_SECRET": keys.secret_key}
        if keys.token:
            env[prefix + "TOKEN"] = keys.token
    return env


def stores(engine: EngineLike, service: str) -> list[str]:
    """The service's stores, repository 1 first."""
    return [s.name for s in chosen(_data(engine, service), engine.config.stores)]


def _read(engine: EngineLike, service: str, repo: int, args: list[str]) -> Any:
    conf = _conf(engine, service)
    run = ["pgbackrest", f"--config={conf}", f"--stanza={service}", f"--repo={repo}"]
    try:
        done = subprocess.run(
            [*run, "--log-level-console=error", *args, "--output=json"],
            capture_output=True,
            text=True,
            timeout=READ_TIMEOUT,
            check=False,
            env=_env(engine, service),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"pgbackrest: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise DataError(why[-1] if why else f"pgbackrest exited with status {done.returncode}")
    return json.loads(done.stdout or "null")


def newest_wal(engine: EngineLike, service: str, repo: int) -> tuple[str, float] | None:
    """The newest WAL segment archived to ``repo`` and when it arrived; None when the
    repository holds none yet."""
    listing = _read(engine, service, repo, ["repo-ls", "--recurse", f"archive/{service}"])
    found = [
        (m.group(1), float(entry.get("time", 0)))
        for name, entry in (listing or {}).items()
        if (m := _SEGMENT.search(name)) and entry.get("type") == "file"
    ]
    return max(found) if found else None


def backups(engine: EngineLike, service: str, repo: int) -> list[dict[str, Any]]:
    """``repo``'s backups of the stanza, oldest first (pgBackRest's own records)."""
    info = _read(engine, service, repo, ["info"]) or []
    return [b for stanza in info for b in stanza.get("backup", [])]


def catalog(engine: EngineLike, service: str) -> list[dict[str, Any]]:
    """``failover backups``: each repository's backup sets, newest first, by label."""
    rows: dict[str, dict[str, Any]] = {}
    failed = []
    for repo, name in enumerate(stores(engine, service), start=1):
        try:
            found = backups(engine, service, repo)
        except DataError as exc:
            failed.append(f"{name}: {exc.message}")
            continue
        for b in found:
            stop = float((b.get("timestamp") or {}).get("stop") or 0)
            row = rows.setdefault(
                b["label"],
                {
                    "service": service,
                    "id": b["label"],
                    "type": b.get("type"),
                    "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stop)),
                    "bytes": int((b.get("info") or {}).get("size") or 0),
                    "stores": [],
                },
            )
            row["stores"].append(name)
    if failed and not rows:
        raise DataError(f"{service}: no store answered ({'; '.join(failed)})")
    return [rows[k] for k in sorted(rows, reverse=True)]


def measure(engine: EngineLike, service: str) -> dict[str, str]:
    """Each store's newest archived WAL segment, recorded; the stores' results."""
    data = _data(engine, service)
    now, results, wal = time.time(), {}, {}
    for repo, name in enumerate(stores(engine, service), start=1):
        try:
            newest = newest_wal(engine, service, repo)
        except DataError as exc:
            results[name] = f"repository {repo} does not answer: {exc.message}"
            continue
        if newest is None:
            results[name] = "ok"
            continue
        wal[name] = {"segment": newest[0], "time": newest[1]}
        age = now - newest[1]
        results[name] = (
            "ok"
            if age <= data.oldest_ok()
            else f"newest WAL {newest[0]} is {age:.0f}s old (max_age {data.oldest_ok():g}s)"
        )
    for name in results:
        if results[name] == "ok" and wal and name not in wal:
            results[name] = "holds no archived WAL (the other stores do)"
    _note(engine, service, wal=wal or None)
    return results


# --------------------------------------------------------------------------- on the host


def _on_host(
    engine: EngineLike, service: str, host: tuple[str, str], text: str, timeout: float
) -> str:
    """``text`` run on the host (provider, host id) with ``$C`` its engine folder and
    ``as`` running a command as ``postgres.user``; its stdout."""
    pg = _data(engine, service).postgres
    assert pg is not None
    provider, host_id = host
    folder = shlex.quote(command(engine, service, pg.data_dir, host_id, None) + "-pgbackrest")
    user = shlex.quote(pg.user)
    wrapped = (
        f'C={folder}; case "$C" in /*) ;; *) C="$PWD/$C" ;; esac; '
        f'as() {{ if [ "$(id -u)" = 0 ]; then setpriv --reuid={user} --regid={user} '
        f'--init-groups -- "$@"; else "$@"; fi; }}; {text}'
    )
    out = io.BytesIO()
    result = engine.provider(provider).exec_on_host(
        host_id, wrapped, stdout=cast(BinaryIO, out), timeout=timeout
    )
    if result.status != 0:
        why = (result.stderr.strip() or out.getvalue().decode(errors="replace").strip())[-300:]
        raise DataError(f"on {host_id}: {why}")
    return out.getvalue().decode(errors="replace").strip()


def _pb(service: str, rest: str) -> str:
    return "as " + pgbackrest('"$C"', shlex.quote(service), rest)


def _sql(engine: EngineLike, service: str, query: str) -> str:
    """``query`` through the engine's socket on the host, as ``postgres.user``."""
    pg = _data(engine, service).postgres
    assert pg is not None
    port = engine.config.services[service].port
    return (
        f'as {shlex.quote(pg.bin_dir)}/psql -h "$C/run" -p {port} -d postgres -Atqc '
        f"{shlex.quote(query)}"
    )


def _until(
    engine: EngineLike, service: str, host: tuple[str, str], query: str, bound: float
) -> bool:
    """Poll ``query`` on the host until it answers ``t``; False after ``bound`` seconds."""
    ask = _sql(engine, service, query) + " 2>/dev/null"
    tries = max(1, int(bound / 0.5))
    wait = (
        f'i=0; until [ "$({ask})" = t ]; do i=$((i+1)); [ $i -lt {tries} ] || exit 1; '
        "sleep 0.5; done"
    )
    try:
        _on_host(engine, service, host, wait, bound + 30.0)
    except DataError:
        return False
    return True


def _final_wal(engine: EngineLike, service: str, kind: str, origin: Any) -> tuple[str, str]:
    """On a move (or a failover whose old host still answers): the old host's WAL
    switched and archived now. The step's first words and the LSN to replay to."""
    from failover.data.recover import FAILOVER_BOUND
    from failover.data.recover import _answers
    from failover.data.recover import _quiesce

    row = engine.store.service(service)
    if kind not in ("move", "failover") or origin is None or not row.active:
        return "", ""
    if row.active.get("host_id") != origin.host_id:
        return "", ""
    if kind == "failover" and not _answers(engine, service, origin.address):
        return "the old host does not answer: no final WAL; ", ""
    data = _data(engine, service)
    bound = data.timeout if kind == "move" else min(data.timeout, FAILOVER_BOUND)
    old = (origin.provider, origin.host_id)
    try:
        quiesced = _quiesce(engine, service, origin, data.quiesce) if data.quiesce else ""
        found = _on_host(
            engine,
            service,
            old,
            _sql(engine, service, "SELECT s, pg_walfile_name(s) FROM pg_switch_wal() s"),
            30.0,
        )
    except ProviderError as exc:
        return f"no final WAL from the old host ({exc.message}); ", ""
    lsn, segment = found.split("|")
    archived = (
        f"SELECT coalesce(last_archived_wal COLLATE \"C\" >= '{segment}', false) "
        "FROM pg_stat_archiver"
    )
    if not _until(engine, service, old, archived, bound):
        return f"the old host's final WAL {segment} was not archived in {bound:g}s; ", ""
    return f"final WAL {segment} archived by the old host {origin.host_id}{quiesced}; ", lsn


def _promote(engine: EngineLike, service: str, host: tuple[str, str], lsn: str) -> str:
    """The new host, a standby replaying the archive, promoted (after ``lsn``)."""
    data = _data(engine, service)
    note = ""
    if lsn:
        reached = f"SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)"
        if not _until(engine, service, host, reached, data.timeout):
            note = f"; NOT replayed to the old host's final WAL ({lsn})"
    elif not _until(engine, service, host, "SELECT pg_is_in_recovery()", 300.0):
        raise DataError(f"{host[1]}: the database did not start its recovery")
    promote = _sql(engine, service, "SELECT pg_promote(true, 300)") + " >/dev/null"
    _on_host(engine, service, host, promote, 330.0)
    if not _until(engine, service, host, "SELECT NOT pg_is_in_recovery()", 300.0):
        raise DataError(f"{host[1]}: the database did not leave recovery")
    return note


def restore(
    engine: EngineLike, service: str, host: tuple[str, str], kind: str, origin: Any
) -> tuple[str, dict[str, Any]]:
    """The restore step of engine pgbackrest: what the host's restore phase did, read
    back once the database has replayed the archive; the stanza made on a first deploy.
    Raises ``DataUnavailable`` when the state knows of a backup and the host made an
    empty cluster (issue 20's rule)."""
    host_id = host[1]
    first, lsn = _final_wal(engine, service, kind, origin)
    words = _on_host(
        engine, service, host, 'cat "$C/restored"; cat "$C/last-wal" 2>/dev/null || true', 30.0
    ).split()
    if len(words) < 5:
        raise DataError(f"{host_id} has no record of its restore phase")
    what, label, repo, started, ended = words[:5]
    seconds = max(0.0, float(ended) - float(started))
    known = (engine.store.data_state(service) or {}).get("last_backup")
    if what == "initdb":
        _until(engine, service, host, "SELECT true", 300.0)
        if known:
            raise DataUnavailable(
                f"no repository gives a backup and the newest known is {known['id']}; "
                f"not starting {service} empty"
            )
        _on_host(engine, service, host, _pb(service, "stanza-create") + " >/dev/null", 300.0)
        return first + "no backup yet: initdb, stanza created", {}
    note = _promote(engine, service, host, lsn)
    words = _on_host(engine, service, host, 'cat "$C/restored" "$C/last-wal"', 30.0).split()
    failed = _on_host(engine, service, host, 'cat "$C/restore-failed" 2>/dev/null || :', 30.0)
    note += f"; failed first: {failed.rstrip(';')}" if failed else ""
    last = _on_host(engine, service, host, 'cat "$C/restore-last" 2>/dev/null || :', 30.0)
    note += f"; tried last: {last}" if last else ""
    names = stores(engine, service)
    store = names[int(repo) - 1]
    segment = words[5] if len(words) > 5 else ""
    at = _arrived(engine, service, int(repo), segment)
    record = {
        "backup": label,
        "store": store,
        "wal": segment or None,
        "recovery_point": at,
        "rpo_s": round(time.time() - at, 1) if at else None,
        # What drill output calls the recovery point for every engine.
        "age_s": round(time.time() - at, 1) if at else None,
        "restore_s": round(seconds, 3),
    }
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)) if at else "unknown"
    detail = (
        f"restored backup {label} from store {store} (repository {repo}) in {seconds:.1f}s; "
        f"WAL replayed to {segment or 'the backup end'} (archived {when}), promoted{note}"
    )
    return first + detail, record


def _arrived(engine: EngineLike, service: str, repo: int, segment: str) -> float | None:
    if not segment:
        return None
    try:
        listing = _read(engine, service, repo, ["repo-ls", "--recurse", f"archive/{service}"])
    except DataError:
        return None
    for name, entry in (listing or {}).items():
        if (m := _SEGMENT.search(name)) and m.group(1) == segment:
            return float(entry.get("time", 0))
    return None


def open_archiving(engine: EngineLike, service: str, host: tuple[str, str]) -> str:
    """The service now points at ``host``: its WAL may join the archive (see
    :func:`~failover.data.engines.pgconf.postgres_conf`). The cutover step's words; a
    host that cannot be reached now is opened by the next round (:func:`round_one`)."""
    data = engine.config.services[service].data
    if data is None or data.engine != "pgbackrest":
        return ""
    try:
        _on_host(engine, service, host, 'touch "$C/archiving"', 60.0)
    except ProviderError as exc:
        engine.log(f"{service}: WAL archiving not opened on {host[1]} yet: {exc.message}")
        return f"; WAL archiving on {host[1]} NOT opened yet (next round)"
    _note(engine, service, archiving=host[1])
    return f"; WAL archiving opened on {host[1]}"


# --------------------------------------------------------------------------- rounds


def _due(data: DataConfig, doc: dict[str, Any], now: float) -> str | None:
    last = float((doc.get("last_backup") or {}).get("taken") or 0.0)
    attempted = float(doc.get("last_attempt") or 0.0)
    if now - max(last, attempted) < data.every and last:
        return None
    full = float(doc.get("last_full") or 0.0)
    return "full" if now - full >= data.full_every else "diff"


def take_backup(engine: EngineLike, service: str, kind: str = "full") -> dict[str, str]:
    """A ``kind`` backup into each repository on the live host; each store's result."""
    data = _data(engine, service)
    row = engine.store.service(service)
    if not row.active:
        raise DataError(f"{service} is not deployed: nothing to back up")
    host = (row.active["provider"], row.active["host_id"])
    results: dict[str, str] = {}
    labels = []
    for repo, name in enumerate(stores(engine, service), start=1):
        try:
            out = _on_host(
                engine,
                service,
                host,
                _pb(service, f"--repo={repo} backup --type={kind} 2>&1"),
                data.timeout,
            )
        except ProviderError as exc:
            results[name] = f"backup failed: {exc.message}"
            continue
        results[name] = "ok"
        labels += re.findall(r"new backup label = (\S+)", out)
    now = time.time()
    changes: dict[str, Any] = {"last_attempt": now}
    if labels:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        changes.update(
            last_backup={"id": labels[-1], "taken_at": stamp, "taken": now}, last_error=None
        )
        if kind == "full":
            changes["last_full"] = now
    else:
        changes["last_error"] = "; ".join(f"{n}: {r}" for n, r in results.items())
    _note(engine, service, **changes)
    return results


def round_one(engine: EngineLike, service: str) -> None:
    """``check``/``watch``: a full or differential backup when due, and archiving
    checked in every repository (the failing store named)."""
    data = _data(engine, service)
    doc = engine.store.data_state(service) or {}
    row = engine.store.service(service)
    took: dict[str, str] = {}
    live = row.active if row.health_state != "down" else None
    if live and doc.get("archiving") != live["host_id"]:
        open_archiving(engine, service, (live["provider"], live["host_id"]))
    kind = _due(data, doc, time.time())
    if kind and live:
        try:
            took = take_backup(engine, service, kind)
        except ProviderError as exc:
            engine.log(str(exc))
    results = measure(engine, service)
    for name, why in took.items():
        if why != "ok" and results.get(name) == "ok":
            results[name] = why
    _note(engine, service, stores=results, last_sync=time.time())
