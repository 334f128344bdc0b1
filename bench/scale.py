"""Many services, one watcher: the cost of `check`, `deploy` and `watch` as the config
grows from 100 to 10,000 healthy services (issue 28).

    .venv/bin/python bench/scale.py [--sizes 100,1000,10000] [--providers static,local]
                                    [--deploy-at 1000] [--watch-at 1000] [--runs 3]

Every service answers: one demo app serves them all (static machines and local hosts
alike are that one process, on its port), so what grows is the watcher's own work, not
a machine full of apps. ``deploy --all`` deploys the ``--deploy-at`` size for real on
the static provider (a deploy per service: adopt, wait, verify, cutover); the state of
the other sizes is written as those deploys leave it (the provider's records, the
service rows, the DNS zone), which is what a round reads. Then ``check`` runs
``--runs`` times per size and provider (median wall, CPU of the process, its peak
RSS; the first round of each audits the DNS zone, as one round in ``dns_audit`` does),
and ``watch --rounds`` at ``--watch-at`` gives the CPU a round costs against its interval.

Printed: the figures, the marginal cost per service between sizes, the exponent fitted
to those marginals (1.0: each service costs the same however many there are) and every
figure as a ratio against the 100-service run of the same invocation, so a machine
shared with other work still gives comparable numbers. The load average is printed;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLI = [sys.executable, str(ROOT / "cli.py")]
INTERVAL = 2.0  # the default health.interval: what `watch` must fit a round into


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The demo app's ThreadingHTTPServer queues 5 connections: a round's 500 probes in flight
# would wait on SYN retries, not on the watcher. This one answers 200 to anything.
SERVER = """
import asyncio, sys

