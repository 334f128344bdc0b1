"""Several watchers: what a quorum costs in detection and recovery, and etcd round trips.

    .venv/bin/python bench/watchers.py [--services 1,5,20] [--repeat 2]

Starts a real three-member etcd on loopback ports (``/usr/bin/etcd``), then:

1. Detection and recovery of a frozen host (SIGSTOP: the provider still says running,
   so the watchers must count failed rounds): the time from the freeze to the failover
   journaled as succeeded, with one ``failover watch`` on SQLite (the baseline), one on
   etcd, and three on etcd in three locations (``watchers.quorum: 2``); each printed
   as a ratio against the baseline measured in the same run.
2. etcd round trips per probe round: one ``Engine.check`` round of N healthy services
   (after a warm-up round), counted at the HTTP client, in total and per service.

Nothing is asserted; it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from failover import config as cfg  # noqa: E402
from failover.engine import Engine  # noqa: E402
from tests.etcd_server import NAMES  # noqa: E402
from tests.etcd_server import EtcdCluster  # noqa: E402

APP = "{python} -m failover.demo_app --port {port} --bind {address}"
FAILOVER = str(Path(sys.executable).parent / "failover")


def write(workdir: Path, services: int, state: dict[str, Any] | None, quorum: int = 1) -> Path:
    data: dict[str, Any] = {
        "version": 1,
        "dns": {"type": "local", "zone": "bench.test", "ttl": 5},
        "providers": [{"name": "alpha", "type": "local"}, {"name": "beta", "type": "local"}],
        "services": {
            f"s{i}": {
                "domain": f"s{i}.bench.test",
                "port": 8080,
                "run": {"command": APP},
                "health": {"interval": "200ms", "timeout": "200ms", "fall": 2, "rise": 1},
                "policy": {"ready_timeout": "30s", "max_moves_per_hour": 1000},
            }
            for i in range(services)
        },
    }
    if state is not None:
        data["state"] = state
        data["watchers"] = {"quorum": quorum}
    path = workdir / "failover.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def env(n: int) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("FAILOVER_")}
    out.update(FAILOVER_WATCHER=f"w{n}", FAILOVER_LOCATION=f"loc{n}")
    out["FAILOVER_PROBE_NETWORKS"] = "127.0.0.0/8"
    out["PYTHONPATH"] = str(ROOT)
    return out


def cli(config: Path, *args: str) -> Any:
    proc = subprocess.run(
        [FAILOVER, *args, "-c", str(config), "--json"], capture_output=True, text=True, env=env(0)
    )
    return json.loads(proc.stdout)


def host_pid(config: Path) -> int:
    active = cli(config, "status")["services"][0]["active"]
    meta = config.parent / ".failover" / "local" / active["provider"] / "hosts"
    return int(json.loads((meta / active["host_id"] / "host.json").read_text())["pid"])


def recovered(config: Path) -> bool:
    events = cli(config, "history")["events"]
    return any(e["kind"] == "failover" and e["status"] == "succeeded" for e in events)


def detect_and_recover(state: dict[str, Any] | None, watchers: int) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="failover-bench-watchers-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = write(workdir, 1, state, quorum=2 if watchers > 1 else 1)
        subprocess.run([FAILOVER, "deploy", "-c", str(config)], env=env(0), check=True,
                       capture_output=True)  # fmt: skip
        for n in range(1, watchers + 1):
            procs.append(
                subprocess.Popen(
                    [FAILOVER, "watch", "-c", str(config)],
                    env=env(n),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(2)  # every watcher has voted a few rounds
        pid = host_pid(config)
        start = time.monotonic()
        os.killpg(pid, signal.SIGSTOP)
        deadline = start + 120
        while not recovered(config):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no failover within 120s ({watchers} watchers, {state})")
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)
        return elapsed
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        _kill_hosts(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_hosts(workdir: Path) -> None:
    for meta in (workdir / ".failover" / "local").glob("*/hosts/*/host.json"):
        with contextlib.suppress(ProcessLookupError, ValueError, KeyError, PermissionError):
            os.killpg(int(json.loads(meta.read_text())["pid"]), signal.SIGKILL)


def round_trips(cluster: EtcdCluster, services: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="failover-bench-rtt-"))
    state = {"backend": "etcd", "endpoints": cluster.endpoints,
             "prefix": f"/bench-{uuid.uuid4().hex[:8]}/", "lease_ttl": "5s"}  # fmt: skip
    engine = None
    try:
        config = cfg.load(write(workdir, services, state))
        engine = Engine(config)
        names = list(config.services)
        for name in names:
            engine.run(name, "deploy", reason="bench")
        engine.check(names)  # warm-up: leases, schema, the lead
        gw = engine.store.gw  # type: ignore[attr-defined]
        before = gw.calls
        engine.check(names)
        return int(gw.calls - before)
    finally:
        if engine is not None:
            engine.close()
        _kill_hosts(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", default="1,5,20")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="failover-bench-etcd-"))
    cluster = EtcdCluster("/usr/bin/etcd", base)
    try:
        for name in NAMES:
            cluster.start(name)
        cluster.wait_healthy()

        def etcd_state() -> dict[str, Any]:
            return {"backend": "etcd", "endpoints": cluster.endpoints,
                    "prefix": f"/bench-{uuid.uuid4().hex[:8]}/", "lease_ttl": "3s"}  # fmt: skip

        print("frozen host: freeze -> failover succeeded (fall 2, interval 200ms)")
        cases = [("1 watcher, SQLite", None, 1), ("1 watcher, etcd", "etcd", 1),
                 ("3 watchers, etcd, quorum 2", "etcd", 3)]  # fmt: skip
        times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
        for _ in range(args.repeat):
            for label, backend, count in cases:
                state = etcd_state() if backend else None
                times[label].append(detect_and_recover(state, count))
        baseline = min(times[cases[0][0]])
        for label, _, _ in cases:
            best = min(times[label])
            print(f"  {label:28} {best:6.2f}s  x{best / baseline:.2f} of the baseline")

        print("etcd round trips per probe round (healthy services, after a warm-up round)")
        for count in (int(n) for n in args.services.split(",")):
            calls = round_trips(cluster, count)
            print(f"  {count:3} services: {calls:4} round trips, {calls / count:.1f} per service")
    finally:
        cluster.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
