"""Drive one seeded schedule from deploy to verdict: ``execute(sites, seed, base)``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from tests.lab import checker
from tests.lab.nemesis import NETWORK
from tests.lab.nemesis import Fault
from tests.lab.run import SETTLE_S
from tests.lab.run import Run
from tests.lab.run import call
from tests.lab.run import stop_process
from tests.lab.sites import BINDS
from tests.lab.sites import SITES
from tests.lab.sites import Sites

FAULTS_MAX_S = 25.0  # the nemesis never runs longer than this


@dataclass
class Result:
    seed: int
    faults: list[str]
    outcome: checker.Outcome
    notes: list[str] = field(default_factory=list)
    compute: dict[str, str] = field(default_factory=dict)  # site -> local | ssh

    @property
    def ok(self) -> bool:
        return not any(self.outcome.violations.values())


def wait(predicate: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def active_host(run: Run) -> dict[str, Any] | None:
    """The live host the primary DNS names, as its provider recorded it."""
    addresses = run.sites.dns_answer(BINDS[0]) or []
    for meta in run.live_hosts():
        if meta.get("address") in addresses:
            return meta
    return None


def _network(run: Run) -> None:
    run.sites.net.flush()
    for f in run.faults:
        if f.kind in NETWORK and f.t0 is not None and f.t1 is None:
            for group, target in f.rules():
                run.sites.net.drop(group, target)
            if f.kind == "loss":
                run.sites.net.lose(f.site, f.arg)


def _signal_watcher(run: Run, site: str, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.watchers[site].pid, sig)


def _suspended(run: Run, site: str) -> Path:
    return run.project / ".failover" / "local" / site / "SUSPENDED"


def apply(run: Run, f: Fault) -> None:
    f.t0 = run.now()
    active = active_host(run)
    # The faults that take the active host out: its detection and recovery are timed.
    takes_out = f.kind in ("isolate", "suspend", "latency", "loss") and active is not None
    if active is not None and (
        f.kind == "kill_service" or (takes_out and active["provider"] == f.site)
    ):
        f.detail["host"] = str(active["id"])
    if f.kind in NETWORK:
        _network(run)
    elif f.kind == "pause":
        _signal_watcher(run, f.site, signal.SIGSTOP)
    elif f.kind == "kill_watcher":
        _signal_watcher(run, f.site, signal.SIGKILL)
    elif f.kind == "kill_service" and active is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(active["pid"]), signal.SIGKILL)
    elif f.kind == "etcd_stop":
        run.sites.stop_etcd(f.site)
    elif f.kind == "clock":
        run.clock_file(f.site).write_text(f"{f.arg:+d}\n")
    elif f.kind == "suspend" and run.compute[f.site] == "ssh":
        run.sites.sshd[f.site].suspend()
    elif f.kind == "suspend":
        _suspended(run, f.site).parent.mkdir(parents=True, exist_ok=True)
        _suspended(run, f.site).write_text("lab\n")
    elif f.kind == "latency":
        skipped = run.sites.net.delay(run.sites.net.sets[f.site], f.arg)
        if skipped:
            f.detail["skipped"] = skipped


def heal(run: Run, f: Fault) -> None:
    if f.t1 is not None or f.t0 is None:
        return
    f.t1 = run.now()
    if f.kind in NETWORK:
        _network(run)
    elif f.kind == "pause":
        _signal_watcher(run, f.site, signal.SIGCONT)
    elif f.kind == "kill_watcher":
        with contextlib.suppress(subprocess.TimeoutExpired):  # a starved machine reaps late
            run.watchers[f.site].wait(timeout=60)
        run.start_watcher(f.site)
    elif f.kind == "etcd_stop":
        run.sites.start_etcd(f.site)
    elif f.kind == "suspend":
        _suspended(run, f.site).unlink(missing_ok=True)
        run.sites.sshd[f.site].resume()
    elif f.kind == "latency":
        run.sites.net.undelay()
    # A clock stays where it jumped, as after a real step: nothing steps it back.


def inject(run: Run) -> None:
    run.fault_start = run.now()
    steps = sorted(
        [(f.start, 0, i) for i, f in enumerate(run.faults)]
        + [(min(f.start + f.duration, FAULTS_MAX_S), 1, i) for i, f in enumerate(run.faults)]
    )
    for at, healing, i in steps:
        delay = run.fault_start + at - run.now()
        if delay > 0:
            time.sleep(delay)
        (heal if healing else apply)(run, run.faults[i])
    for f in run.faults:
        heal(run, f)
    run.sites.net.heal()
    for site in SITES:
        run.sites.start_etcd(site)
        if run.watchers[site].poll() is not None:
            run.start_watcher(site)


def everyone_sees_up(run: Run) -> bool:
    found = run.cli_json("status").get("watchers", [])
    return len([w for w in found if w.get("alive") and w.get("sees", {}).get("web") == "up"]) == 3


def settled(run: Run) -> bool:
    events = run.cli_json("history").get("events", [])
    if any(e.get("status") == "in_progress" for e in events):
        return False
    active = active_host(run)
    if active is None or len(run.live_hosts()) != 1:
        return False
    if any(run.sites.dns_answer(s) != [active["address"]] for s in BINDS):
        return False
    reply = call(active["address"], "GET", "/", 1.0)
    return reply is not None and reply.get("host") == active["id"]


def verdict(run: Run, did_settle: bool, first: str) -> checker.Outcome:
    out = checker.Outcome()
    if not did_settle:
        out.violations["settled"].append(f"not settled {SETTLE_S:.0f}s after the faults healed")
    status = run.cli_json("status")
    service = (status.get("services") or [{}])[0]
    active = service.get("active") or {}
    events = run.cli_json("history").get("events", [])
    checker.check_journal(events, service.get("generation", active.get("generation")), out)
    for site in BINDS:
        answer = run.sites.dns_answer(site, 2.0)
        if answer != [active.get("address")]:
            out.violations["dns_converged"].append(
                f"BIND at {site} answers {answer}, the active host is {active.get('address')}"
            )
    live = sorted(h["id"] for h in run.live_hosts())
    if live != [active.get("host_id")]:
        out.violations["orphan"].append(f"live hosts {live}, active {active.get('host_id')}")
    ids = call(str(active.get("address")), "GET", "/ids", 5.0) if active else None
    final = set(ids["ids"]) if ids else set()
    checker.check_writes(run.acks, final, str(active.get("host_id")), out)
    checker.check_single_host(run.samples, out)
    checker.check_false_failovers(run.faults, run.hosts, run.samples, first, out)
    checker.timings(run.faults, run.hosts, run.samples, out)
    return out


def execute(
    sites: Sites,
    seed: int,
    base: Path,
    tweak: Callable[[dict[str, Any]], None] | None = None,
    compute: dict[str, str] | None = None,
) -> Result:
    """Run schedule ``seed``; ``tweak`` may change the config first (the tests' controls),
    ``compute`` the provider type of each site (default: the seed's draw)."""
    run = Run(sites, seed, base, tweak, compute)
    notes: list[str] = []
    try:
        run.write_config()
        deployed = run.cli("deploy", "web", timeout=120)
        if deployed.returncode != 0:
            raise RuntimeError(f"deploy failed: {deployed.stdout[-800:]}{deployed.stderr[-800:]}")
        for site in SITES:
            run.start_watcher(site)
        run.start_recorders()
        if not wait(lambda: everyone_sees_up(run), 90, 1.0):
            notes.append("not every watcher saw the service up before the faults")
        first = next(iter(run.hosts), "")
        inject(run)
        did_settle = wait(lambda: settled(run), SETTLE_S, 1.0)
        time.sleep(1.5)  # the client's last writes land and are sampled
        run.stop_recorders()
        outcome = verdict(run, did_settle, first)
    finally:
        run.stop_recorders()
        teardown(run)
    leftover = [
        p for s in SITES for r in ("watcher", "hosts") for p in sites.net.members(f"{s}/{r}")
    ] + [int(h["pid"]) for h in run.live_hosts()]
    if leftover + sites.net.members("cli"):
        outcome.violations["orphan"].append(f"processes left after the run: {leftover}")
    notes += [
        f"{f.kind} skipped: {f.detail['skipped']}" for f in run.faults if "skipped" in f.detail
    ]
    return Result(seed, [f.describe() for f in run.faults], outcome, notes, run.compute)


def teardown(run: Run) -> None:
    for proc in run.watchers.values():
        stop_process(proc)
    for sshd in run.sites.sshd.values():
        sshd.resume()
    for host in run.live_hosts():  # an ssh host not yet moved to its site's cgroup
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(host["pid"]), signal.SIGKILL)
    net = run.sites.net
    for group in [f"{s}/{r}" for s in SITES for r in ("watcher", "hosts")] + ["cli"]:
        with contextlib.suppress(OSError):
            (net.cgroup(group) / "cgroup.kill").write_text("1")
    groups = ["cli"] + [f"{s}/hosts" for s in SITES]
    wait(lambda: not any(net.members(g) for g in groups) and not run.live_hosts(), 10, 0.1)
