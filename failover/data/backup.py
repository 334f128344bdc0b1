"""A backup as stored: chunks, then a manifest written last.

Layout in every store::

    _dedup/<service>/chunks/<name>   (version 3: shared by backups; failover.data.pool)
    <service>/<id>/chunk-00000000 ... chunk-0000NNNN   (versions 1 and 2: the backup's own)
    <service>/<id>/manifest.json     (id, time, bytes, sha256, the chunk list)

A backup without its manifest is an upload that did not finish and is never restored.
The manifest lists every chunk (version 3: its plain size and its name, a hash of its
content, :mod:`failover.data.chunks`; before: its stored size and digest) and the digest
of the whole plain stream, so a reader checks each chunk before handing it on and the
whole at the end; the manifest itself carries a proof (:mod:`failover.data.manifest`)
and nothing acts on one that does not verify. With an ``encryption_key`` each chunk is
sealed with AES-256-GCM, its name (before: the backup id and chunk number) as associated
data, so chunks cannot be swapped unnoticed. Ids sort by time
(``20261201T190636.123456Z-1a2b3c``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import secrets
import threading
import time
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from failover.data.chunks import AVERAGE
from failover.data.chunks import Codec
from failover.data.chunks import Cutter
from failover.data.chunks import Damaged
from failover.data.manifest import Keys
from failover.data.manifest import Manifest as Manifest  # re-exported: callers import it here
from failover.data.manifest import Untrusted
from failover.data.meter import Meter
from failover.data.pool import MARGIN
from failover.data.pool import Pool
from failover.data.pool import chunk_path
from failover.data.pool import safe_collect
from failover.data.stores import Store
from providers.base import NotFound
from providers.base import ProviderError

CHUNK = 4 * 1024 * 1024
_NONCE = 12
MANIFEST = "manifest.json"


class Corrupt(ProviderError):
    """A stored backup does not match its manifest (flipped bits, a cut chunk)."""

    kind = "corrupt"


class WrongKey(ProviderError):
    """The backup was sealed with another ``encryption_key`` (or none)."""

    kind = "wrong_key"


def new_id(now: float | None = None) -> str:
    """Sortable by time to the microsecond; the random tail keeps two watchers apart."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}.{int(now * 1e6) % 1_000_000:06d}Z-{secrets.token_hex(3)}"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def chunk_key(index: int) -> str:
    return f"chunk-{index:08d}"


class Sealer:
    """AES-256-GCM per chunk, or nothing when no key is set; and the keyed digests and
    manifest proof (:class:`failover.data.manifest.Keys`)."""

    def __init__(self, key: str | None) -> None:
        self.keys = Keys(key)
        self.enabled = self.keys.enabled
        self.check = self.keys.check
        self._aead: Any = None
        if key is not None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(self.keys.aead)

    def seal(self, backup_id: str, index: int, data: bytes) -> bytes:
        if not self.enabled:
            return data
        nonce = os.urandom(_NONCE)
        sealed: bytes = self._aead.encrypt(nonce, data, f"{backup_id}:{index}".encode())
        return nonce + sealed

    def open(self, backup_id: str, index: int, data: bytes) -> bytes:
        if not self.enabled:
            return data
        from cryptography.exceptions import InvalidTag

        try:
            plain: bytes = self._aead.decrypt(
                data[:_NONCE], data[_NONCE:], f"{backup_id}:{index}".encode()
            )
        except InvalidTag:
            raise Corrupt(f"chunk {index} fails authentication") from None
        return plain


def check_key(manifest: Manifest, sealer: Sealer, store: str) -> None:
    """A clear error naming the store and the backup when the key does not fit."""
    where = f"backup {manifest.id} in store {store}"
    if manifest.encrypted and not sealer.enabled:
        raise WrongKey(
            f"{where} is encrypted and no encryption_key is set",
            provider=store,
            hint="set services.<name>.data.encryption_key to the key it was written with",
        )
    if not manifest.encrypted and sealer.enabled:
        raise WrongKey(f"{where} is not encrypted but an encryption_key is set", provider=store)
    if manifest.encrypted and manifest.key_check != sealer.check:
        raise WrongKey(
            f"{where} was encrypted with a different encryption_key",
            provider=store,
            hint="restore needs the key the backup was written with",
        )


_INFLIGHT = 8  # chunks packed and put at once: compression, sealing and uploads overlap


