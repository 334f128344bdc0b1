"""A provider cuts off many services at once: how long until all are healthy elsewhere.

    .venv/bin/python bench/cutoff.py [--services 50] [--moves 8,50]

On the local provider: N services deployed on ``alpha``; then alpha's account is
suspended and every host killed, and one ``Engine.check`` fails all of them over to
``beta`` (``fall: 1``; the provider's "blocked" is proof, no waiting for rounds). The
time from the cut to the check's return (every service verified healthy on beta and in
DNS) for N services, against 1 service measured in the same run, for each
``watcher.parallel_moves`` given; then the same with a simulated 1 s provisioning delay
(``run.setup: sleep 1`` on every new host). Nothing is asserted; it prints.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _local import APP  # noqa: E402  (bench/ is on sys.path when a bench runs)
from _local import kill_all  # noqa: E402

from failover import config as cfg  # noqa: E402
from failover.engine import Engine  # noqa: E402


def config(workdir: Path, count: int, moves: int, delay: bool) -> Path:
    run: dict[str, Any] = {"command": APP}
    if delay:
        run["setup"] = ["sleep 1"]
    services = {
        f"s{i}": {
            "domain": f"s{i}.bench.test",
            "port": 8080,
            "run": run,
            "health": {"interval": "500ms", "timeout": "400ms", "fall": 1, "rise": 1},
            "policy": {"ready_timeout": "60s", "max_moves_per_hour": 1000},
        }
        for i in range(count)
    }
    data = {
        "version": 1,
        "watcher": {"parallel_moves": moves},
        "dns": {"type": "local", "zone": "bench.test", "ttl": 5},
        "providers": [{"name": "alpha", "type": "local"}, {"name": "beta", "type": "local"}],
        "services": services,
    }
    path = workdir / "failover.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cutoff(count: int, moves: int, delay: bool) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="bench-cutoff-"))
    path = config(workdir, count, moves, delay)
    engine = Engine(cfg.load(path))
    names = list(engine.config.services)
    try:
        for name in names:
            outcome = engine.run(name, "deploy", reason="bench", to="alpha")
            assert outcome.status == "succeeded", outcome.message
        state = workdir / ".failover"
        (state / "local" / "alpha" / "SUSPENDED").write_text("")
        kill_all(state)
        start = time.perf_counter()
        verdicts = engine.check(names)
        took = time.perf_counter() - start
        moved = sum("moved from alpha to beta" in v.message for v in verdicts)
        assert moved == count, [v.message for v in verdicts if "moved" not in v.message][:3]
        return took
    finally:
        engine.close()
        kill_all(workdir / ".failover")
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--moves", default="8,50", help="watcher.parallel_moves values")
    args = parser.parse_args()
    for delay in (False, True):
        label = "with a 1 s provisioning delay" if delay else "no delay"
        for moves in (int(m) for m in args.moves.split(",")):
            one = cutoff(1, moves, delay)
            many = cutoff(args.services, moves, delay)
            print(
                f"{label:<32} parallel_moves={moves:<3} 1 service {one:6.2f}s, "
                f"{args.services} services {many:6.2f}s: {many / one:5.2f}x"
            )


if __name__ == "__main__":
    main()