async def answer(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
            await writer.drain()
            if b"close" in head.lower():
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(answer, "0.0.0.0", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()

asyncio.run(main())
"""


def serve(port: int) -> subprocess.Popen[bytes]:
    """The one app every service is: on every loopback address (local hosts each have
    their own), at ``port``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the app did not answer on port {port}")


def write_config(workdir: Path, count: int, kind: str, port: int) -> Path:
    """``count`` services with every section a real one has set."""
    provider: dict[str, Any] = {"name": "own", "type": kind}
    if kind == "static":
        provider["machines"] = [{"address": "127.0.0.1"}]
    services = {
        f"s{i}": {
            "domain": f"s{i}.scale.test",
            "port": port,
            "run": {"command": "true {port}", "setup": ["true"], "env": {"MODE": "bench"}},
            "health": {
                # A shared machine may starve a round for seconds: the bench measures the
                # watcher's CPU, so it lets every probe run (a round whose budget ran out
                # would skip probes and look cheap) and never fails anything over. The
                # watch figure is still against the default interval, 2 s.
                "interval": "60s",
                "timeout": "5s",
                "fall": 1000,
                "rise": 1,
                "http": {"path": "/"},
            },
            "policy": {"ready_timeout": "60s", "max_moves_per_hour": 3, "fence": "destroy"},
        }
        for i in range(count)
    }
    data = {
        "version": 1,
        "dns": {"type": "local", "zone": "scale.test", "ttl": 5},
        "providers": [provider],
        "services": services,
    }
    path = workdir / "failover.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def seed(path: Path, kind: str, server_pid: int, port: int) -> None:
    """The state ``deploy --all`` leaves: each service live on its own host of ``own``."""
    from failover import config as cfg
    from failover.engine import Engine
    from failover.engine.journal import HostRef
    from failover.state import open_store
    from providers.base import RecordChange

    conf = cfg.load(path)
    assert conf.state_dir is not None
    state = conf.state_dir
    store = open_store(conf)
    records: dict[str, Any] = {}
    zone: dict[str, str] = {}
    try:
        for i, name in enumerate(conf.services):
            if kind == "static":
                host_id, address = f"127.0.0.1/{name}/{i:08x}", "127.0.0.1"
            else:
                host_id, address = f"h-{i:08x}", f"127.77.{i // 254 + 1}.{i % 254 + 1}"
            record = {
                "id": host_id,
                "name": f"{name}-g1-own",
                "service": name,
                "generation": 1,
                "purpose": "serve",
                "address": address,
                "port": port,
            }
            if kind == "static":
                records[host_id] = record
            else:
                host = state / "local" / "own" / "hosts" / host_id
                host.mkdir(parents=True)
                meta = {**record, "state": "created", "pid": server_pid}
                (host / "host.json").write_text(json.dumps(meta))
                (host / "phase").write_text("serving\n")
            zone[conf.services[name].domain] = address
            store.cutover(
                name, 0, HostRef("own", host_id, address, f"{name}-g1-own").active(), None
            )
    finally:
        store.close()
    # The zone as the deploys leave it: a seed without it would have the first round's
    # audit repair every record (what an emptied zone costs, not what a round does).
    engine = Engine(conf)
    try:
        fan = engine.fanout()
        changes = [RecordChange(d, "A", [a], 5, None) for d, a in zone.items()]
        fan.backend(fan.names[0]).replace_records(changes)
    finally:
        engine.close()
    if kind == "static":
        (state / "static").mkdir(parents=True, exist_ok=True)
        (state / "static" / "own.json").write_text(json.dumps({"hosts": records}))


def run(argv: list[str]) -> tuple[float, float, int, str]:
    """Wall and CPU seconds, peak RSS (KB) of ``argv`` run to its end, and its stdout:
    the resource use of that one process (wait4), whatever else the machine runs. The
    peak RSS is GNU time's: a child's own count starts from what its parent held when it
    forked, and this process grows with the 10,000-service documents it reads."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        timed = ["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv]
        proc = subprocess.Popen(timed, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, _, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = 0  # reaped above
        out.seek(0)
        text = out.read().decode()
        peak = int(rss.read().split()[-1])
    return wall, usage.ru_utime + usage.ru_stime, peak, text


def measure(
    kind: str, count: int, port: int, server_pid: int, args: argparse.Namespace
) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-scale-{kind}-{count}-"))
    try:
        path = write_config(workdir, count, kind, port)
        cli = [*CLI, "-c", str(path)]
        row: dict[str, float] = {}
        if kind == "static" and count in args.deploy_at:
            wall, cpu, _, out = run([*cli, "deploy", "--all", "--json"])
            done = json.loads(out)["services"]
            bad = [d["message"] for d in done if d["status"] != "succeeded"]
            assert not bad, bad[:3]
            row["deploy_ms"] = wall / count * 1000
            row["deploy_cpu_ms"] = cpu / count * 1000
        else:
            # In a child: a parent grown by 10,000 services would lend its size to the
            # peak RSS of every process it starts after (Linux counts it from the fork).
            seeding = [sys.executable, __file__, "--seed", str(path), kind, str(server_pid)]
            subprocess.run([*seeding, str(port)], check=True)
        # Not measured: the first command after a change of the config parses the YAML
        # and keeps the document (failover.document); cron's checks run after that.
        run([*cli, "validate"])
        samples = []
        for _ in range(args.runs):
            wall, cpu, rss, out = run([*cli, "check", "--json"])
            verdicts = json.loads(out)["services"]
            bad = sum(v["exit_code"] != 0 for v in verdicts)
            row["unhealthy"] = max(row.get("unhealthy", 0), bad)
            samples.append((wall, cpu, rss))
        row["check_s"] = statistics.median(s[0] for s in samples)
        row["check_cpu_s"] = statistics.median(s[1] for s in samples)
        row["rss_kb"] = statistics.median(s[2] for s in samples)
        if count in args.watch_at:
            # A round's own CPU: watch for 1 and for 1+R rounds, the difference over R
            # (the start-up is paid once by both).
            watch = [*cli, "watch", "--metrics-port", str(free_port()), "--rounds"]
            one = run([*watch, "1"])[1]
            more = run([*watch, str(1 + args.watch_rounds)])[1]
            row["watch_cpu_round_s"] = (more - one) / args.watch_rounds
            row["watch_core"] = row["watch_cpu_round_s"] / INTERVAL
        return row
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def marginal(rows: dict[int, dict[str, float]], key: str) -> list[tuple[int, int, float]]:
    """(from, to, cost of one more service) between consecutive sizes."""
    sizes = sorted(n for n in rows if key in rows[n])
    return [(a, b, (rows[b][key] - rows[a][key]) / (b - a)) for a, b in itertools.pairwise(sizes)]


def exponent(m1: float, m2: float, a: int, b: int) -> float:
    """The e in cost ~ N^e that turns marginal ``m1`` (around ``a``) into ``m2``
    (around ``b``): 1.0 when every service costs the same."""
    if m1 <= 0 or m2 <= 0:
        return float("nan")
    return 1 + math.log(m2 / m1) / math.log(b / a)


def report(kind: str, rows: dict[int, dict[str, float]]) -> None:
    base = rows[min(rows)]
    print(f"\n{kind}: check of N healthy services (median of runs; x: ratio to N={min(rows)})")
    print(
        f"{'N':>7} {'wall s':>8} {'cpu s':>8} {'ms cpu/svc':>10} {'rss MB':>7} {'x wall':>7}"
        f" {'x cpu':>7} {'deploy ms/cpu':>13} {'watch core':>10} {'not ok':>6}"
    )
    for n, r in sorted(rows.items()):
        deploy = f"{r['deploy_ms']:.1f}/{r['deploy_cpu_ms']:.1f}" if "deploy_ms" in r else "-"
        watch = f"{r['watch_core'] * 100:9.1f}%" if "watch_core" in r else f"{'-':>10}"
        print(
            f"{n:>7} {r['check_s']:8.2f} {r['check_cpu_s']:8.2f} "
            f"{r['check_cpu_s'] / n * 1000:10.3f} {r['rss_kb'] / 1024:7.0f} "
            f"{r['check_s'] / base['check_s']:7.2f} {r['check_cpu_s'] / base['check_cpu_s']:7.2f}"
            f" {deploy:>13} {watch} {int(r.get('unhealthy', 0)):>6}"
        )
    cpu = marginal(rows, "check_cpu_s")
    rss = marginal(rows, "rss_kb")
    for (a, b, m), (_, _, kb) in zip(cpu, rss, strict=True):
        print(f"  marginal {a:>6} -> {b:<6}: {m * 1000:.3f} ms CPU and {kb:.1f} KB RSS per service")
    for (a, b, m1), (c, d, m2) in itertools.pairwise(cpu):
        print(
            f"  fitted exponent {a}..{d}: {exponent(m1, m2, (a + b) // 2, (c + d) // 2):.2f}"
            f" (marginal {b}->{d} / {a}->{b}: {m2 / m1:.2f}x)"
        )
        print(
            f"  exponent of the totals {b}->{d}: "
            f"{math.log(rows[d]['check_cpu_s'] / rows[b]['check_cpu_s']) / math.log(d / b):.2f}"
        )


def main() -> None:
    if sys.argv[1:2] == ["--seed"]:
        path, kind, pid, port = sys.argv[2:6]
        seed(Path(path), kind, int(pid), int(port))
        return
    parser = argparse.ArgumentParser()
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument("--sizes", type=ints, default=[100, 1000, 10000])
    parser.add_argument("--providers", default="static,local")
    parser.add_argument("--deploy-at", type=ints, default=[100, 1000])
    parser.add_argument("--watch-at", type=ints, default=[1000])
    parser.add_argument("--watch-rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    port = free_port()
    server = serve(port)
    try:
        for kind in args.providers.split(","):
            rows = {n: measure(kind, n, port, server.pid, args) for n in args.sizes}
            report(kind, rows)
    finally:
        server.kill()
        server.wait()
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