class BackupWriter:
    """A writable stream (what ``exec_on_host`` fills with the backup command's stdout)
    that cuts it by content (:mod:`failover.data.chunks`) and puts each chunk that a
    store lacks into every store still taking it: a store's index says what it holds,
    and a chunk already there is not sent again. A store that fails is dropped for this
    backup (the watcher copies it there on the next round); when none is left the
    stream raises and the command is ended.

    Each store gets the writer's marker before anything else (:mod:`failover.data.pool`:
    collection removes nothing while it is there). Naming, compressing, sealing and
    uploading run in one worker thread behind a queue of two chunks, so reading the
    command's output overlaps with the upload; memory stays a window and a few chunks."""

    def __init__(
        self,
        service: str,
        stores: list[Store],
        sealer: Sealer,
        *,
        chunk_size: int = AVERAGE,
        timeout: float = 3600.0,
        meter: Meter | None = None,
    ) -> None:
        self.meter = meter or Meter(service, "backup", None)
        self.manifest = Manifest(
            service=service,
            id=new_id(),
            taken=time.time(),
            length=0,
            sha256="",
            chunk_size=chunk_size,
            encrypted=sealer.enabled,
            key_check=sealer.check,
        )
        self.until = time.time() + timeout + MARGIN
        self.stores = list(stores)
        self.sealer = sealer
        self.codec = Codec(sealer.keys)
        self.failed: dict[str, str] = {}
        self._first = self.stores[0].name if self.stores else ""
        self._cutter = Cutter(chunk_size)
        self._hash = sealer.keys.hasher(self.manifest)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
        self._worker: threading.Thread | None = None
        self._crash: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: list[Future[None]] = []
        self._lock = threading.Lock()
        self._marks: dict[str, str] = {}
        self._have: dict[str, dict[str, int]] = {}
        self._added: dict[str, dict[str, int]] = {}

    def write(self, data: bytes) -> int:
        self.manifest.length += len(data)
        self.meter.add(len(data))
        for plain in self._cutter.feed(data):
            self._emit(plain)
        return len(data)

    def _emit(self, plain: bytes) -> None:
        self._check()
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, daemon=True, name="backup")
            self._worker.start()
        self._queue.put(plain)

    def _work(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=_INFLIGHT, thread_name_prefix="chunks")
        try:
            while (plain := self._queue.get()) is not None:
                self._store(plain)
            while self._inflight:
                self._inflight.pop(0).result()
        except BaseException as exc:
            self._crash = exc
            while self._queue.get() is not None:  # let the writer finish putting
                pass
        finally:
            self._pool.shutdown(wait=True)

    def _open(self, store: Store) -> bool:
        """The store's marker and index, once; False when the store failed."""
        if store.name in self._have:
            return True
        pool = Pool(store, self.manifest.service, self.sealer.keys)
        try:
            self._marks[store.name] = pool.begin(self.manifest.id, self.until)
            self._have[store.name] = pool.index()
        except ProviderError as exc:
            self.failed[store.name] = str(exc)
            return False
        self._added[store.name] = {}
        return True

    def _store(self, plain: bytes) -> None:
        """Name the chunk (in order: the manifest's list), then pack and put it where it
        is lacking in the pool's threads, ``_INFLIGHT`` chunks at most."""
        self._hash.update(plain)  # here, not in write(): the reading thread only cuts
        name = self.codec.name(plain)
        self.manifest.chunks.append([len(plain), name])
        lacking = [s for s in self.live() if self._open(s) and name not in self._have[s.name]]
        for store in lacking:
            self._have[store.name][name] = 0  # on its way: not sent twice
        if lacking:
            while len(self._inflight) >= _INFLIGHT:
                self._inflight.pop(0).result()
            assert self._pool is not None
            self._inflight.append(self._pool.submit(self._send, name, plain, lacking))

    def _send(self, name: str, plain: bytes, stores: list[Store]) -> None:
        packed = self.codec.pack(name, plain)
        for store in stores:
            if store.name in self.failed:
                continue
            try:
                store.put(chunk_path(self.manifest.service, name), packed)
            except ProviderError as exc:
                self.failed[store.name] = str(exc)
                continue
            with self._lock:
                self._have[store.name][name] = self._added[store.name][name] = len(packed)
                if store.name == self._first:
                    self.manifest.new_bytes += len(packed)

    def _check(self) -> None:
        if self._crash is not None:
            raise self._crash
        if not self.live():
            raise ProviderError(
                "no store took the backup: "
                + "; ".join(f"{n}: {e}" for n, e in self.failed.items())
            )

    def _drain(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = None

    def live(self) -> list[Store]:
        return [s for s in self.stores if s.name not in self.failed]

    def finish(self) -> Manifest:
        """The last chunks, then the manifest in every store that has every chunk, each
        read back: a store counts only once it gives the manifest back as written. When
        no store does, ``ProviderError`` says why (the chunks are collected)."""
        for plain in self._cutter.end():
            self._emit(plain)
        self._drain()
        self._check()
        _failpoint()
        if time.time() > self.until - 60:
            late = "the backup outlived its marker (data.timeout): its chunks may be collected"
            self.failed.update((s.name, late) for s in self.live())
        self.manifest.sha256 = self._hash.hexdigest()
        self.manifest.auth = self.sealer.keys.sign(self.manifest)
        body = self.manifest.to_json()
        key = self.manifest.key(MANIFEST)
        for store in self.live():
            try:
                store.put(key, body)
                if store.get(key) != body:
                    raise store.error(f"{key} reads back different from what was written")
            except ProviderError as exc:
                self.failed[store.name] = str(exc)
        for store in self.live():
            # Best effort: an index that lacks a chunk only costs sending it again.
            with contextlib.suppress(ProviderError):
                Pool(store, self.manifest.service, self.sealer.keys).record(
                    self._added.get(store.name, {})
                )
        self._release()
        self._remove(s for s in self.stores if s.name in self.failed)
        self._check()
        return self.manifest

    def abandon(self) -> None:
        """Let go of the stores and collect the chunks no backup references (best
        effort: leftovers have no manifest and are never restored; a later collection
        removes them)."""
        self._drain()
        self._release()
        self._remove(self.stores)

    def _release(self) -> None:
        for store in self.stores:
            if (mark := self._marks.pop(store.name, None)) is not None:
                with contextlib.suppress(ProviderError):
                    store.delete(mark)

    def _remove(self, stores: Any) -> None:
        for store in stores:
            with contextlib.suppress(ProviderError):
                store.delete(self.manifest.key(MANIFEST))
            with contextlib.suppress(ProviderError):
                safe_collect(
                    Pool(store, self.manifest.service, self.sealer.keys),
                    functools.partial(references, store, self.manifest.service),
                )


def _failpoint() -> None:
    """Tests: ``FAILOVER_PAUSE_BEFORE_MANIFEST=<path>`` pauses a backup whose chunks are
    stored, before its manifest, while ``<path>`` exists (``<path>.reached`` says so)."""
    path = os.environ.get("FAILOVER_PAUSE_BEFORE_MANIFEST")
    if not path:
        return
    with open(f"{path}.reached", "w", encoding="utf-8"):
        pass
    waited = time.monotonic()
    while os.path.exists(path) and time.monotonic() - waited < 300:
        time.sleep(0.05)


class BackupReader:
    """A readable stream of one backup's plain bytes (what ``exec_on_host`` feeds the
    restore command), each chunk checked against the manifest before it is handed on
    and the whole stream at the end. Raises ``Corrupt`` at the first mismatch."""

    def __init__(
        self, store: Store, manifest: Manifest, sealer: Sealer, meter: Meter | None = None
    ) -> None:
        check_key(manifest, sealer, store.name)
        self.store, self.manifest, self.sealer = store, manifest, sealer
        self.meter = meter or Meter(manifest.service, "restore", None)
        self._next = 0
        self._buf = b""
        self._at = 0
        self._hash = sealer.keys.hasher(manifest)
        self.bytes = 0
        self.done = False

    def _corrupt(self, what: str) -> Corrupt:
        return Corrupt(
            f"backup {self.manifest.id} in store {self.store.name}: {what}",
            provider=self.store.name,
        )

    def _load(self) -> bytes:
        index = self._next
        if self.manifest.deduped:
            plain = fetch_pooled(self.store, self.manifest, self.sealer, index)[1]
        else:
            stored = fetch_chunk(self.store, self.manifest, self.sealer, index)
            try:
                plain = self.sealer.open(self.manifest.id, index, stored)
            except Corrupt as exc:
                raise self._corrupt(str(exc)) from None
        self._next += 1
        self._hash.update(plain)
        self.bytes += len(plain)
        self.meter.add(len(plain))
        return plain

    def read(self, n: int = -1) -> bytes:
        while self._at >= len(self._buf):
            if self._next >= len(self.manifest.chunks):
                self._verify_whole()
                return b""
            self._buf, self._at = self._load(), 0
        # An offset, not slicing off the front: that would copy the chunk per read.
        end = len(self._buf) if n < 0 else min(len(self._buf), self._at + n)
        out = self._buf if (self._at, end) == (0, len(self._buf)) else self._buf[self._at : end]
        self._at = end
        return out

    def _verify_whole(self) -> None:
        if self.done:
            return
        if self.bytes != self.manifest.length or self._hash.hexdigest() != self.manifest.sha256:
            raise self._corrupt("the whole stream does not match its checksum")
        self.done = True


def stored_key(manifest: Manifest, index: int) -> str:
    """Where chunk ``index`` of ``manifest`` is stored, whatever its version."""
    if manifest.deduped:
        return chunk_path(manifest.service, manifest.chunks[index][1])
    return manifest.key(chunk_key(index))


def fetch_pooled(
    store: Store, manifest: Manifest, sealer: Sealer, index: int
) -> tuple[bytes, bytes]:
    """Chunk ``index`` of a version 3 backup as stored and plain, checked against its
    name and size; ``Corrupt`` (naming the backup and the chunk's place) if not."""
    size, name = manifest.chunks[index]
    where = f"backup {manifest.id} in store {store.name}: chunk {index}"
    try:
        stored = store.get(chunk_path(manifest.service, name))
    except NotFound:
        raise Corrupt(f"{where} is missing", provider=store.name) from None
    try:
        return stored, Codec(sealer.keys).unpack(name, stored, size)
    except Damaged as exc:
        raise Corrupt(f"{where} {exc}", provider=store.name) from None


def references(store: Store, service: str) -> set[str] | None:
    """Every chunk name a manifest of ``service`` in ``store`` mentions, verified or not
    (a backup under another key is still someone's); None when one cannot be read."""
    names: set[str] = set()
    for key in store.list(f"{service}/"):
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != MANIFEST:
            continue
        try:
            body = store.get(key)
        except NotFound:
            continue
        except ProviderError:
            return None
        names |= _mentioned(body)
    return names


def _mentioned(body: bytes) -> set[str]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return set()  # nothing we could ever restore
    chunks = doc.get("chunks") if isinstance(doc, dict) else None
    if not isinstance(chunks, list):
        return set()
    return {
        c[1]
        for c in chunks
        if isinstance(c, list) and len(c) == 2 and isinstance(c[1], str) and len(c[1]) == 64
    }


def fetch_chunk(store: Store, manifest: Manifest, sealer: Sealer, index: int) -> bytes:
    """Chunk ``index`` as stored, checked against the manifest; ``Corrupt`` if not."""
    size, digest = manifest.chunks[index]
    where = f"backup {manifest.id} in store {store.name}: chunk {index}"
    try:
        stored = store.get(manifest.key(chunk_key(index)))
    except NotFound:
        raise Corrupt(f"{where} is missing", provider=store.name) from None
    if len(stored) != size or sealer.keys.digest(manifest, stored) != digest:
        raise Corrupt(f"{where} does not match its checksum", provider=store.name)
    return stored


# --------------------------------------------------------------------------- catalog


@dataclass
class Listing:
    """What one store holds of a service: the backups that verify (newest first), the
    manifests skipped and why (``backup X in store Y ...``), and every key seen."""

    backups: list[Manifest] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)


