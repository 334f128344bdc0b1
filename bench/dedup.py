"""Backups that cost what changed (issue 26): a stream, then the same with 1% changed,
against restic backing up the same two versions, and the first backup against the
previous format (issue 20's fixed 4 MiB chunks, run from the base commit's code).

    .venv/bin/python bench/dedup.py [--size-mb 1024] [--dir /var/tmp] [--key]

Two files are made once: SIZE MB of random bytes, then a copy with 1% changed in five
places (three overwrites, two insertions that shift everything after them). Then, each
in its own process (so each peak RSS is its own): our backup of each into a `dir` store,
the previous format's backup of the first, and `restic backup --stdin` of each into a
local repository. It prints the bytes the second backup added and its time against
restic's, peak RSS, and the first backup's throughput against the previous format.
Targets (issue 26): bytes <= 1.1x restic's, time <= 1.0x, peak RSS <= 200 MB,
throughput >= 0.8x the previous format's. Nothing is asserted; it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE = "4412666"  # the commit before issue 26: the previous format's writer
MB = 1024 * 1024
KEY = "bench-key-0123456789abcdef"


def make_files(first: Path, second: Path, size_mb: int) -> None:
    rng = random.Random(26)
    n = size_mb * MB
    overwrite = {n // 7: n // 300, 3 * n // 7: n // 300, 5 * n // 7: n // 300}
    insert = {2 * n // 7, 6 * n // 7}
    with open(first, "wb") as a, open(second, "wb") as b:
        for at in range(0, n, MB):
            block = bytearray(rng.randbytes(MB))
            a.write(block)
            for where, size in overwrite.items():
                lo, hi = max(where, at), min(where + size, at + MB)
                if lo < hi:
                    block[lo - at : hi - at] = rng.randbytes(hi - lo)
            for where in sorted(insert, reverse=True):
                if at <= where < at + MB:
                    block[where - at : where - at] = b"inserted!"
            b.write(block)


def child(phase: str, source: Path, store_dir: Path, key: str | None) -> dict[str, Any]:
    if phase == "previous":
        sys.path.insert(0, str(store_dir.parent / "previous"))
    else:
        sys.path.insert(0, str(ROOT))
    from failover.data.backup import BackupWriter
    from failover.data.backup import Sealer
    from failover.data.settings import DirStoreSettings
    from failover.data.stores import open_store

    store = open_store(DirStoreSettings(name="bench", type="dir", path=str(store_dir)))
    started = time.perf_counter()
    writer = BackupWriter("bench", [store], Sealer(key))
    with open(source, "rb") as fh:
        while block := fh.read(256 * 1024):  # what the exec_on_host pipe hands over
            writer.write(block)
    manifest = writer.finish()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "new_bytes": getattr(manifest, "new_bytes", manifest.length),
        "chunks": len(manifest.chunks),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(phase: str, source: Path, store_dir: Path, key: str | None) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", phase, str(source), str(store_dir)]
    out = subprocess.run(
        args + (["--key"] if key else []), check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def restic(work: Path, versions: list[Path]) -> list[dict[str, float]]:
    repo = work / "restic"
    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(work / "cache")}
    base = ["restic", "-r", str(repo), "--quiet"]
    subprocess.run([*base, "init"], env=env, check=True, capture_output=True)
    out, before = [], folder_bytes(repo)
    for path in versions:
        started = time.perf_counter()
        with open(path, "rb") as fh:
            subprocess.run(
                [*base, "backup", "--stdin", "--stdin-filename", "stream"],
                stdin=fh,
                env=env,
                check=True,
                capture_output=True,
            )
        seconds = time.perf_counter() - started
        after = folder_bytes(repo)
        out.append({"seconds": seconds, "new_bytes": after - before})
        before = after
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--key", action="store_true", help="with an encryption_key")
    parser.add_argument("--child", nargs=3, metavar=("PHASE", "SOURCE", "STORE"))
    args = parser.parse_args()
    key = KEY if args.key else None
    if args.child:
        phase, source, store = args.child
        print(json.dumps(child(phase, Path(source), Path(store), key)))
        return
    work = Path(tempfile.mkdtemp(prefix="dedup-bench-", dir=args.dir))
    try:
        first, second = work / "v1", work / "v2"
        make_files(first, second, args.size_mb)
        ours_dir, prev_dir = work / "ours", work / "prev"
        ours_dir.mkdir()
        prev_dir.mkdir()
        (work / "previous").mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BASE, "failover", "providers"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(work / "previous")], input=archive, check=True)
        one = run_child("ours", first, ours_dir, key)
        two = run_child("ours", second, ours_dir, key)
        prev = run_child("previous", first, prev_dir, key)
        theirs = restic(work, [first, second])
        report(args.size_mb, key, one, two, prev, theirs, folder_bytes(ours_dir))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(
    size_mb: int,
    key: str | None,
    one: dict[str, Any],
    two: dict[str, Any],
    prev: dict[str, Any],
    theirs: list[dict[str, float]],
    held: int,
) -> None:
    mb = 1024 * 1024
    print(f"stream {size_mb} MB, then 1% changed; encryption {'on' if key else 'off'}")
    print(
        f"first backup : ours {one['seconds']:.1f}s ({size_mb / one['seconds']:.0f} MB/s), "
        f"previous format {prev['seconds']:.1f}s ({size_mb / prev['seconds']:.0f} MB/s), "
        f"restic {theirs[0]['seconds']:.1f}s"
    )
    print(
        f"second backup: ours added {two['new_bytes'] / mb:.2f} MB in {two['seconds']:.1f}s "
        f"({two['chunks']} chunks); restic added {theirs[1]['new_bytes'] / mb:.2f} MB "
        f"in {theirs[1]['seconds']:.1f}s"
    )
    print(f"store holds  : {held / mb:.1f} MB for both versions")
    print(
        f"peak RSS     : first {one['rss_mb']:.0f} MB, second {two['rss_mb']:.0f} MB, "
        f"previous format {prev['rss_mb']:.0f} MB"
    )
    print(
        "ratios       : "
        f"bytes added {two['new_bytes'] / theirs[1]['new_bytes']:.2f}x restic (target <= 1.1), "
        f"second backup time {two['seconds'] / theirs[1]['seconds']:.2f}x restic "
        "(target <= 1.0), "
        f"first backup throughput {prev['seconds'] / one['seconds']:.2f}x previous "
        "format (target >= 0.8)"
    )


if __name__ == "__main__":
    main()
