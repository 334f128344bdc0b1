"""Issue 20, at the level of the stored format, against real stores (a folder, moto's S3
server, Azurite): a forged, unauthenticated or malformed manifest is never believed and
never makes a real backup go; every digest a store sees is keyed when a key is set; a
full disk is no backup; store settings are validated; a store's folder is never made."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover import config as cfg
from failover.data.backup import MANIFEST
from failover.data.backup import BackupReader
from failover.data.backup import BackupWriter
from failover.data.backup import Sealer
from failover.data.backup import copy
from failover.data.backup import list_backups
from failover.data.backup import new_id
from failover.data.backup import prune
from failover.data.backup import scan
from failover.data.manifest import Manifest
from failover.data.settings import AzureBlobStoreSettings
from failover.data.settings import DirStoreSettings
from failover.data.settings import S3StoreSettings
from failover.data.stores import Store
from failover.data.stores import open_store
from providers.base import ProviderError
from tests.conftest import ROOT
from tests.conftest import need
from tests.conftest import need_binary
from tests.doubles.moto_server import moto_available
from tests.doubles.moto_server import shared_moto
from tests.doubles.moto_server import use_test_credentials
from tests.doubles.storage import azurite_connection_string
from tests.doubles.storage import shared_azurite
from tests.helpers import base_config

pytestmark = pytest.mark.timeout(120)
KEY = "the-watchers-key-0123456789"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_credentials(monkeypatch)


def dir_store(tmp: Path, name: str = "d") -> Store:
    (tmp / name).mkdir(parents=True, exist_ok=True)
    return open_store(DirStoreSettings(name=name, type="dir", path=str(tmp / name)))


def s3_store() -> Store:
    need(moto_available(), "moto[server] is not installed")
    import boto3

    server = shared_moto()
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return open_store(
        S3StoreSettings(name="s", type="s3", bucket=bucket, endpoint=server.url, retry_attempts=1)
    )


def azure_store() -> Store:
    binary = need_binary("azurite-blob", str(ROOT / "node_modules/.bin"))
    from azure.storage.blob import BlobServiceClient

    conn = azurite_connection_string(shared_azurite(binary))
    container = f"c-{uuid.uuid4().hex[:10]}"
    BlobServiceClient.from_connection_string(conn).create_container(container)
    return open_store(
        AzureBlobStoreSettings(
            name="a",
            type="azureblob",
            account_url="http://127.0.0.1",
            container=container,
            connection_string=conn,
            retry_attempts=1,
        )
    )


@pytest.fixture(params=["dir", "s3", "azureblob"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "dir":
        return dir_store(tmp_path)
    return s3_store() if request.param == "s3" else azure_store()


def backup(stores: Store | list[Store], data: bytes, key: str | None = KEY) -> Manifest:
    writer = BackupWriter("web", stores if isinstance(stores, list) else [stores], Sealer(key))
    writer.write(data)
    return writer.finish()


def forge(store: Store, real: Manifest, **changes: Any) -> str:
    """What someone with write access to one store and without the key can write: a
    manifest copied from a real one, with a newer id, no chunks, ``key_check`` kept."""
    doc = json.loads(store.get(real.key(MANIFEST)))
    forged_id = new_id(time.time() + 30)  # newer than every real one, not in the future
    doc.update(id=forged_id, bytes=0, chunks=[], sha256=hashlib.sha256(b"").hexdigest())
    doc.update(changes)
    store.put(f"web/{doc['id']}/{MANIFEST}", json.dumps(doc).encode())
    return str(doc["id"])


def test_forged_manifests_never_prune_real_backups_nor_travel(store: Store, tmp_path: Path) -> None:
    """Item 1 and 4: keep 2, two forged newer manifests (one claiming version 1, one
    with a made-up proof): the real backups stay, the forgeries are skipped by name
    and never copied to another store."""
    sealer = Sealer(KEY)
    real = [backup(store, f"rows {i}".encode()) for i in range(2)]
    legacy = forge(store, real[0], version=1)
    made_up = forge(store, real[0], auth="hmac-sha256:" + "0" * 64)
    listing = scan(store, "web", sealer)
    assert [m.id for m in listing.backups] == [m.id for m in reversed(real)]
    assert "does not verify" in listing.skipped[made_up]
    assert legacy not in {m.id for m in listing.backups}  # newer than an authenticated one
    assert prune(store, "web", 2, listing) == []
    assert [m.id for m in list_backups(store, "web", sealer)] == [m.id for m in reversed(real)]
    other = dir_store(tmp_path, "other")
    for manifest in listing.backups:
        copy(manifest, store, other, sealer)
    assert {k.split("/")[1] for k in other.list("web/")} == {m.id for m in real}


def test_an_unauthenticated_manifest_never_prunes_an_authenticated_one(tmp_path: Path) -> None:
    """Backwards compatibility: a version 1 backup (no proof) still restores while it is
    the newest, and counts for nothing when pruning authenticated backups."""
    store = dir_store(tmp_path)
    old = backup(store, b"written by the previous release", key=None)
    doc = json.loads(old.to_json())
    doc.pop("auth")
    doc["version"] = 1
    store.put(old.key(MANIFEST), json.dumps(doc).encode())  # as the old release wrote it
    (found,) = list_backups(store, "web")
    assert found.legacy and found.id == old.id
    new = backup(store, b"authenticated", key=None)
    forged = forge(store, new, version=1)  # a newer unauthenticated one
    listing = scan(store, "web", Sealer(None))
    assert [m.id for m in listing.backups] == [new.id, old.id]
    assert "unauthenticated" in listing.skipped[forged]
    assert prune(store, "web", 1, listing) == [old.id]  # one newer authenticated backup
    assert [m.id for m in list_backups(store, "web")] == [new.id]
    assert store.list(f"web/{forged}/") == [f"web/{forged}/{MANIFEST}"]  # left for people


@pytest.mark.parametrize(
    "change",
    [{"chunks": [[1]]}, {"taken": "yesterday"}, {"bytes": "many"}, {"chunks": [[1, "x"]] * 3}],
)
def test_a_malformed_manifest_is_skipped_by_name(tmp_path: Path, change: dict[str, Any]) -> None:
    """Item 3: it used to raise (ValueError: not enough values to unpack) and block
    every restore; now the next is tried and the warning names it."""
    store = dir_store(tmp_path)
    real = backup(store, b"rows", key=None)
    bad = forge(store, real, **change)
    listing = scan(store, "web", Sealer(None))
    assert [m.id for m in listing.backups] == [real.id]
    assert listing.skipped[bad].startswith(f"backup {bad} in store d is malformed")
    store.put(f"web/{bad}/{MANIFEST}", b"\xff not json")
    assert "not JSON" in scan(store, "web", Sealer(None)).skipped[bad]


def test_with_a_key_no_digest_a_store_sees_lets_a_guess_be_tested(tmp_path: Path) -> None:
    """Item 5: a 4-digit PIN was recovered from the unkeyed SHA-256 of the plain stream
    in the manifest. With a key, no digest in the store is a plain hash of any PIN."""
    store = dir_store(tmp_path)
    manifest = backup(store, b"4821")
    stored = b"".join(store.get(k) for k in store.list("web/"))
    guesses = {hashlib.sha256(f"{pin:04d}".encode()).hexdigest() for pin in range(10000)}
    found = {g for g in guesses if g.encode() in stored}
    assert not found
    assert manifest.auth and manifest.auth.startswith("hmac-sha256:")


def test_a_manifest_that_cannot_be_stored_is_no_backup(tmp_path: Path) -> None:
    """Item 6 at the format level: the manifest read back is what counts; when no store
    holds it, the chunks go and the writer says so."""
    good, refusing = dir_store(tmp_path, "good"), dir_store(tmp_path, "refusing")
    writer = BackupWriter("web", [good, refusing], Sealer(None), chunk_size=4)
    writer.write(b"0123456789")
    for plain in writer._cutter.end():
        writer._emit(plain)
    writer._drain()  # the chunks are in both stores
    assert refusing.list("_dedup/web/chunks/")
    # Where the manifest should go, something it cannot replace (a full disk is in e2e).
    (tmp_path / "refusing" / "web" / writer.manifest.id / MANIFEST).mkdir(parents=True)
    manifest = writer.finish()
    assert list(writer.failed) == ["refusing"]
    assert [m.id for m in list_backups(good, "web")] == [manifest.id]
    left = [k for k in refusing.list("") if not k.endswith(MANIFEST)]
    assert left == ["_dedup/web/index.json"]  # the chunks of a backup it does not hold are gone


def test_a_missing_store_folder_is_an_error_and_never_made(tmp_path: Path) -> None:
    """Item 10: an unmounted share would otherwise silently fill the local disk."""
    gone = tmp_path / "mnt" / "backups"
    store = open_store(DirStoreSettings(name="nfs", type="dir", path=str(gone), retry_attempts=1))
    with pytest.raises(ProviderError, match="does not exist"):
        backup(store, b"rows")
    assert not gone.exists() and not (tmp_path / "mnt").exists()


def test_a_relative_store_path_is_the_config_folders(tmp_path: Path) -> None:
    """Item 11 (the CLI from another folder is in test_data_trust_e2e)."""
    (tmp_path / "backups").mkdir()
    store = open_store(DirStoreSettings(name="d", type="dir", path="backups"), base=tmp_path)
    backup(store, b"rows")
    assert list((tmp_path / "backups" / "web").iterdir())


BAD_STORES = [
    ({"type": "s3", "bucket": "bkt", "endpoint": "not a url"}, "endpoint"),
    ({"type": "s3", "bucket": "bkt", "endpoint": "file:///etc/passwd"}, "endpoint"),
    ({"type": "s3", "bucket": "bkt", "endpoint": "http://[::1"}, "endpoint"),
    (
        {
            "type": "azureblob",
            "account_url": "https://a.blob.core.windows.net",
            "container": "c",
            "connection_string": "garbage;;;",
        },
        "connection_string",
    ),
    ({"type": "azureblob", "account_url": "nowhere", "container": "c"}, "account_url"),
    ({"type": "dir", "path": "/srv/back\x00ups"}, "path"),
    ({"type": "dir", "path": "/" + "x" * 5000}, "path"),
]


@pytest.mark.parametrize(("store", "field"), BAD_STORES)
def test_validate_refuses_store_settings_that_would_crash(
    store: dict[str, Any], field: str
) -> None:
    """Item 9: each used to pass `validate` and crash deploy and check."""
    conf = base_config(data={"backup": "cat db", "restore": "cat > db"})
    conf["stores"] = [{"name": "x", **store}]
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.parse(yaml.safe_dump(conf))
    problems = "\n".join(caught.value.problems)
    assert f"stores[0].{field}:" in problems  # the field's path, no type in it
    assert "garbage" not in problems  # a connection string is a secret


def test_a_backup_of_the_previous_release_still_restores_with_its_key(tmp_path: Path) -> None:
    """Backwards compatibility: a version 1 encrypted backup (plain SHA-256 digests, no
    proof), as the previous release wrote it, is listed and restored with its key."""
    store = dir_store(tmp_path)
    sealer = Sealer(KEY)
    backup_id = "20261201T190636.123456Z-1a2b3c"
    plain = b"rows of the old release"
    sealed = sealer.seal(backup_id, 0, plain)
    store.put(f"web/{backup_id}/chunk-00000000", sealed)
    doc = {
        "service": "web",
        "id": backup_id,
        "taken": 1796152000.0,
        "bytes": len(plain),
        "sha256": hashlib.sha256(plain).hexdigest(),
        "chunk_size": 4 * 1024 * 1024,
        "chunks": [[len(sealed), hashlib.sha256(sealed).hexdigest()]],
        "encrypted": True,
        "key_check": sealer.check,
        "version": 1,
    }
    store.put(f"web/{backup_id}/{MANIFEST}", json.dumps(doc, sort_keys=True).encode())
    (found,) = list_backups(store, "web", sealer)
    assert found.legacy
    reader = BackupReader(store, found, sealer)
    assert reader.read() == plain and reader.read() == b"" and reader.done
    assert list_backups(store, "web", Sealer("another-key-0123456789")) == []


def test_without_a_key_forgeries_never_cost_the_newest_known_backup(tmp_path: Path) -> None:
    """Without a key a forger can recompute the checksum; the newest backup the state
    knows of still survives any number of them, and one dated in the future is refused."""
    store = dir_store(tmp_path)
    old, new = backup(store, b"old", key=None), backup(store, b"new", key=None)
    soon = time.time() + 60
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(soon))
    forged = []
    for n in range(2):
        fake = Manifest("web", f"{stamp}.00000{n}Z-aaaaa{n}", soon, 0, new.sha256, 4, [])
        fake.sha256 = hashlib.sha256(b"").hexdigest()
        fake.auth = Sealer(None).keys.sign(fake)
        store.put(fake.key(MANIFEST), fake.to_json())
        forged.append(fake.id)
    listing = scan(store, "web", Sealer(None))
    assert [m.id for m in listing.backups][:2] == sorted(forged, reverse=True)  # they verify
    assert prune(store, "web", 2, listing, frozenset([new.id])) == [old.id]
    assert new.id in {m.id for m in list_backups(store, "web")}
    future = forge(store, new, id=new_id(time.time() + 3 * 86400), taken=time.time() + 3 * 86400)
    assert "in the future" in scan(store, "web", Sealer(None)).skipped[future]
