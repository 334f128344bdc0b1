"""Issue 26: backups that cost what changed. Chunks cut by content and sent once per
store (measured against Debian's restic on the same two versions), replication that
copies only what the target lacks, collection that never removes a chunk a remaining
or running backup needs, a damaged shared chunk refusing every backup that uses it, and
backups of the previous format restoring beside the new ones. Real folders as stores."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from failover.data.backup import MANIFEST
from failover.data.backup import BackupReader
from failover.data.backup import BackupWriter
from failover.data.backup import Corrupt
from failover.data.backup import Sealer
from failover.data.backup import chunk_key
from failover.data.backup import collect
from failover.data.backup import copy
from failover.data.backup import list_backups
from failover.data.backup import new_id
from failover.data.backup import prune
from failover.data.backup import scan
from failover.data.backup import stored_key
from failover.data.manifest import Manifest
from failover.data.pool import Pool
from failover.data.pool import chunk_path
from failover.data.settings import DirStoreSettings
from failover.data.stores import DirStore
from failover.data.stores import Store
from tests.conftest import need_binary
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(600)
KEY = "the-watchers-key-0123456789"
MB = 1024 * 1024


class CountingStore(DirStore):
    """A real folder store that counts the chunks put into it (the figure under test)."""

    def __init__(self, root: Path, name: str = "d") -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(DirStoreSettings(name=name, type="dir", path=str(root)))
        self.chunk_puts = 0

    def _put(self, key: str, data: bytes) -> None:
        if key.startswith("_dedup/web/chunks/"):
            self.chunk_puts += 1
        super()._put(key, data)


def stream(size: int, seed: int = 26) -> bytes:
    return random.Random(seed).randbytes(size)


def changed(data: bytes, seed: int = 27) -> bytes:
    """1% changed in a few places: three overwrites, and two insertions that shift
    everything after them."""
    rng, out, n = random.Random(seed), bytearray(data), len(data)
    for at in (n // 7, 3 * n // 7, 5 * n // 7):
        out[at : at + n // 300] = rng.randbytes(n // 300)
    for at in (6 * n // 7, 2 * n // 7):
        out[at:at] = b"inserted!"
    return bytes(out)


def backup(store: Store | list[Store], data: bytes, key: str | None = None, **kw: Any) -> Manifest:
    writer = BackupWriter("web", store if isinstance(store, list) else [store], Sealer(key), **kw)
    for at in range(0, len(data), MB):
        writer.write(data[at : at + MB])
    return writer.finish()


def restored(store: Store, manifest: Manifest, key: str | None = None) -> bytes:
    reader = BackupReader(store, manifest, Sealer(key))
    out = bytearray()
    while block := reader.read(MB):
        out += block
    assert reader.done
    return bytes(out)


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def restic_growth(tmp: Path, versions: list[bytes]) -> list[int]:
    """What restic's repository grows by for each version (``backup --stdin``)."""
    restic = need_binary("restic")
    repo = tmp / "restic"
    env = {**os.environ, "RESTIC_PASSWORD": "pw", "RESTIC_CACHE_DIR": str(tmp / "cache")}
    run = [restic, "-r", str(repo), "--quiet"]
    subprocess.run([*run, "init"], env=env, check=True, capture_output=True)
    sizes = [folder_bytes(repo)]
    for data in versions:
        subprocess.run(
            [*run, "backup", "--stdin", "--stdin-filename", "stream"],
            input=data,
            env=env,
            check=True,
            capture_output=True,
        )
        sizes.append(folder_bytes(repo))
    return [after - before for before, after in itertools.pairwise(sizes)]


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_a_changed_stream_costs_what_changed_like_restic(tmp_path: Path, key: str | None) -> None:
    """64 MB, then 1% changed: the second backup adds at most 1.5x what restic adds for
    the same two versions, and both restore byte for byte."""
    first, second = stream(64 * MB), b""
    second = changed(first)
    store = CountingStore(tmp_path / "store")
    one = backup(store, first, key)
    puts = store.chunk_puts
    two = backup(store, second, key)
    theirs = restic_growth(tmp_path, [first, second])
    assert one.new_bytes >= 64 * MB  # random data: nothing to compress, nothing shared
    assert 0 < two.new_bytes <= 1.5 * theirs[1], (two.new_bytes, theirs)
    assert two.new_bytes < 0.1 * one.new_bytes
    assert store.chunk_puts - puts < len(two.chunks) // 5  # most chunks were not sent
    assert two.summary()["new_bytes"] == two.new_bytes
    assert two.summary()["chunks"] == len(two.chunks)
    assert restored(store, one, key) == first
    assert restored(store, two, key) == second


