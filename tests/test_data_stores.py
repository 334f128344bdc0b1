"""The four store kinds against real servers (a directory, moto's S3 server, the GCS
emulator, Azurite), and the stored backup format: chunks, checksums, AES-256-GCM, the
manifest written last, replication and keep."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover.data.backup import MANIFEST
from failover.data.backup import BackupReader
from failover.data.backup import BackupWriter
from failover.data.backup import Corrupt
from failover.data.backup import Sealer
from failover.data.backup import WrongKey
from failover.data.backup import collect
from failover.data.backup import copy
from failover.data.backup import list_backups
from failover.data.backup import prune
from failover.data.backup import scan
from failover.data.backup import stored_key
from failover.data.settings import AzureBlobStoreSettings
from failover.data.settings import DirStoreSettings
from failover.data.settings import GcsStoreSettings
from failover.data.settings import S3StoreSettings
from failover.data.stores import Store
from failover.data.stores import open_store
from providers.base import NotFound
from providers.base import ProviderError
from tests.conftest import ROOT
from tests.conftest import need
from tests.conftest import need_binary
from tests.doubles.moto_server import moto_available
from tests.doubles.moto_server import shared_moto
from tests.doubles.moto_server import use_test_credentials
from tests.doubles.storage import azurite_connection_string
from tests.doubles.storage import gcs_available
from tests.doubles.storage import shared_azurite
from tests.doubles.storage import shared_gcs

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_credentials(monkeypatch)


def make_store(kind: str, tmp: Path) -> Store:
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    if kind == "dir":
        (tmp / "dir").mkdir(parents=True)
        return open_store(DirStoreSettings(name="d", type="dir", path=str(tmp / "dir")))
    if kind == "s3":
        need(moto_available(), "moto[server] is not installed")
        import boto3

        server = shared_moto()
        boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        return open_store(
            S3StoreSettings(
                name="s", type="s3", bucket=bucket, endpoint=server.url, retry_attempts=1
            )
        )
    if kind == "gcs":
        need(gcs_available(), "gcp-storage-emulator is not installed (pip install it)")
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        emu = shared_gcs()
        client = storage.Client(
            project="t",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": emu.url},
        )
        client.create_bucket(bucket)
        return open_store(
            GcsStoreSettings(
                name="g", type="gcs", bucket=bucket, endpoint=emu.url, retry_attempts=1
            )
        )
    binary = need_binary("azurite-blob", str(ROOT / "node_modules" / ".bin"))
    from azure.storage.blob import BlobServiceClient

    conn = azurite_connection_string(shared_azurite(binary))
    BlobServiceClient.from_connection_string(conn).create_container(bucket)
    return open_store(
        AzureBlobStoreSettings(
            name="a",
            type="azureblob",
            account_url="http://127.0.0.1",
            container=bucket,
            connection_string=conn,
            retry_attempts=1,
        )
    )


@pytest.fixture(params=["dir", "s3", "gcs", "azureblob"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = make_store(request.param, tmp_path)
    yield made
    made.close()


def test_store_contract(store: Store) -> None:
    assert store.list("web/") == []
    store.put("web/1/chunk-00000000", b"a" * 10)
    store.put("web/1/manifest.json", b"{}")
    store.put("web/2/chunk-00000000", b"b")
    store.put("other/1/x", b"c")
    assert store.list("web/") == [
        "web/1/chunk-00000000",
        "web/1/manifest.json",
        "web/2/chunk-00000000",
    ]
    assert store.get("web/1/chunk-00000000") == b"a" * 10
    store.put("web/1/chunk-00000000", b"new")  # replaced
    assert store.get("web/1/chunk-00000000") == b"new"
    with pytest.raises(NotFound) as caught:
        store.get("web/9/manifest.json")
    assert caught.value.provider == store.name
    store.delete("web/2/chunk-00000000")
    store.delete("web/2/chunk-00000000")  # a missing key is fine
    assert store.list("web/") == ["web/1/chunk-00000000", "web/1/manifest.json"]


def backup(
    store: Store | list[Store], data: bytes, key: str | None = None, chunk: int = 1000
) -> Any:
    stores = store if isinstance(store, list) else [store]
    writer = BackupWriter("web", stores, Sealer(key), chunk_size=chunk)
    stream = io.BytesIO(data)
    while block := stream.read(777):  # blocks that do not line up with chunks
        writer.write(block)
    return writer.finish()


def read_all(store: Store, manifest: Any, key: str | None = None) -> bytes:
    reader = BackupReader(store, manifest, Sealer(key))
    out = bytearray()
    while block := reader.read(300):
        out += block
    return bytes(out)


def test_backup_roundtrip_with_and_without_a_key(store: Store) -> None:
    data = os.urandom(5500)
    plain = backup(store, data)
    sealed = backup(store, data, key="k" * 32)
    assert len(plain.chunks) >= 2 and plain.length == 5500  # cut by content, ~1000 bytes
    assert plain.sha256 == hashlib.sha256(data).hexdigest()
    # Each is listed only where it verifies: with its key, or without one.
    assert [m.id for m in list_backups(store, "web")] == [plain.id]
    assert [m.id for m in list_backups(store, "web", Sealer("k" * 32))] == [sealed.id]
    assert sealed.sha256 != hashlib.sha256(data).hexdigest()  # keyed: nothing to test guesses
    assert read_all(store, plain) == data
    assert read_all(store, sealed, "k" * 32) == data
    # Sealed chunks are not the plain text.
    assert data[:1000] not in store.get(stored_key(sealed, 0))


def test_a_flipped_byte_is_detected(tmp_path: Path) -> None:
    store = make_store("dir", tmp_path)
    manifest = backup(store, os.urandom(3000))
    key = stored_key(manifest, 0)
    stored = bytearray(store.get(key))
    stored[10] ^= 0x01
    store.put(key, bytes(stored))
    with pytest.raises(Corrupt, match=f"backup {manifest.id} in store d: chunk 0 does not match"):
        read_all(store, manifest)


def test_a_sealed_chunk_changed_together_with_its_checksum_fails_authentication(
    tmp_path: Path,
) -> None:
    store = make_store("dir", tmp_path)
    manifest = backup(store, os.urandom(3000), key="k" * 32)
    stored = bytearray(store.get(stored_key(manifest, 0)))
    stored[20] ^= 0x80
    # A chunk's checksum is its name (its address): only the seal can tell.
    store.put(stored_key(manifest, 0), bytes(stored))
    with pytest.raises(Corrupt, match="chunk 0 fails authentication"):
        read_all(store, manifest, "k" * 32)


def test_a_wrong_key_names_the_store_and_the_backup(tmp_path: Path) -> None:
    store = make_store("dir", tmp_path)
    manifest = backup(store, b"secret data", key="right-key-right-key")
    with pytest.raises(WrongKey) as caught:
        read_all(store, manifest, "wrong-key-wrong-key")
    assert f"backup {manifest.id} in store d" in str(caught.value)
    assert "different encryption_key" in str(caught.value)
    with pytest.raises(WrongKey, match="no encryption_key is set"):
        read_all(store, manifest, None)


def test_an_upload_cut_before_its_manifest_is_not_a_backup(tmp_path: Path) -> None:
    store = make_store("dir", tmp_path)
    good = backup(store, b"x" * 2500)
    writer = BackupWriter("web", [store], Sealer(None), chunk_size=1000)
    writer.write(os.urandom(2500))
    for plain in writer._cutter.end():
        writer._emit(plain)
    writer._drain()  # the chunks stored, then the upload dies: no finish()
    left = [stored_key(writer.manifest, i) for i in range(len(writer.manifest.chunks))]
    assert left and all(store.list(key) == [key] for key in left)
    assert [m.id for m in list_backups(store, "web")] == [good.id]
    # Its marker keeps them while it may still be running; once it expired, collection
    # removes the leftovers and nothing of the complete backups.
    newer = backup(store, b"z")
    prune(store, "web", 5, scan(store, "web", Sealer(None)))
    assert collect(store, "web", Sealer(None)) == []
    writer._release()  # what its expiry does
    assert len(collect(store, "web", Sealer(None))) == len(set(left))
    assert all(store.list(key) == [] for key in left)
    assert {m.id for m in list_backups(store, "web")} == {good.id, newer.id}
    assert read_all(store, good) == b"x" * 2500 and read_all(store, newer) == b"z"


def test_truncated_stream_is_detected(tmp_path: Path) -> None:
    store = make_store("dir", tmp_path)
    manifest = backup(store, b"x" * 2500)
    manifest.chunks.pop()  # a manifest that lost a chunk: the whole does not match
    with pytest.raises(Corrupt, match="whole stream"):
        read_all(store, manifest)


def test_keep_removes_the_oldest_manifest_first(tmp_path: Path) -> None:
    store = make_store("dir", tmp_path)
    ids = [backup(store, bytes([i]) * 1500).id for i in range(4)]
    removed = prune(store, "web", 2, scan(store, "web", Sealer(None)))
    assert sorted(removed) == sorted(ids[:2])
    assert [m.id for m in list_backups(store, "web")] == sorted(ids[2:], reverse=True)
    assert all(not k.startswith(f"web/{ids[0]}/") for k in store.list("web/"))


def test_a_store_that_fails_is_dropped_and_the_others_get_the_backup(tmp_path: Path) -> None:
    good = make_store("dir", tmp_path / "a")
    blocker = tmp_path / "b"
    blocker.write_text("")  # a file where the folder should be: every put fails
    bad = open_store(DirStoreSettings(name="bad", type="dir", path=str(blocker), retry_attempts=1))
    writer = BackupWriter("web", [good, bad], Sealer(None), chunk_size=1000)
    writer.write(b"q" * 1500)
    manifest = writer.finish()
    assert list(writer.failed) == ["bad"]
    assert [m.id for m in list_backups(good, "web")] == [manifest.id]


def test_every_store_failing_ends_the_stream(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    bad = open_store(DirStoreSettings(name="bad", type="dir", path=str(file), retry_attempts=1))
    writer = BackupWriter("web", [bad], Sealer(None), chunk_size=10)
    with pytest.raises(ProviderError, match="no store took the backup"):
        writer.write(b"x" * 20)
        writer.finish()


@pytest.mark.parametrize("kind", ["s3", "gcs", "azureblob"])
def test_replication_copies_the_backup_as_stored(kind: str, tmp_path: Path) -> None:
    source = make_store("dir", tmp_path)
    target = make_store(kind, tmp_path)
    data = os.urandom(2200)
    manifest = backup(source, data, key="k" * 20)
    copy(manifest, source, target, Sealer("k" * 20))
    found = list_backups(target, "web", Sealer("k" * 20))
    assert [m.id for m in found] == [manifest.id]
    assert read_all(target, found[0], "k" * 20) == data
    assert target.get(manifest.key(MANIFEST)) == source.get(manifest.key(MANIFEST))


def test_replication_refuses_a_damaged_source(tmp_path: Path) -> None:
    source = make_store("dir", tmp_path / "s")
    target = make_store("dir", tmp_path / "t")
    manifest = backup(source, os.urandom(2500))
    source.put(stored_key(manifest, 0), b"broken")
    with pytest.raises(Corrupt, match="chunk 0"):
        copy(manifest, source, target, Sealer(None))
    assert list_backups(target, "web") == []  # no manifest: never a backup there