def scan(store: Store, service: str, sealer: Sealer) -> Listing:
    """Every manifest of ``service`` in ``store``, each parsed and verified; one that
    does not is skipped (named in ``skipped``), never fatal to the others."""
    out = Listing(keys=store.list(f"{service}/"))
    for key in out.keys:
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != MANIFEST:
            continue
        where = f"backup {parts[1]} in store {store.name}"
        try:
            body = store.get(key)
        except NotFound:
            continue  # pruned meanwhile
        except ProviderError as exc:
            out.skipped[parts[1]] = f"{where} cannot be read: {exc}"
            continue
        try:
            manifest = Manifest.from_json(body)
            if manifest.id != parts[1] or manifest.service != service:
                raise Untrusted("is malformed: its id or service is not where it is stored")
            sealer.keys.verify(manifest)
        except Untrusted as exc:
            out.skipped[parts[1]] = f"{where} {exc}"
            continue
        out.backups.append(manifest)
    trusted = trusted_order(out.backups)
    for manifest in out.backups:
        if manifest not in trusted:
            out.skipped[manifest.id] = (
                f"backup {manifest.id} in store {store.name} is unauthenticated (version 1) "
                "and newer than an authenticated backup: ignored"
            )
    out.backups = trusted
    return out


def trusted_order(manifests: list[Manifest]) -> list[Manifest]:
    """Newest first, less version 1 manifests newer than an authenticated backup:
    nothing writes that format any more, so such a one is a forgery."""
    authenticated = [m.id for m in manifests if not m.legacy]
    oldest = min(authenticated, default=None)
    kept = [m for m in manifests if not (m.legacy and oldest is not None and m.id > oldest)]
    return sorted(kept, key=lambda m: m.id, reverse=True)


