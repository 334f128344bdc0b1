"""`failover check` start-up with 1 and 200 services, against the smallest Typer app.

    .venv/bin/python bench/startup.py [--runs 5] [--services 200]

The services are not deployed, so what is measured is what every cron-driven ``check``
pays before its first probe: imports, parsing and validating the config, opening the
state and one verdict per service. Also the config parse alone with libyaml's loader
(used when present, issue 16) against PyYAML's pure-Python one. Medians of interleaved
runs; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from failover import config as cfg  # noqa: E402

TYPER_MIN = "import typer\napp = typer.Typer()\n@app.command()\ndef main() -> None: pass\napp()\n"
APP = "{python} -m failover.demo_app --port {port} --bind {address}"


def write(workdir: Path, count: int) -> Path:
    services = {
        f"s{i}": {
            "domain": f"s{i}.bench.test",
            "port": 8080,
            "run": {"command": APP, "setup": ["true"], "env": {"MODE": "bench"}},
            "health": {"interval": "2s", "timeout": "1s", "http": {"path": "/"}},
            "policy": {"ready_timeout": "60s", "max_moves_per_hour": 3},
        }
        for i in range(count)
    }
    data = {
        "version": 1,
        "dns": {"type": "local", "zone": "bench.test", "ttl": 5},
        "providers": [{"name": "alpha", "type": "local"}, {"name": "beta", "type": "local"}],
        "services": services,
    }
    path = workdir / f"failover-{count}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def parse_times(path: Path, runs: int) -> tuple[float, float]:
    text = path.read_text()

    def timed(loader: type) -> float:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            yaml.load(text, Loader=loader)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    return timed(cfg._Loader), timed(yaml.SafeLoader)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--services", type=int, default=200)
    args = parser.parse_args()
    cli = [sys.executable, str(ROOT / "cli.py")]
    with tempfile.TemporaryDirectory() as tmp:
        one, many = write(Path(tmp), 1), write(Path(tmp), args.services)
        commands = {
            "typer --help": [sys.executable, "-c", TYPER_MIN, "--help"],
            "check, 1 service": [*cli, "check", "-c", str(one)],
            f"check, {args.services} services": [*cli, "check", "-c", str(many)],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                samples[name].append(once(cmd))
        fast, slow = parse_times(many, args.runs)
    base = statistics.median(samples["typer --help"])
    print(f"start-up, median of {args.runs} interleaved runs:")
    for name, values in samples.items():
        took = statistics.median(values)
        print(f"  {name:<24} {took * 1000:7.1f} ms  ({took / base:.2f}x the Typer baseline)")
    print(
        f"  YAML parse of {args.services} services: {cfg._YamlBase.__name__} "
        f"{fast * 1000:.1f} ms, SafeLoader {slow * 1000:.1f} ms ({fast / slow:.2f}x)"
    )


if __name__ == "__main__":
    main()
