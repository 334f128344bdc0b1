"""Backup and restore of a large stream: peak memory and throughput, against `cat`.

    .venv/bin/python bench/data.py [--size-mb 1024] [--dir /var/tmp]

A file of SIZE MB is made once; then, each in its own process (so each peak RSS is its
own): `cat FILE > /dev/null` (the read baseline; the file was just written, so this is
mostly the page cache's rate), `dd ... conv=fsync` of it into the store's folder (the
disk's sequential write rate, what a backup into a `dir` store is bound by), a backup of
`cat FILE` into a `dir` store through the path a local host's backup takes (the
``exec_on_host`` pipe, chunks, sha256, manifest last), the restore of that backup into
`cat > /dev/null` (every chunk and the whole checked), and both again with an encryption
key (AES-256-GCM). It prints MB/s, the ratios to `cat` and to `dd`, and peak RSS.
Targets (issue 12): peak RSS under 200 MB, at least half of the disk's sequential rate.
Nothing is asserted; it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from typing import BinaryIO
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_file(path: Path, size_mb: int) -> None:
    block = os.urandom(1024 * 1024)  # random: nothing downstream gets to compress it
    with open(path, "wb") as fh:
        for i in range(size_mb):
            fh.write(block[i % 7 :] + block[: i % 7])


def child(phase: str, source: Path, store_dir: Path, key: str | None) -> dict[str, Any]:
    from failover.data.backup import BackupReader
    from failover.data.backup import BackupWriter
    from failover.data.backup import Sealer
    from failover.data.backup import list_backups
    from failover.data.settings import DirStoreSettings
    from failover.data.stores import open_store
    from providers.local import _stream

    store = open_store(DirStoreSettings(name="bench", type="dir", path=str(store_dir)))
    env = dict(os.environ)
    started = time.perf_counter()
    if phase == "cat":
        subprocess.run(["sh", "-c", f"cat '{source}' > /dev/null"], check=True)
        moved = source.stat().st_size
    elif phase == "write":
        out = store_dir / "copy"
        subprocess.run(
            ["dd", f"if={source}", f"of={out}", "bs=4M", "conv=fsync", "status=none"], check=True
        )
        out.unlink()
        moved = source.stat().st_size
    elif phase == "backup":
        writer = BackupWriter("bench", [store], Sealer(key))
        result = _stream(
            ["cat", str(source)],
            cwd=store_dir,
            env=env,
            stdin=None,
            stdout=cast(BinaryIO, writer),
            timeout=None,
            provider="bench",
        )
        assert result.status == 0, result.stderr
        moved = writer.finish().length
    else:
        (manifest,) = [m for m in list_backups(store, "bench") if m.encrypted == bool(key)]
        reader = BackupReader(store, manifest, Sealer(key))
        result = _stream(
            ["sh", "-c", "cat > /dev/null"],
            cwd=store_dir,
            env=env,
            stdin=cast(BinaryIO, reader),
            stdout=None,
            timeout=None,
            provider="bench",
        )
        assert result.status == 0 and reader.done, result.stderr
        moved = reader.bytes
    seconds = time.perf_counter() - started
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"phase": phase, "bytes": moved, "seconds": seconds, "rss_mb": rss_kb / 1024}


def run(phase: str, source: Path, store_dir: Path, key: str | None) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", phase, str(source), str(store_dir)]
    if key:
        args.append(key)
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        phase, source, store_dir = sys.argv[2:5]
        key = sys.argv[5] if len(sys.argv) > 5 else None
        print(json.dumps(child(phase, Path(source), Path(store_dir), key)))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="where the file and the store go")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="failover-bench-data-", dir=args.dir))
    try:
        source, store_dir = work / "stream", work / "store"
        store_dir.mkdir()
        make_file(source, args.size_mb)
        base = run("cat", source, store_dir, None)
        rate = base["bytes"] / base["seconds"] / 1e6
        disk = run("write", source, store_dir, None)
        write = disk["bytes"] / disk["seconds"] / 1e6
        print(f"stream {args.size_mb} MB in {work}; ratios: to cat > /dev/null, to dd of=disk")
        print(f"  {'cat > /dev/null':<26} {rate:8.1f} MB/s  1.00x  rss {base['rss_mb']:6.1f} MB")
        print(f"  {'dd conv=fsync (disk)':<26} {write:8.1f} MB/s  {write / rate:4.2f}x")
        for label, key in (("", None), (" (AES-256-GCM)", "bench-key-0123456789abcdef")):
            for phase in ("backup", "restore"):
                doc = run(phase, source, store_dir, key)
                mbs = doc["bytes"] / doc["seconds"] / 1e6
                print(
                    f"  {phase + label:<26} {mbs:8.1f} MB/s  {mbs / rate:4.2f}x  "
                    f"{mbs / write:4.2f}x disk  rss {doc['rss_mb']:6.1f} MB"
                )
        print("targets: rss < 200 MB; rate >= 0.5x the disk's sequential rate")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