def list_backups(store: Store, service: str, sealer: Sealer | None = None) -> list[Manifest]:
    """The complete backups of ``service`` in ``store`` that verify, newest first."""
    return scan(store, service, sealer or Sealer(None)).backups


def copy(manifest: Manifest, source: Store, target: Store, sealer: Sealer) -> int:
    """Copy one verified backup as stored (still sealed), each chunk checked on the
    way, the manifest last; of a version 3 backup only the chunks the target lacks (its
    index says), under the target's writer marker. Raises ``Corrupt`` when the source's
    copy is damaged. The number of chunks copied."""
    if manifest.deduped:
        return _copy_pooled(manifest, source, target, sealer)
    for index in range(len(manifest.chunks)):
        data = fetch_chunk(source, manifest, sealer, index)
        target.put(manifest.key(chunk_key(index)), data)
    target.put(manifest.key(MANIFEST), manifest.to_json())
    return len(manifest.chunks)


COPY_BOUND = 3600.0 + MARGIN  # a copy's marker lives this long


def _copy_pooled(manifest: Manifest, source: Store, target: Store, sealer: Sealer) -> int:
    pool = Pool(target, manifest.service, sealer.keys)
    mark = pool.begin(manifest.id, time.time() + COPY_BOUND)
    try:
        have, added = pool.index(), {}
        for index, (_size, name) in enumerate(manifest.chunks):
            if name not in have and name not in added:
                stored = fetch_pooled(source, manifest, sealer, index)[0]
                target.put(chunk_path(manifest.service, name), stored)
                added[name] = len(stored)
        target.put(manifest.key(MANIFEST), manifest.to_json())
        pool.record(added)
    finally:
        pool.end(mark)
    return len(added)


