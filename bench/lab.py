"""The fault lab, many schedules: faults by kind, violations by invariant, failovers.

    .venv/bin/python bench/lab.py --schedules 300 --seed 1 [--json]

Schedule i runs seed ``S + i``; replay one with ``--schedules 1 --seed <its seed>``. Needs
root, nftables, etcd and BIND (see the README's "Fault lab"). Exit 1 when any invariant
was violated, 2 when the lab cannot run here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lab.checker import INVARIANTS  # noqa: E402
from tests.lab.checker import Outcome  # noqa: E402
from tests.lab.drive import Result  # noqa: E402
from tests.lab.drive import execute  # noqa: E402
from tests.lab.nemesis import KINDS  # noqa: E402
from tests.lab.nemesis import schedule  # noqa: E402
from tests.lab.net import SLOTS  # noqa: E402
from tests.lab.net import unavailable  # noqa: E402
from tests.lab.sites import SITES  # noqa: E402
from tests.lab.sites import Sites  # noqa: E402


def spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def record(result: Result) -> dict[str, Any]:
    outcome = result.outcome
    violations = {k: v for k, v in outcome.violations.items() if v}
    outcome.violations = {}  # asdict cannot copy a defaultdict
    doc = dataclasses.asdict(result)
    outcome.violations = defaultdict(list, violations)
    doc["outcome"]["violations"] = violations
    return doc


def load(path: Path) -> list[Result]:
    """Results a run wrote with ``--jsonl`` (several runs add up to one table)."""
    results = []
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        # Written before a seed drew its sites' providers: every site was local.
        doc.setdefault("compute", dict.fromkeys(SITES, "local"))
        outcome = Outcome(**{**doc.pop("outcome")})
        outcome.violations = defaultdict(list, outcome.violations)
        results.append(Result(**doc, outcome=outcome))
    return results


def summary(seed: int, results: list[Result]) -> dict[str, Any]:
    faults: Counter[str] = Counter({k: 0 for k in KINDS})
    violations: Counter[str] = Counter({k: 0 for k in INVARIANTS})
    for result in results:
        faults.update(f.kind for f in schedule(result.seed))
        violations.update({k: len(v) for k, v in result.outcome.violations.items() if v})
    outcomes = [r.outcome for r in results]
    return {
        "seed": seed,
        "schedules": len(results),
        "faults": dict(faults),
        "violations": dict(violations),
        "failovers": sum(o.failovers for o in outcomes),
        "false_failovers": sum(o.false_failovers for o in outcomes),
        "acked_writes": sum(o.acked_writes for o in outcomes),
        "lost_writes": sum(o.lost_writes for o in outcomes),
        "detection_s": spread([d for o in outcomes for d in o.detection_s]),
        "recovery_s": spread([d for o in outcomes for d in o.recovery_s]),
        "skipped": {
            k: sum(n.startswith(f"{k} skipped") for r in results for n in r.notes)
            for k in KINDS
            if any(n.startswith(f"{k} skipped") for r in results for n in r.notes)
        },
        "sites": dict(Counter(kind for r in results for kind in r.compute.values())),
        "failed_seeds": [r.seed for r in results if not r.ok],
    }


def table(doc: dict[str, Any]) -> str:
    lines = [
        f"fault lab: {doc['schedules']} schedules from seed {doc['seed']}",
        "",
        "| fault | injected |",
        "|---|---|",
    ]
    lines += [f"| {k} | {n} |" for k, n in doc["faults"].items()]
    lines += [f"(not applied here: {k} x{n})" for k, n in doc["skipped"].items()]
    lines += ["", "| invariant | violations |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in doc["violations"].items()]
    det, rec = doc["detection_s"], doc["recovery_s"]
    lines += [
        "",
        f"sites by provider: {doc['sites'] or 'not recorded'}",
        f"failovers {doc['failovers']}, false failovers {doc['false_failovers']}",
        f"acknowledged writes {doc['acked_writes']}, lost (recovery point) {doc['lost_writes']}",
        f"detection s: median {det['median']}, worst {det['max']}",
        f"recovery s: median {rec['median']}, worst {rec['max']}",
        f"failed seeds: {doc['failed_seeds'] or 'none'}",
        f"lab errors (no verdict): {doc.get('lab_errors') or 'none'}",
    ]
    return "\n".join(lines)


def recover(sites: Sites) -> None:
    """Undo what a schedule cut short may have left: rules, stopped members, suspensions."""
    sites.net.heal()
    for site in SITES:
        sites.start_etcd(site)
        sites.sshd[site].resume()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=int, default=10)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--jsonl", type=Path, help="append each schedule's result to this file")
    parser.add_argument(
        "--summarize", type=Path, nargs="+", help="print the table of --jsonl files"
    )
    args = parser.parse_args()
    if args.summarize:
        loaded = [r for path in args.summarize for r in load(path)]
        doc = summary(min(r.seed for r in loaded), loaded)
        print(json.dumps(doc, indent=2) if args.json else table(doc))
        return 1 if doc["failed_seeds"] else 0
    reason = unavailable()
    if reason:
        print(f"bench/lab.py: {reason}", file=sys.stderr)
        return 2
    print(f"seed {args.seed}", file=sys.stderr, flush=True)
    results: list[Result] = []
    errors: list[int] = []
    # The highest free slot: the test suite's labs take the lowest, and are not kept
    # waiting by a long bench.
    sites = Sites(Path(tempfile.mkdtemp(prefix="failover-lab-")), list(reversed(range(SLOTS))))
    try:
        sites.start()
        for seed in range(args.seed, args.seed + args.schedules):
            try:
                result = execute(sites, seed, sites.base)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                # The lab's own failure (a deploy past its time on a starved machine): no
                # verdict on the product; said, counted, and the next schedule runs.
                print(f"seed {seed}: lab error: {exc}", file=sys.stderr, flush=True)
                errors.append(seed)
                recover(sites)
                continue
            results.append(result)
            if args.jsonl:
                with args.jsonl.open("a") as out:
                    out.write(json.dumps(record(result)) + "\n")
            verdict = "ok" if result.ok else dict(result.outcome.violations)
            print(
                f"seed {seed}: {'; '.join(result.faults)}: {verdict} {result.notes or ''}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        sites.stop()
    doc = summary(args.seed, results)
    doc["lab_errors"] = errors
    if doc["failed_seeds"]:
        print(f"logs of every schedule: {sites.base}/seed-N", file=sys.stderr)
    else:
        shutil.rmtree(sites.base, ignore_errors=True)
    print(json.dumps(doc, indent=2) if args.json else table(doc))
    return 1 if doc["failed_seeds"] else 0


if __name__ == "__main__":
    sys.exit(main())
