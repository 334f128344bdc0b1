"""The nemesis: seeded schedules of real faults, applied to the lab and healed.

A schedule is a list of ``Fault``s drawn from ``random.Random(seed)``: the same seed gives
the same faults at the same offsets, so a failing schedule is replayed by its seed. Each
fault records when it was really applied and healed (``t0``/``t1``, seconds on the run's
clock), which the checker's model of who could reach what reads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from dataclasses import field

from tests.lab.sites import SITES

NETWORK = ("partition", "isolate", "cut_watcher", "oneway", "loss")
# What a schedule draws from (changing it would change every seed's schedule): a link
# drawn as ``latency`` is lossy instead for half the faults, by a draw of its own.
DRAWN = (
    *NETWORK[:4],
    "pause",
    "kill_watcher",
    "kill_service",
    "etcd_stop",
    "clock",
    "suspend",
    "latency",
)
KINDS = (*DRAWN, "loss")
LEASE_TTL = 3.0
# A killed watcher is restarted at heal; it votes again a few rounds later.
RESTART_S = 5.0


@dataclass
class Fault:
    kind: str
    site: str
    other: str
    start: float
    duration: float
    arg: int = 0
    t0: float | None = None
    t1: float | None = None
    detail: dict[str, str] = field(default_factory=dict)

    def active(self, t: float, tail: float = 0.0) -> bool:
        if self.t0 is None or t < self.t0:
            return False
        return self.t1 is None or t <= self.t1 + tail

    def rules(self) -> list[tuple[str, str]]:
        """(cgroup, destination set) pairs whose packets this fault drops."""
        s, o = self.site, self.other
        if self.kind == "partition":
            return [(a, b) for a in SITES for b in SITES if a != b]
        if self.kind == "isolate":
            return [p for x in SITES if x != s for p in ((s, x), (x, s))]
        if self.kind == "cut_watcher":
            return [(f"{s}/watcher", "hosts")]
        if self.kind == "oneway":
            return [(s, o)]
        return []

    def describe(self) -> str:
        extra = {
            "oneway": f"->{self.other}",
            "clock": f" {self.arg:+d}s",
            "latency": f" {self.arg}ms",
            "loss": f" {self.arg}%",
        }.get(self.kind, "")
        return f"{self.kind}({self.site}{extra}) at {self.start:.1f}s for {self.duration:.1f}s"


def schedule(seed: int, span: float = 8.0) -> list[Fault]:
    """One to three faults starting within ``span`` seconds, each healed 3-10 s later."""
    rng = random.Random(seed)
    link = random.Random(f"link-{seed}")
    faults: list[Fault] = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(DRAWN)
        if kind == "latency" and any(f.kind == "latency" for f in faults):
            kind = "partition"
        site = rng.choice(SITES)
        other = rng.choice([s for s in SITES if s != site])
        start, duration = round(rng.uniform(0, span), 1), round(rng.uniform(3, 10), 1)
        arg = 0
        if kind == "pause":
            duration = round(rng.uniform(LEASE_TTL + 1, 3 * LEASE_TTL), 1)
        elif kind == "clock":
            arg = rng.choice((-1, 1)) * rng.randint(30, 900)
        elif kind == "latency":
            arg = rng.randint(50, 400)
            if link.random() < 0.5:
                kind, arg = "loss", link.randint(5, 60)
        faults.append(Fault(kind, site, other, start, duration, arg))
    return sorted(faults, key=lambda f: f.start)
