"""Probe rounds against Prometheus' blackbox_exporter, on the same loopback targets.

    .venv/bin/python bench/probes.py [--sizes 100,1000,10000] [--exporter PATH]

For N HTTP targets (spread over 100 loopback addresses served by one process,
``tests/apps/counting.py``), in one run:

- the engine's round (:func:`failover.probes.probe_round`, default bound, default
  1 s timeout, a 2 s budget: the default interval; ``--budget 0`` for none);
- the same N probes through the exporter (``/probe?target=..&module=http_2xx``, a 1 s
  module timeout) started on a loopback port, driven by a client holding as many
  requests in flight as the engine holds probes;
- the uncapped round of before issue 16 (every probe at once), as the baseline.

Printed: probes per second, CPU per probe (the engine's own process; the exporter's
process only, not its client), the share that passed and the share the engine did not
run because its budget ran out (reported UNKNOWN, never "down"), with the ratios. Rates
count only probes that ran. Loopback only;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from failover.config import HealthConfig  # noqa: E402
from failover.config import HttpProbe  # noqa: E402
from failover.probes import Target  # noqa: E402
from failover.probes import _timed  # noqa: E402
from failover.probes import default_in_flight  # noqa: E402
from failover.probes import http_get  # noqa: E402
from failover.probes import probe_round  # noqa: E402
from tests.apps.counting import addresses  # noqa: E402

EXPORTER_CONFIG = """modules:
  http_2xx:
    prober: http
    timeout: 1s
    http:
      preferred_ip_protocol: ip4
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(host: str, port: int) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{host}:{port} never answered")


def targets(count: int, port: int) -> list[Target]:
    health = HealthConfig(interval=2.0, timeout=1.0, http=HttpProbe())
    spread = addresses("127.9", 100)
    return [
        Target(f"s{i}", spread[i % len(spread)], port, "bench.test", health) for i in range(count)
    ]


def engine_round(ts: list[Target], budget: float | None) -> tuple[float, float, float, float]:
    """Rates count only the probes that ran; the last figure is the share not run
    (the budget was spent first: UNKNOWN, never "down")."""
    cpu, start = cpu_self(), time.perf_counter()
    done = asyncio.run(probe_round(ts, budget=budget))
    wall, used = time.perf_counter() - start, cpu_self() - cpu
    results = [r for row in done for r in row]
    ran = max(1, sum(r.ran for r in results))
    passed = sum(r.ok for r in results) / len(results)
    return ran / wall, used / ran, passed, 1 - ran / len(results)


def uncapped_round(ts: list[Target]) -> tuple[float, float, float, float]:
    async def all_at_once() -> list[bool]:
        done = await asyncio.gather(*(_timed("http", t) for t in ts))
        return [r.ok for r in done]

    cpu, start = cpu_self(), time.perf_counter()
    oks = asyncio.run(all_at_once())
    wall, used = time.perf_counter() - start, cpu_self() - cpu
    return len(oks) / wall, used / len(oks), sum(oks) / len(oks), 0.0


def exporter_round(ts: list[Target], port: int, pid: int) -> tuple[float, float, float, float]:
    width = default_in_flight()

    async def drive() -> list[bool]:
        queue = iter(ts)
        oks: list[bool] = []

        async def worker() -> None:
            for t in queue:
                url = quote(f"http://{t.address}:{t.port}/", safe="")
                path = f"/probe?module=http_2xx&target={url}"
                try:
                    status, body = await asyncio.wait_for(
                        http_get("127.0.0.1", port, path, "127.0.0.1"), 5.0
                    )
                    oks.append(status == 200 and b"\nprobe_success 1" in body)
                except (OSError, TimeoutError, ValueError):
                    oks.append(False)

        await asyncio.gather(*(worker() for _ in range(min(width, len(ts)))))
        return oks

    cpu, start = cpu_of(pid), time.perf_counter()
    oks = asyncio.run(drive())
    wall, used = time.perf_counter() - start, cpu_of(pid) - cpu
    return len(oks) / wall, used / len(oks), sum(oks) / len(oks), 0.0


def one_size(
    n: int, port: int, exporter_port: int, pid: int, *, uncapped: bool, budget: float | None
) -> None:
    ts = targets(n, port)
    rows = {
        "engine": engine_round(ts, budget),
        "exporter": exporter_round(ts, exporter_port, pid),
    }
    if uncapped:
        rows["uncapped"] = uncapped_round(ts)
    for who, (rate, cpu, passed, skipped) in rows.items():
        print(f"{n:>6} {who:<10} {rate:>9.0f} {cpu * 1000:>13.3f} {passed:>7.1%} {skipped:>8.1%}")
    e, x = rows["engine"], rows["exporter"]
    print(
        f"{n:>6} ratio      engine/exporter: {e[0] / x[0]:.2f}x probes/s, "
        f"{e[1] / x[1]:.2f}x CPU per probe"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--exporter", default="/usr/bin/prometheus-blackbox-exporter")
    parser.add_argument("--no-uncapped", action="store_true")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="the round's budget (interval); 0: none"
    )
    args = parser.parse_args()
    exporter = shutil.which(args.exporter) or args.exporter
    if not Path(exporter).exists():
        sys.exit(f"{exporter} not found (apt-get install prometheus-blackbox-exporter)")
    target_port, exporter_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-probes-"))
    (tmp / "blackbox.yml").write_text(EXPORTER_CONFIG)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.apps.counting",
            "--port",
            str(target_port),
            "--addresses",
            "100",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    bbe = subprocess.Popen(
        [
            exporter,
            f"--config.file={tmp / 'blackbox.yml'}",
            f"--web.listen-address=127.0.0.1:{exporter_port}",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        wait_port("127.0.0.1", exporter_port)
        print(f"in flight: {default_in_flight()} (engine default, and the exporter's client)")
        header = (
            f"{'N':>6} {'who':<10} {'probes/s':>9} {'CPU ms/probe':>13} {'passed':>7} "
            f"{'not run':>8}"
        )
        print(header)
        for n in (int(x) for x in args.sizes.split(",")):
            one_size(
                n,
                target_port,
                exporter_port,
                bbe.pid,
                uncapped=not args.no_uncapped,
                budget=args.budget or None,
            )
    finally:
        for proc in (server, bbe):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
