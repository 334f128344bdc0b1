"""Soak: random kill / cut-off / suspend / restore cycles with `failover watch` running.

    .venv/bin/python bench/soak.py [--cycles N] [--seed S] [--max-seconds T] [--keep DIR]

Three local providers; one service; `failover watch` runs as a subprocess the whole
time. Each cycle does one random thing to the world, as a provider would:

- kill the active host (its process group), or freeze it (SIGSTOP: it stops answering
  while its provider still reports it running, so only `fall` failed probes tell),
- cut the active provider off (account suspended *and* its hosts killed),
- suspend another provider, or restore a suspended one (never all three at once).

After a fault that takes the service down, the soak measures, from outside, how long
until the DNS record names another address and that address answers HTTP. At the end
every provider is restored, the watcher is stopped with SIGTERM and a few `check`s settle
the state; then it prints: moves, mean/max recovery time, unrecovered faults, and the
journal's lost or double events (a generation without exactly one succeeded
deploy/failover/move, an event left ``in_progress``, more than one live host) which must
all be 0 (exit status 1 otherwise).

Bounded in cycles and in time; talks only to 127.0.0.0/8. Not run in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
FAILOVER = str(Path(sys.executable).parent / "failover")
APP = "{python} -m failover.demo_app --port {port} --bind {address}"
PROVIDERS = ("alpha", "beta", "gamma")
DOMAIN = "www.soak.test"


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("FAILOVER_")}
    out["FAILOVER_PROBE_NETWORKS"] = "127.0.0.0/8"
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), out.get("PYTHONPATH")]))
    return out


def write_config(workdir: Path) -> Path:
    data = {
        "version": 1,
        "dns": {"type": "local", "zone": "soak.test", "ttl": 5},
        "providers": [{"name": p, "type": "local"} for p in PROVIDERS],
        "services": {
            "web": {
                "domain": DOMAIN,
                "port": 8080,
                "run": {"command": APP},
                "health": {"interval": "200ms", "timeout": "200ms", "fall": 2, "rise": 1},
                "policy": {"ready_timeout": "5s", "max_moves_per_hour": 1000},
            }
        },
    }
    path = workdir / "failover.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class World:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.state = config.parent / ".failover"
        self.suspended: set[str] = set()

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FAILOVER, *args, "-c", str(self.config)],
            capture_output=True,
            text=True,
            env=env(),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def hosts(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.state / "local").glob("*/hosts/*/host.json")):
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads(path.read_text())
                meta["provider"] = path.parent.parent.parent.name
                out.append(meta)
        return out

    def live(self) -> list[dict[str, Any]]:
        return [
            h
            for h in self.hosts()
            if not h.get("destroyed") and not h.get("stopped") and alive(int(h["pid"]))
        ]

    def dns(self) -> list[str]:
        try:
            zone = json.loads((self.state / "dns" / "soak.test.json").read_text())
            return list(zone["records"][f"{DOMAIN} A"]["values"])
        except (OSError, ValueError, KeyError):
            return []

    def behind_dns(self) -> dict[str, Any] | None:
        values = self.dns()
        for host in self.live():
            if [host["address"]] == values:
                return host
        return None

    def suspend(self, provider: str, kill: bool) -> None:
        (self.state / "local" / provider).mkdir(parents=True, exist_ok=True)
        (self.state / "local" / provider / "SUSPENDED").write_text("soak\n")
        self.suspended.add(provider)
        if kill:
            for host in self.live():
                if host["provider"] == provider:
                    kill_group(int(host["pid"]))

    def restore(self, provider: str) -> None:
        (self.state / "local" / provider / "SUSPENDED").unlink(missing_ok=True)
        self.suspended.discard(provider)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:8080/", timeout=0.5) as response:
            return response.status == 200
    except OSError:
        return False


def recovered(world: World, old_address: str) -> bool:
    values = world.dns()
    return len(values) == 1 and values[0] != old_address and answers(values[0])


def audit(world: World) -> dict[str, Any]:
    history = json.loads(world.cli("history", "--json", "--limit", "100000").stdout)["events"]
    status = json.loads(world.cli("status", "--json").stdout)["services"][0]
    generation = int(status["generation"])
    moving = [e for e in history if e["kind"] in ("deploy", "failover", "move")]
    succeeded = [e for e in moving if e["status"] == "succeeded"]
    # Each succeeded run made exactly one generation: as many runs as generations, and
    # (from the cutover details) each generation exactly once.
    made: dict[int, int] = {}
    for event in succeeded:
        cutover = next((s for s in event["steps"] if s["name"] == "cutover"), None)
        detail = (cutover or {}).get("detail") or ""
        if "generation " in detail:
            made_gen = int(detail.rsplit("generation ", 1)[1].split()[0].strip(";,"))
            made[made_gen] = made.get(made_gen, 0) + 1
    lost = [g for g in range(1, generation + 1) if made.get(g, 0) == 0]
    double = [g for g, n in made.items() if n > 1]
    live = world.live()
    return {
        "generation": generation,
        "moves": len(succeeded) - 1,  # every succeeded run after the first deploy
        "failed_runs": len([e for e in moving if e["status"] == "failed"]),
        "in_progress": len([e for e in history if e["status"] == "in_progress"]),
        "lost": lost,
        "double": double,
        "live_hosts": len(live),
        "dns_matches_active": bool(
            status["active"] and world.dns() == [status["active"]["address"]]
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop early after this")
    parser.add_argument("--recovery-timeout", type=float, default=30.0)
    parser.add_argument("--keep", type=Path, help="keep the soak's files in this folder")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"soak: seed {args.seed}, {args.cycles} cycles, at most {args.max_seconds:g}s")

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="failover-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    world = World(write_config(workdir))
    deploy = world.cli("deploy")
    if deploy.returncode != 0:
        print(f"deploy failed: {deploy.stdout}{deploy.stderr}")
        for host in world.hosts():
            kill_group(int(host["pid"]))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        return 1
    log = (workdir / "watch.log").open("w")
    watch = subprocess.Popen(
        [FAILOVER, "watch", "-c", str(world.config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env(),
        stdin=subprocess.DEVNULL,
    )
    started = time.monotonic()
    recoveries: list[float] = []
    unrecovered = 0
    done = 0
    counts: dict[str, int] = {}
    try:
        for cycle in range(args.cycles):
            if time.monotonic() - started > args.max_seconds:
                print(f"soak: time is up after {cycle} cycles")
                break
            active = world.behind_dns()
            usable = [p for p in PROVIDERS if p not in world.suspended]
            choices = ["kill"] * 3 + ["freeze", "cut_off", "cut_off", "suspend", "restore"]
            action = rng.choice(choices)
            if action == "restore" and not world.suspended:
                action = "kill"
            if action in ("cut_off", "suspend") and len(usable) <= 2:
                # Keep one provider besides the victim able to take the service.
                action = "restore" if world.suspended else "kill"
            counts[action] = counts.get(action, 0) + 1
            down = False
            if action == "kill" and active:
                kill_group(int(active["pid"]))
                down = True
            elif action == "freeze" and active:
                # Silent: the host stops answering, its provider still says it runs, so
                # the watcher must count `fall` failed rounds before it moves.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(active["pid"]), signal.SIGSTOP)
                down = True
            elif action == "cut_off" and active:
                world.suspend(active["provider"], kill=True)
                down = True
            elif action == "suspend":
                others = [p for p in usable if not active or p != active["provider"]]
                world.suspend(rng.choice(others), kill=False)
            elif action == "restore":
                world.restore(rng.choice(sorted(world.suspended)))
            fault_at = time.monotonic()
            if down and active:
                while time.monotonic() - fault_at < args.recovery_timeout:
                    if recovered(world, active["address"]):
                        recoveries.append(time.monotonic() - fault_at)
                        break
                    time.sleep(0.05)
                else:
                    unrecovered += 1
                    print(f"  cycle {cycle}: {action}: not recovered in {args.recovery_timeout}s")
            else:
                time.sleep(rng.uniform(0.2, 1.0))
            done += 1
            last = f"{recoveries[-1]:.2f}s" if down and recoveries else "-"
            print(f"  cycle {cycle:3d}: {action:<8} recovery {last}")
    finally:
        for provider in list(world.suspended):
            world.restore(provider)
        time.sleep(2)
        watch.send_signal(signal.SIGTERM)
        try:
            watch.wait(timeout=60)
        except subprocess.TimeoutExpired:
            watch.kill()
        log.close()
    for _ in range(3):
        world.cli("check")
    result = audit(world)
    crashed = watch.returncode not in (0, None)
    for host in world.hosts():
        if host.get("pid") and alive(int(host["pid"])):
            kill_group(int(host["pid"]))
    print()
    print(f"cycles          {done} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    print(f"moves           {result['moves']} (generation {result['generation']})")
    print(f"failed runs     {result['failed_runs']} (a candidate that could not be used; retried)")
    if recoveries:
        print(
            f"recovery        mean {statistics.mean(recoveries):.2f}s  "
            f"max {max(recoveries):.2f}s  over {len(recoveries)} outages"
        )
    print(f"unrecovered     {unrecovered}")
    print(f"lost events     {len(result['lost'])} {result['lost'] or ''}")
    print(f"double events   {len(result['double'])} {result['double'] or ''}")
    print(f"in progress     {result['in_progress']}")
    print(f"live hosts      {result['live_hosts']} (must be 1)")
    print(f"dns == active   {result['dns_matches_active']}")
    print(f"watch exit      {watch.returncode}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    bad = (
        result["lost"]
        or result["double"]
        or result["in_progress"]
        or result["live_hosts"] != 1
        or not result["dns_matches_active"]
        or unrecovered
        or crashed
    )
    print("soak: FAILED" if bad else "soak: ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
