"""The backup timer of a cloud host: ``python3 -m failover.data.agent [--restore] CONFIG``.

The watcher cannot run commands on a host it only boots (aws, gcp, azure), so the
rendered cloud-init installs a systemd timer that runs this every ``data.every``: it runs
``data.backup`` in the service's folder and writes its stdout, in the same chunked
format with the manifest last, to every store the host can reach with its own
credentials (an instance role, a workload identity). The watcher then copies each
complete backup to the other stores. With ``--restore`` (the host's prepare step, at
boot, before the service starts) it restores the newest good backup. It needs the
failover package (and the store's SDK) on the image. Encrypted backups are never taken
or restored here: the key stays with the watcher, so a service with ``encryption_key``
gets no timer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from pydantic import TypeAdapter

from failover.data.backup import BackupReader
from failover.data.backup import BackupWriter
from failover.data.backup import Sealer
from failover.data.backup import collect
from failover.data.backup import prune
from failover.data.backup import scan
from failover.data.backup import trusted_order
from failover.data.manifest import Manifest
from failover.data.settings import DataConfig
from failover.data.settings import StoreBase
from failover.data.settings import StoreSettings
from failover.data.stores import Store
from failover.data.stores import open_store
from providers.base import ProviderError

# Fields a host never gets: a connection string is a credential of the watcher's.
_WATCHER_ONLY = ("connection_string",)


def host_config(
    service: str, data: DataConfig | None, stores: list[StoreBase]
) -> dict[str, Any] | None:
    """What the template needs for the timer, or None when the host takes no backups."""
    if data is None or data.encryption_key or data.engine != "commands":
        return None
    names = data.stores or [s.name for s in stores]
    chosen = [
        {k: v for k, v in s.model_dump().items() if k not in _WATCHER_ONLY}
        for s in stores
        # A folder on the host dies with it; a connection string is the watcher's.
        if s.name in names
        and getattr(s, "type", "") != "dir"
        and not getattr(s, "connection_string", None)
    ]
    if not chosen:
        return None
    doc = {
        "service": service,
        "backup": data.backup,
        "restore": data.restore,
        "keep": data.keep,
        "stores": chosen,
    }
    return {"every": max(1, int(data.every)), "config_json": json.dumps(doc, indent=2)}


def _stores(config: dict[str, Any]) -> list[Store]:
    adapter: TypeAdapter[Any] = TypeAdapter(StoreSettings)
    stores = []
    for raw in config["stores"]:
        try:
            stores.append(open_store(adapter.validate_python(raw)))
        except ProviderError as exc:
            print(f"failover: store {raw.get('name')}: {exc}", file=sys.stderr)
    return stores


def restore(config: dict[str, Any]) -> int:
    """At boot, before the service starts: the newest backup that checks out, from the
    first store that has it, into ``data.restore``. 0 when restored or when there is no
    backup yet; 1 when backups exist and none could be restored (the host then fails
    its prepare unit and the watcher tries the next provider)."""
    service: str = config["service"]
    found: list[tuple[Manifest, Store]] = []
    # No store answering, or a manifest we cannot trust: backups may exist.
    stores = _stores(config)
    doubt = False
    answered = 0
    for store in stores:
        try:
            listing = scan(store, service, Sealer(None))
        except ProviderError as exc:
            print(f"failover restore: {exc}", file=sys.stderr)
            continue
        answered += 1
        for warning in listing.skipped.values():
            print(f"failover restore: skipped {warning}", file=sys.stderr)
        doubt = doubt or bool(listing.skipped)
        found.extend((m, store) for m in listing.backups)
    if not found:
        if doubt or not answered:
            print(f"failover restore: no backup of {service} can be read", file=sys.stderr)
            return 1
        print(f"failover restore: no backup of {service} yet: starting empty", file=sys.stderr)
        return 0
    trusted = {m.id for m in trusted_order([m for m, _ in found])}
    ordered = sorted(found, key=lambda f: f[0].id, reverse=True)
    for manifest, store in [(m, s) for m, s in ordered if m.id in trusted]:
        proc = subprocess.Popen(["/bin/sh", "-c", config["restore"]], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        reader = BackupReader(store, manifest, Sealer(None))
        try:
            while block := reader.read(256 * 1024):
                proc.stdin.write(block)
            proc.stdin.close()
        except (ProviderError, BrokenPipeError) as exc:
            proc.kill()
            proc.wait()
            print(f"failover restore: refused {exc}", file=sys.stderr)
            continue
        if proc.wait() == 0:
            print(f"failover restore: backup {manifest.id} from {store.name}", file=sys.stderr)
            return 0
        print(f"failover restore: the restore command exited {proc.returncode}", file=sys.stderr)
    return 1


def run(config: dict[str, Any]) -> int:
    stores = _stores(config)
    writer = BackupWriter(config["service"], stores, Sealer(None))
    proc = subprocess.Popen(["/bin/sh", "-c", config["backup"]], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        while block := os.read(proc.stdout.fileno(), 256 * 1024):
            writer.write(block)
    except ProviderError as exc:
        proc.kill()
        proc.wait()
        print(f"failover backup: {exc}", file=sys.stderr)
        return 1
    if proc.wait() != 0:
        writer.abandon()
        print(f"failover backup: the backup command exited {proc.returncode}", file=sys.stderr)
        return proc.returncode or 1
    try:
        manifest = writer.finish()
    except ProviderError as exc:
        print(f"failover backup: {exc}", file=sys.stderr)
        return 1
    for store in writer.live():
        try:
            prune(
                store,
                config["service"],
                int(config["keep"]),
                scan(store, manifest.service, Sealer(None)),
            )
            collect(store, manifest.service, Sealer(None))
        except ProviderError as exc:
            print(f"failover backup: keep in {store.name}: {exc}", file=sys.stderr)
    for name, error in writer.failed.items():
        print(f"failover backup: store {name}: {error}", file=sys.stderr)
    print(f"failover backup {manifest.id}: {manifest.length} bytes", file=sys.stderr)
    return 0 if writer.live() else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    mode = run
    if args[:1] == ["--restore"]:
        mode, args = restore, args[1:]
    if len(args) != 1:
        print("usage: python3 -m failover.data.agent [--restore] CONFIG.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        return mode(json.load(fh))


if __name__ == "__main__":
    sys.exit(main())