def prune(
    store: Store, service: str, keep: int, listing: Listing, protect: frozenset[str] = frozenset()
) -> list[str]:
    """Delete every backup that has ``keep`` authenticated backups newer than it (but
    never one in ``protect``: the newest the state knows of), and the leftovers of
    uploads that never finished once an authenticated backup is newer. Only verified
    manifests count: a forged, damaged or unauthenticated one never makes a backup go.
    The manifest goes first, so a backup half deleted is never restored."""
    authenticated = [m.id for m in listing.backups if not m.legacy]
    bar = authenticated[keep - 1] if len(authenticated) >= keep else ""
    removed = []
    for manifest in listing.backups:
        if manifest.id < bar and manifest.id not in protect:
            store.delete(manifest.key(MANIFEST))
            # A version 3 backup's chunks are shared: collection removes those it left.
            for index in range(0 if manifest.deduped else len(manifest.chunks)):
                store.delete(manifest.key(chunk_key(index)))
            removed.append(manifest.id)
    newest = authenticated[0] if authenticated else ""
    known = {m.id for m in listing.backups} | set(listing.skipped)
    for key in listing.keys:
        parts = key.split("/")
        if len(parts) == 3 and parts[1] not in known and parts[1] < newest:
            store.delete(key)
    return removed


def collect(store: Store, service: str, sealer: Sealer) -> list[str]:
    """The pool's chunks that no manifest references any more (after ``prune``)."""
    pool = Pool(store, service, sealer.keys)
    return pool.collect(lambda: references(store, service))
