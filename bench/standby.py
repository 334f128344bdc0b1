"""Recovery onto a warm standby against a cold host, on the local provider.

    .venv/bin/python bench/standby.py [--runs 3] [--boot 1]

One service whose new hosts take ``--boot`` seconds to come up (``run.setup: sleep N``,
the stand-in for a cloud VM's boot). For each mode, in one run:

- failover: the active host is killed and one ``check`` fails it over (``fall: 1``);
  timed from the kill to the ``cutover`` step's end (the service answers elsewhere);
- drill: ``Engine.drill(.., "beta")`` onto the standby and with ``cold=True``, timed by
  the journal's step durations.

Printed: medians and the warm/cold ratios. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _local import APP  # noqa: E402  (bench/ is on sys.path when a bench runs)
from _local import kill_all  # noqa: E402

from failover import config as cfg  # noqa: E402
from failover.engine import Engine  # noqa: E402
from failover.engine import standby as warm  # noqa: E402


def config(workdir: Path, standby: str, boot: float) -> Path:
    data = {
        "version": 1,
        "dns": {"type": "local", "zone": "bench.test", "ttl": 5},
        "providers": [{"name": "alpha", "type": "local"}, {"name": "beta", "type": "local"}],
        "services": {
            "web": {
                "domain": "www.bench.test",
                "port": 8080,
                "run": {"command": APP, "setup": [f"sleep {boot:g}"]},
                "health": {"interval": "500ms", "timeout": "400ms", "fall": 1, "rise": 1},
                "policy": {
                    "ready_timeout": "60s",
                    "max_moves_per_hour": 1000,
                    "standby": standby,
                },
            }
        },
    }
    path = workdir / "failover.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def once(standby: str, boot: float) -> tuple[float, float]:
    """(failover seconds, drill seconds) for one fresh project."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-standby-"))
    cut: list[float] = []
    engine = Engine(
        cfg.load(config(workdir, standby, boot)),
        on_step=lambda step, status, _: (
            cut.append(time.perf_counter()) if (step, status) == ("cutover", "succeeded") else None
        ),
    )
    try:
        assert engine.run("web", "deploy", reason="bench", to="alpha").ok
        engine.check(["web"])  # makes the standby, when there is to be one
        assert (warm.current(engine, "web") is not None) == (standby == "warm")
        drill = engine.drill("web", "beta", cold=standby != "warm")
        assert drill.ok, drill.message
        drill_s = float((drill.event or {}).get("duration_s") or 0)
        row = engine.store.service("web")
        assert row.active is not None
        active = row.active["host_id"]
        meta = workdir / ".failover" / "local" / "alpha" / "hosts" / active / "host.json"
        cut.clear()
        killed = time.perf_counter()
        os.killpg(int(yaml.safe_load(meta.read_text())["pid"]), signal.SIGKILL)
        (verdict,) = engine.check(["web"])
        assert verdict.action == "failover" and cut, verdict.message
        return cut[0] - killed, drill_s
    finally:
        engine.close()
        kill_all(workdir / ".failover")
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--boot", type=float, default=1.0)
    args = parser.parse_args()
    samples: dict[str, list[tuple[float, float]]] = {"warm": [], "none": []}
    for _ in range(args.runs):  # interleaved: a busy moment weighs on both alike
        for mode in samples:
            samples[mode].append(once(mode, args.boot))
    fail = {m: statistics.median(s[0] for s in v) for m, v in samples.items()}
    drill = {m: statistics.median(s[1] for s in v) for m, v in samples.items()}
    print(f"recovery with a {args.boot:g} s boot, median of {args.runs} runs:")
    print(
        f"  failover: warm standby {fail['warm']:.3f}s, cold host {fail['none']:.3f}s "
        f"({fail['warm'] / fail['none']:.2f}x)"
    )
    print(
        f"  drill:    warm standby {drill['warm']:.2f}s, cold host {drill['none']:.2f}s "
        f"({drill['warm'] / drill['none']:.2f}x)"
    )


if __name__ == "__main__":
    main()
