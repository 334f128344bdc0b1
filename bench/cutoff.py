"""A provider cuts off many services at once: how long until all are healthy elsewhere.

    .venv/bin/python bench/cutoff.py [--services 50] [--moves 16,64]

On the local provider: N services deployed on ``alpha``; then alpha's account is
suspended and every host killed, and one ``Engine.check`` fails all of them over to
``beta`` (``fall: 1``; the provider's "blocked" is proof, no waiting for rounds). The
time from the cut to the check's return (every service verified healthy on beta and in
DNS) for N services, against 1 service measured in the same run, for each
``watcher.parallel_moves`` given; then the same with a simulated 1 s provisioning delay
(``run.setup: sleep 1`` on every new host). Nothing is asserted; it prints.

Without the delay, the time is mostly this machine starting N Python apps at once, so
the bench also prints that floor: N apps started side by side without failover, against
one (the same ratio the engine cannot beat on the same cores). It prints how many DNS
requests carried the N cutovers, too: with ``--dns bind`` those are RFC 2136 UPDATE
messages to a real BIND (as the tests start it), where the round's cutovers queue behind
the message in flight and go together in the next.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
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

# The zone the cutovers go to: the local zone file, or a real BIND (``--dns bind``).
DNS: dict[str, Any] = {"type": "local", "zone": "bench.test", "ttl": 5}


def config(workdir: Path, count: int, moves: int, delay: bool) -> Path:
    run: dict[str, Any] = {"command": APP}
    if delay:
        run["setup"] = ["sleep 1"]
    services = {
        f"s{i}": {
            "domain": f"s{i}.{DNS['zone']}",
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
        "dns": DNS,
        "providers": [{"name": "alpha", "type": "local"}, {"name": "beta", "type": "local"}],
        "services": services,
    }
    path = workdir / "failover.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def apps_alone(count: int) -> float:
    """The floor: ``count`` sample apps started at once, until every one answers."""
    ports = [free_port() for _ in range(count)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            APP.format(python=sys.executable, port=port, address="127.0.0.1").split(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        for port in ports
    ]
    try:
        waiting = set(ports)
        while waiting:
            for port in list(waiting):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    waiting.discard(port)
            time.sleep(0.005)
        return time.perf_counter() - start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cutoff(count: int, moves: int, delay: bool) -> tuple[float, int]:
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
        before = engine.zone().requests
        start = time.perf_counter()
        verdicts = engine.check(names)
        took = time.perf_counter() - start
        moved = sum("moved from alpha to beta" in v.message for v in verdicts)
        assert moved == count, [v.message for v in verdicts if "moved" not in v.message][:3]
        return took, engine.zone().requests - before
    finally:
        engine.close()
        kill_all(workdir / ".failover")
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--moves", default="16,64", help="watcher.parallel_moves values")
    parser.add_argument("--dns", choices=["local", "bind"], default="local")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.dns == "bind":
            from tests.servers import bind_server

            host, port, key, secret, zone = stack.enter_context(
                bind_server(Path(stack.enter_context(tempfile.TemporaryDirectory())))
            )
            DNS.clear()
            DNS.update(type="rfc2136", zone=zone, ttl=5, server=f"{host}:{port}", key_name=key)
            # The config names the secret's variable, as an operator's would.
            os.environ["BENCH_TSIG_SECRET"] = secret
            DNS["key_secret"] = "${BENCH_TSIG_SECRET}"
            print(f"DNS: RFC 2136 updates to BIND on {host}:{port}")
        run(args)


def run(args: argparse.Namespace) -> None:
    n = args.services
    alone_one, alone_many = apps_alone(1), apps_alone(n)
    print(
        f"{'floor: apps started alone':<32} {'':<17} 1 app     {alone_one:6.2f}s, "
        f"{n} apps     {alone_many:6.2f}s: {alone_many / alone_one:5.2f}x"
    )
    default = cfg.WatcherConfig().parallel_moves
    for delay in (False, True):
        label = "with a 1 s provisioning delay" if delay else "no delay"
        for moves in (int(m) for m in args.moves.split(",")):
            one, _ = cutoff(1, moves, delay)
            many, requests = cutoff(n, moves, delay)
            mark = " (default)" if moves == default else ""
            print(
                f"{label:<32} parallel_moves={moves:<3} 1 service {one:6.2f}s, "
                f"{n} services {many:6.2f}s: {many / one:5.2f}x; "
                f"{n} cutovers in {requests} DNS requests{mark}"
            )


if __name__ == "__main__":
    main()