def test_replication_copies_only_the_chunks_the_target_lacks(tmp_path: Path) -> None:
    """Two stores, the second added later: each backup copied to it puts only the chunks
    it does not hold yet."""
    source = CountingStore(tmp_path / "a", "a")
    first = stream(8 * MB)
    one = backup(source, first, KEY)
    two = backup(source, changed(first), KEY)
    target = CountingStore(tmp_path / "b", "b")
    assert copy(one, source, target, Sealer(KEY)) == len({n for _, n in one.chunks})
    assert target.chunk_puts == len({n for _, n in one.chunks})
    lacking = {n for _, n in two.chunks} - {n for _, n in one.chunks}
    assert 0 < len(lacking) < len(two.chunks) // 2
    assert copy(two, source, target, Sealer(KEY)) == len(lacking)
    assert target.chunk_puts == len({n for _, n in one.chunks}) + len(lacking)
    assert copy(two, source, target, Sealer(KEY)) == 0  # already there: nothing sent
    assert [m.id for m in list_backups(target, "web", Sealer(KEY))] == [two.id, one.id]
    assert restored(target, two, KEY) == changed(first)


def test_a_chunk_shared_by_two_backups_survives_keep_removing_one(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "s")
    first = stream(8 * MB)
    one, two = backup(store, first), backup(store, changed(first))
    assert prune(store, "web", 1, scan(store, "web", Sealer(None))) == [one.id]
    removed = collect(store, "web", Sealer(None))
    only_one = {n for _, n in one.chunks} - {n for _, n in two.chunks}
    assert set(removed) == only_one and removed
    assert restored(store, two) == changed(first)
    assert collect(store, "web", Sealer(None)) == []  # nothing left to collect


