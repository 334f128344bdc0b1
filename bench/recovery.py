"""Recovery time and start-up time, printed as figures against baselines in this run.

    .venv/bin/python bench/recovery.py [--runs N]

1. kill -> healthy-elsewhere on the local provider (interval 500ms, fall 3), against its
   floor: interval x fall + the time a new host takes to start serving.
2. `failover --help` and `failover check` start-up, as a ratio to the `--help` of the
   smallest Typer app, run by the same interpreter with the same Typer.
Nothing here is asserted; it prints.
"""

from __future__ import annotations

import argparse
import os
import signal
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
from failover.engine import Engine  # noqa: E402

APP = "{python} -m failover.demo_app --port {port} --bind {address}"


def _config(workdir: Path) -> Path:
    data = {
        "version": 1,
        "dns": {"type": "local", "zone": "bench.test", "ttl": 5},
        "providers": [{"name": "alpha", "type": "local"}, {"name": "beta", "type": "local"}],
        "services": {
            "web": {
                "domain": "www.bench.test",
                "port": 8080,
                "run": {"command": APP},
                "health": {"interval": "500ms", "timeout": "400ms", "fall": 3, "rise": 1},
                "policy": {"ready_timeout": "30s", "max_moves_per_hour": 1000},
            }
        },
    }
    path = workdir / "failover.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def host_start(engine: Engine) -> float:
    """The floor's second term: one drill's provision+wait_ready+restore+verify."""
    outcome = engine.drill("web", "beta")
    steps = {s["name"]: s["duration_s"] or 0.0 for s in (outcome.event or {})["steps"]}
    return sum(steps[s] for s in ("provision", "wait_ready", "restore", "verify"))


def recovery(runs: int, how: signal.Signals) -> None:
    times, floors = [], []
    marks: dict[str, float] = {}

    def on_step(step: str, status: str, detail: str) -> None:
        if step == "cutover" and status == "succeeded":
            marks["cutover"] = time.monotonic()

    with tempfile.TemporaryDirectory() as tmp:
        conf = cfg.load(_config(Path(tmp)), Path(tmp) / ".failover")
        engine = Engine(conf, on_step=on_step)
        engine.run("web", "deploy", reason="bench", to="alpha")
        interval, fall = 0.5, 3
        for _ in range(runs):
            floors.append(interval * fall + host_start(engine))
            active = engine.store.service("web").active
            assert active is not None
            import json

            meta = json.loads(
                (
                    conf.state_dir
                    / "local"
                    / active["provider"]
                    / "hosts"
                    / active["host_id"]  # type: ignore[operator]
                    / "host.json"
                ).read_text()
            )
            killed = time.monotonic()
            os.killpg(int(meta["pid"]), how)
            while True:
                start = time.monotonic()
                (result,) = engine.check(["web"])
                if result.action == "failover":
                    break
                time.sleep(max(0.0, interval - (time.monotonic() - start)))
            times.append(marks["cutover"] - killed)
        for provider in ("alpha", "beta"):
            for host in engine.provider(provider).list_hosts("web"):
                engine.provider(provider).destroy_host(host.id)
        engine.close()
    label = {
        signal.SIGKILL: "killed (the provider reports the host gone: proof at once)",
        signal.SIGSTOP: "frozen (the provider says running: `fall` rounds needed)",
    }[how]
    print(f"recovery, host {label}; {runs} runs, interval 500ms, fall 3, until DNS points at")
    print("the new, verified host:")
    print(
        f"  mean {statistics.mean(times):.3f}s  max {max(times):.3f}s  "
        f"floor (interval x fall + host start) {statistics.mean(floors):.3f}s  "
        f"ratio {statistics.mean(times) / statistics.mean(floors):.2f}x"
    )


TYPER_MIN = "import typer\napp = typer.Typer()\n@app.command()\ndef main() -> None: pass\napp()\n"


def startup(runs: int) -> None:
    def once(cmd: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        cli = [sys.executable, str(ROOT / "cli.py")]
        config = _config(Path(tmp))
        subprocess.run([*cli, "deploy", "-c", str(config)], stdout=subprocess.DEVNULL, check=True)
        commands = {
            "baseline": [sys.executable, "-c", TYPER_MIN, "--help"],
            "help": [*cli, "--help"],
            "check": [*cli, "check", "-c", str(config)],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        # Interleaved, so that a busy moment of the machine weighs on all three alike.
        for _ in range(runs):
            for name, cmd in commands.items():
                samples[name].append(once(cmd))
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from pathlib import Path; from failover import config as c; "
                "from failover.engine import Engine; "
                f"e=Engine(c.load(Path({str(config)!r})));"
                "[e.provider(p).destroy_host(h.id) for p in ('alpha','beta') "
                "for h in e.provider(p).list_hosts('web')]",
            ],
            check=True,
        )
    baseline = statistics.median(samples["baseline"])
    help_time = statistics.median(samples["help"])
    check_time = statistics.median(samples["check"])
    print(f"start-up, median of {runs} interleaved runs each:")
    print(f"  smallest Typer app --help  {baseline * 1000:7.1f} ms  (baseline 1.00x)")
    print(f"  failover --help            {help_time * 1000:7.1f} ms  ({help_time / baseline:.2f}x)")
    print(
        f"  failover check (local)     {check_time * 1000:7.1f} ms  ({check_time / baseline:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    # An editable install is never byte-compiled by pip, and PYTHONDONTWRITEBYTECODE may
    # forbid it at import: compile once, so start-up is measured as an installed wheel runs.
    import compileall

    compileall.compile_dir(ROOT / "failover", quiet=1)
    compileall.compile_dir(ROOT / "providers", quiet=1)
    compileall.compile_file(ROOT / "cli.py", quiet=1)
    recovery(args.runs, signal.SIGKILL)
    recovery(args.runs, signal.SIGSTOP)
    startup(max(args.runs, 5))


if __name__ == "__main__":
    main()
