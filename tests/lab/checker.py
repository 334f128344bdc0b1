"""The invariants, checked on what a run recorded once its faults healed and it settled.

Each check returns the violations it found as sentences; ``check`` gathers them by
invariant, with the figures the bench reports (failovers, detection and recovery times,
the recovery point measured in acknowledged writes).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from tests.lab.nemesis import NETWORK
from tests.lab.nemesis import RESTART_S
from tests.lab.nemesis import Fault
from tests.lab.run import Sample
from tests.lab.sites import SITES

INVARIANTS = (
    "single_host",
    "dns_converged",
    "lost_write",
    "generation",
    "in_progress",
    "orphan",
    "false_failover",
    "settled",
)
# Two hosts behind DNS for a moment is a move between its cutover and its fence (and a
# secondary's transfer): a violation only when it lasts longer than this.
SPLIT_GRACE_S = 15.0
# A move is false when, through this window before its first host appeared, a quorum of
# locations could reach the healthy service.
DECISION_WINDOW = (6.0, 0.0)
QUORUM = 2
SLOW_MS = 250  # latency at which the model no longer counts a location as reaching
# Loss at which it no longer does either: a probe whose SYN is lost waits 1 s to resend,
# past its timeout, so three failed probes in a row become likely.
LOSSY_PERCENT = 20


@dataclass
class Outcome:
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    failovers: int = 0
    false_failovers: int = 0
    lost_writes: int = 0
    acked_writes: int = 0
    detection_s: list[float] = field(default_factory=list)
    recovery_s: list[float] = field(default_factory=list)


def reaches(faults: list[Fault], location: str, host_site: str, t: float) -> bool:
    """Could the watcher at ``location`` probe a host of ``host_site`` at time ``t``?"""
    for f in faults:
        if f.kind == "pause" and f.site == location and f.active(t):
            return False
        if f.kind == "kill_watcher" and f.site == location and f.active(t, RESTART_S):
            return False
        if f.kind == "latency" and f.site == host_site and f.active(t) and f.arg >= SLOW_MS:
            return False
        if f.kind == "loss" and f.site == host_site and f.active(t) and f.arg >= LOSSY_PERCENT:
            return False
        if f.kind in NETWORK and f.active(t):
            targets = (host_site, f"{host_site}_hosts", "hosts")
            if any(g in (location, f"{location}/watcher") and d in targets for g, d in f.rules()):
                return False
    return True


def healthy(faults: list[Fault], host: str, host_site: str, t: float) -> bool:
    for f in faults:
        killed = f.kind == "kill_service" and f.detail.get("host") == host
        if killed and f.t0 is not None and t >= f.t0:
            return False
        if f.kind == "suspend" and f.site == host_site and f.active(t):
            return False
    return True


def serving(sample: Sample) -> set[str]:
    return {h for h in sample.serving.values() if h}


def check_single_host(samples: list[Sample], out: Outcome) -> None:
    since: Sample | None = None
    for sample in samples:
        hosts = serving(sample)
        if len(hosts) < 2:
            since = None
            continue
        since = since or sample
        if sample.t - since.t > SPLIT_GRACE_S:
            out.violations["single_host"].append(
                f"{sorted(hosts)} all served behind DNS from {since.t:.1f}s to {sample.t:.1f}s"
            )
            return


def check_writes(
    acks: list[tuple[int, str, float]], final: set[int], active: str, out: Outcome
) -> None:
    """Only a suffix of each host's acknowledged writes may be missing, none of the last
    host's: what a host acked before a write that survived was in the same backup."""
    out.acked_writes = len(acks)
    by_host: dict[str, list[int]] = defaultdict(list)
    for n, host, _t in acks:
        by_host[host].append(n)
    for host, writes in by_host.items():
        missing = [n for n in writes if n not in final]
        out.lost_writes += len(missing)
        if host == active and missing:
            out.violations["lost_write"].append(f"the active host {host} lost {missing[:5]}")
            continue
        kept = [n for n in writes if n in final]
        holes = [n for n in missing if kept and n < max(kept)]
        if holes:
            out.violations["lost_write"].append(
                f"{host} acked {holes[:5]} before {max(kept)}, which survived; they did not"
            )


def check_journal(events: list[dict[str, Any]], generation: int | None, out: Outcome) -> None:
    events = sorted(events, key=lambda e: e.get("id") or 0)
    gens = [
        int(e["to"]["generation"])
        for e in events
        if e.get("status") == "succeeded"
        and isinstance(e.get("to"), dict)
        and e["to"].get("generation") is not None
    ]
    if any(b <= a for a, b in itertools.pairwise(gens)):
        out.violations["generation"].append(f"generations in journal order: {gens}")
    if gens and generation is not None and generation < max(gens):
        out.violations["generation"].append(f"status says {generation}, the journal {max(gens)}")
    for e in events:
        if e.get("status") == "in_progress":
            out.violations["in_progress"].append(f"{e.get('kind')} {e.get('id')} in progress")
    out.failovers = sum(
        e.get("kind") == "failover" and e.get("status") == "succeeded" for e in events
    )


def check_false_failovers(
    faults: list[Fault],
    hosts: dict[str, dict[str, Any]],
    samples: list[Sample],
    first: str,
    out: Outcome,
) -> None:
    """Each host created after the deploy is a move; judge its decision window."""
    last_move = -1e9
    for host_id, info in sorted(hosts.items(), key=lambda kv: kv[1]["first_seen"]):
        t = float(info["first_seen"])
        if host_id == first or t - last_move < 10:  # candidates of one move
            continue
        last_move = t
        old = _active_before(samples, t, hosts)
        if old is None:
            continue
        old_id, old_site = old
        steps = [
            t - DECISION_WINDOW[0] + i * 0.25
            for i in range(int((DECISION_WINDOW[0] - DECISION_WINDOW[1]) / 0.25) + 1)
        ]
        if all(
            healthy(faults, old_id, old_site, s)
            and sum(reaches(faults, loc, old_site, s) for loc in SITES) >= QUORUM
            for s in steps
        ):
            out.false_failovers += 1
            out.violations["false_failover"].append(
                f"{host_id} created at {t:.1f}s while {old_id} on {old_site} was healthy and "
                f"reachable from a quorum"
            )


def _active_before(
    samples: list[Sample], t: float, hosts: dict[str, dict[str, Any]]
) -> tuple[str, str] | None:
    for sample in reversed([s for s in samples if s.t < t - 1]):
        primary = next(iter(sample.answers.values()))
        for address in primary or []:
            host = sample.serving.get(address)
            if host and host in hosts:
                return host, str(hosts[host]["provider"])
    return None


def timings(
    faults: list[Fault], hosts: dict[str, dict[str, Any]], samples: list[Sample], out: Outcome
) -> None:
    """From a fault that took the active host out to the first new host (detection) and
    to the primary DNS naming a new host that answers (recovery)."""
    for f in faults:
        old = f.detail.get("host")
        if f.t0 is None or not old:
            continue
        born = [h["first_seen"] for i, h in hosts.items() if i != old and h["first_seen"] > f.t0]
        if not born:
            continue
        out.detection_s.append(round(min(born) - f.t0, 2))
        for sample in samples:
            primary = next(iter(sample.answers.values())) or []
            now = {sample.serving.get(a) for a in primary} - {None, old}
            if sample.t > f.t0 and now:
                out.recovery_s.append(round(sample.t - f.t0, 2))
                break
