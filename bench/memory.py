"""Memory and CPU of the providers a round's parallel moves use: one set per move
(what ``Engine.sibling()`` built before providers could be shared) against one shared set.

    .venv/bin/python bench/memory.py [--moves 1 16 64] [--runs 3]

A "set" is what one move of an AWS round touches: an ``AwsProvider`` with its EC2 client
and a ``Route53Dns`` with its Route 53 client (each a boto3 session of its own). Clients
are built against a loopback endpoint where nothing listens and with fake credentials in
the environment: building a client makes no request, so no network is needed. Every
measurement runs in a fresh interpreter that has already imported boto3 and built one
warm-up set (botocore's service models are parsed once per process either way), so the
figures are what N moves add. Medians over ``--runs``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENDPOINT = "http://127.0.0.1:9"  # discard port: never contacted while building
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build_set(state_dir: Path) -> tuple[Any, Any]:
    from providers.aws import AwsProvider
    from providers.aws import AwsSettings
    from providers.base import ProviderContext
    from providers.dns.route53 import Route53Dns
    from providers.dns.route53 import Route53Settings

    context = ProviderContext(state_dir)
    compute = AwsProvider(
        AwsSettings(
            name="aws", type="aws", region="us-east-1", image="ami-12345678", endpoint=ENDPOINT
        ),
        context,
    )
    dns = Route53Dns(Route53Settings(type="route53", zone="bench.test", endpoint=ENDPOINT), context)
    compute._client("ec2")
    dns._r53  # noqa: B018 - builds the client
    return compute, dns


def child(mode: str, moves: int) -> None:
    """In a fresh interpreter: what ``moves`` parallel moves cost in ``mode``."""
    import tempfile

    import boto3  # noqa: F401 - its import is no part of any figure

    state = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    gc.collect()
    rss0, cpu0 = rss_bytes(), time.process_time()
    keep = [build_set(state)]  # warm-up: the shared botocore loader parses the models
    first_cpu = time.process_time() - cpu0
    gc.collect()
    first_rss = rss_bytes() - rss0
    rss0, cpu0 = rss_bytes(), time.process_time()
    if mode == "separate":
        keep += [build_set(state) for _ in range(moves)]
    else:
        compute, dns = build_set(state)
        for _ in range(moves):  # every move borrows the one set: its clients are made
            compute._client("ec2")
            dns._r53  # noqa: B018
            keep.append((compute, dns))
    cpu = time.process_time() - cpu0
    gc.collect()
    figures = {"rss": rss_bytes() - rss0, "cpu": cpu, "first_rss": first_rss}
    print(json.dumps({**figures, "first_cpu": first_cpu}))


def measure(mode: str, moves: int) -> dict[str, float]:
    env = {**os.environ, **FAKE_ENV}
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(moves)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return

    print("AWS provider + Route 53 backend per parallel move: one set each vs one shared")
    first = measure("shared", 1)
    print(
        f"(the process's first set, parsing the service models: "
        f"{first['first_rss'] / 2**20:.1f} MB, {first['first_cpu']:.3f} s CPU; not counted below)"
    )
    print(
        f"{'moves':>6} {'separate MB':>12} {'shared MB':>10} {'RSS x':>7} "
        f"{'separate s':>11} {'shared s':>9} {'CPU x':>7}"
    )
    for moves in args.moves:
        figures: dict[str, dict[str, float]] = {}
        for mode in ("separate", "shared"):
            runs = [measure(mode, moves) for _ in range(args.runs)]
            figures[mode] = {key: statistics.median(r[key] for r in runs) for key in ("rss", "cpu")}
        sep, sh = figures["separate"], figures["shared"]
        mb = 1024 * 1024
        print(
            f"{moves:>6} {sep['rss'] / mb:>12.1f} {sh['rss'] / mb:>10.1f} "
            f"{sep['rss'] / max(sh['rss'], 1):>7.1f} {sep['cpu']:>11.3f} {sh['cpu']:>9.3f} "
            f"{sep['cpu'] / max(sh['cpu'], 1e-6):>7.1f}"
        )
    print("RSS x / CPU x: separate sets over the shared one, in the same run (higher: more saved)")


if __name__ == "__main__":
    main()