def test_collection_while_a_backup_is_written_removes_nothing_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backup pauses with its chunks stored and no manifest (the failpoint); keep
    removes the old backup whose chunks it shares, and two collections (two watchers)
    remove nothing. Once it ends, collection removes only what no backup needs."""
    store = CountingStore(tmp_path / "s")
    first = stream(8 * MB)
    old = backup(store, first)
    newer = backup(store, b"another service state")
    gate = tmp_path / "gate"
    gate.write_text("")
    monkeypatch.setenv("FAILOVER_PAUSE_BEFORE_MANIFEST", str(gate))
    done: list[Manifest] = []
    worker = threading.Thread(target=lambda: done.append(backup(store, changed(first))))
    worker.start()
    try:
        wait_for(lambda: Path(f"{gate}.reached").exists(), timeout=120, what="the pause")
        assert prune(store, "web", 1, scan(store, "web", Sealer(None))) == [old.id]
        other = CountingStore(tmp_path / "s", "d")  # another watcher, same store
        assert collect(store, "web", Sealer(None)) == []
        assert collect(other, "web", Sealer(None)) == []
    finally:
        gate.unlink()
        worker.join(timeout=120)
    (running,) = done
    assert restored(store, running) == changed(first)
    removed = set(collect(store, "web", Sealer(None)))
    needed = {n for _, n in running.chunks} | {n for _, n in newer.chunks}
    assert removed == {n for _, n in old.chunks} - needed and removed
    assert restored(store, running) == changed(first) and restored(store, newer)


def test_a_backup_waits_for_a_collection_in_progress(tmp_path: Path) -> None:
    """The other order: a collection's marker is there when a backup starts; the backup
    writes no chunk until it is gone (then reads the index it left)."""
    store = CountingStore(tmp_path / "s")
    import time

    marker = f"_dedup/web/collecting/{int(time.time() + 120):010d}-test"
    store.put(marker, b"")
    done: list[Manifest] = []
    worker = threading.Thread(target=lambda: done.append(backup(store, stream(MB))))
    worker.start()
    wait_for(lambda: store.list("_dedup/web/writing/") != [], timeout=60, what="its marker")
    time.sleep(1.0)  # a chance to go wrong: it must still be waiting
    assert store.chunk_puts == 0 and not done
    store.delete(marker)
    worker.join(timeout=120)
    assert done and store.chunk_puts > 0 and store.list("_dedup/web/writing/") == []


def test_a_flipped_byte_in_a_shared_chunk_refuses_every_backup_using_it(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "s")
    older = backup(store, stream(2 * MB, seed=1), KEY)
    base = stream(8 * MB)
    one, two = backup(store, base, KEY), backup(store, changed(base), KEY)
    shared = next(n for _, n in one.chunks if n in {m for _, m in two.chunks})
    path = tmp_path / "s" / chunk_path("web", shared)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x20
    path.write_bytes(bytes(damaged))
    for manifest in (one, two):
        index = [n for _, n in manifest.chunks].index(shared)
        with pytest.raises(Corrupt, match=f"backup {manifest.id} in store d: chunk {index} fails"):
            restored(store, manifest, KEY)
    assert restored(store, older, KEY) == stream(2 * MB, seed=1)  # the fallback still restores
    # A copy refuses it too: the damage never travels.
    with pytest.raises(Corrupt):
        copy(two, store, CountingStore(tmp_path / "t", "t"), Sealer(KEY))


def previous_format(store: Store, data: bytes, key: str | None) -> Manifest:
    """A version 2 backup exactly as the previous release wrote it (issue 20): fixed
    4 MiB chunks in the backup's folder, each sealed with the backup id, the manifest
    with its proof."""
    sealer = Sealer(key)
    manifest = Manifest("web", new_id(), 1796152000.0, len(data), "", 4 * MB, version=2)
    manifest.encrypted, manifest.key_check = sealer.enabled, sealer.check
    whole = sealer.keys.hasher(manifest)
    for index, at in enumerate(range(0, len(data), 4 * MB)):
        sealed = sealer.seal(manifest.id, index, data[at : at + 4 * MB])
        store.put(manifest.key(chunk_key(index)), sealed)
        manifest.chunks.append([len(sealed), sealer.keys.digest(manifest, sealed)])
        whole.update(data[at : at + 4 * MB])
    manifest.sha256 = whole.hexdigest()
    manifest.auth = sealer.keys.sign(manifest)
    doc = manifest.to_json()
    assert b"new_bytes" not in doc  # the previous release's fields, no more
    store.put(manifest.key(MANIFEST), doc)
    return manifest


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_a_backup_of_the_previous_format_restores_beside_new_ones(
    tmp_path: Path, key: str | None
) -> None:
    store = CountingStore(tmp_path / "s")
    data = stream(9 * MB)
    old = previous_format(store, data, key)
    new = backup(store, changed(data), key)
    found = list_backups(store, "web", Sealer(key))
    assert [m.id for m in found] == [new.id, old.id] and found[1].version == 2
    assert restored(store, found[1], key) == data
    assert restored(store, found[0], key) == changed(data)
    assert found[1].summary()["chunks"] == 3
    assert collect(store, "web", Sealer(key)) == []  # its chunks are not the pool's
    assert store.list(f"web/{old.id}/")[:1] == [stored_key(old, 0)]
    copy(found[1], store, CountingStore(tmp_path / "t", "t"), Sealer(key))  # still copies


def test_the_index_lost_or_forged_is_rebuilt_from_the_listing(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "s")
    data = stream(4 * MB)
    backup(store, data, KEY)
    pool = Pool(store, "web", Sealer(KEY).keys)
    held = pool.index()
    store.delete("_dedup/web/index.json")  # lost
    puts = store.chunk_puts
    backup(store, data, KEY)
    assert store.chunk_puts == puts  # known from the listing: nothing sent again
    assert set(pool.index()) == set(held)
    # A store that claims a chunk it does not hold: its index does not verify.
    missing = "0" * 64
    store.put(
        "_dedup/web/index.json",
        store.get("_dedup/web/index.json").replace(b'["', b'["' + missing.encode() + b'",1],["', 1),
    )
    assert missing not in pool.index() and set(pool.index()) == set(held)


def test_with_a_key_no_chunk_name_is_a_plain_hash(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "s")
    data = b"4821" * 1000
    manifest = backup(store, data, KEY)
    plain = hashlib.sha256(data).hexdigest()
    names = {n for _, n in manifest.chunks}
    assert plain not in names and all(plain not in k for k in store.list(""))
    unkeyed = backup(store, data)
    assert {n for _, n in unkeyed.chunks} == {plain}  # without a key: plain SHA-256


def test_an_index_naming_a_chunk_that_is_gone_is_mended_by_the_next_keep(
    tmp_path: Path,
) -> None:
    """A chunk removed behind our back (a lifecycle rule, a person): the index still
    names it, so the next collection rewrites the index from the listing and the next
    backup sends the chunk again."""
    store = CountingStore(tmp_path / "s")
    data = stream(2 * MB)
    first = backup(store, data, KEY)
    gone = first.chunks[0][1]
    store.delete(chunk_path("web", gone))
    assert gone in Pool(store, "web", Sealer(KEY).keys).index()
    assert collect(store, "web", Sealer(KEY)) == []
    assert gone not in Pool(store, "web", Sealer(KEY).keys).index()
    again = backup(store, data, KEY)
    assert restored(store, again, KEY) == data
