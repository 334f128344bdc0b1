"""``failover demo``: the whole story on one machine, in a few seconds.

Two local providers and a small web app that counts visits in SQLite. The service is
deployed on ``alpha``, three visits are written and backed up to two stores; then
``alpha`` suspends the account and kills the host, the way a cloud cuts a customer off.
The watcher notices, moves the service to ``beta``, restores the backup there, points
DNS there, and the demo prints the timeline and the visits ``beta`` serves. Everything
it started is torn down at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from failover import config as cfg
from failover.data.plane import take_backup
from failover.engine import Engine

DEMO_CONFIG = """\
version: 1
dns: {type: local, zone: demo.test, ttl: 5}
providers:
  - {name: alpha, type: local}
  - {name: beta, type: local}
services:
  web:
    domain: www.demo.test
    port: 8080
    run:
      command: "{python} -m failover.demo_app --port {port} --bind {address} --db data/app.db"
    data:
      backup: "{python} -m failover.demo_app dump data/app.db"
      restore: "{python} -m failover.demo_app load data/app.db"
      every: 1h
    health:
      interval: 500ms
      timeout: 400ms
      fall: 3
      rise: 1
      http: {path: /, expect_status: [200], body: "served by"}
    policy:
      providers: [alpha, beta]
      ready_timeout: 30s
      max_moves_per_hour: 3
stores:
  - {name: offsite, type: dir, path: backups/offsite}
  - {name: vault, type: dir, path: backups/vault}
"""


def run_demo(say: Callable[[str], None], keep: Path | None = None) -> dict[str, Any]:
    workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="failover-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "failover.yaml"
    path.write_text(DEMO_CONFIG.replace("path: backups/", f"path: {workdir}/backups/"))
    for store in ("offsite", "vault"):
        (workdir / "backups" / store).mkdir(parents=True, exist_ok=True)
    conf = cfg.load(path, workdir / ".failover")

    marks: dict[str, float] = {}

    def step_line(step: str, status: str, detail: str) -> None:
        marks.setdefault(f"{step}:{status}", time.monotonic())
        if status != "in_progress":
            say(f"      {step:<11} {status:<9} {detail}")

    engine = Engine(conf, on_step=step_line)
    doc: dict[str, Any] = {
        "from": "alpha",
        "to": None,
        "detected_after_s": None,
        "recovered_after_s": None,
        "events": [],
    }
    try:
        say(f"[demo] config and state in {workdir}")
        say("[demo] 1. deploy web on alpha")
        outcome = engine.run("web", "deploy", reason="demo deploy", to="alpha")
        if not outcome.ok:
            raise RuntimeError(f"deploy failed: {outcome.message}")
        say(f"[demo]    {outcome.message}")
        active = engine.store.service("web").active
        assert active is not None
        doc["data"] = _write_and_back_up(engine, active["address"], say)
        marks.clear()
        say(f"[demo] 2. alpha cuts us off: account suspended, host {active['host_id']} killed")
        cut_at = time.monotonic()
        _cut_off(conf.state_dir or workdir, active["host_id"])
        say("[demo] 3. the watcher probes every 500ms (fall: 3)")
        detected = None
        recovered = _until_moved(engine, cut_at, say)
        events = engine.store.events("web", limit=10)
        failover = next((e for e in events if e["kind"] == "failover"), None)
        if "lock:in_progress" in marks:
            detected = marks["lock:in_progress"] - cut_at
        doc.update(
            to=(failover or {}).get("to", {}).get("provider") if failover else None,
            detected_after_s=None if detected is None else round(detected, 3),
            recovered_after_s=None if recovered is None else round(recovered, 3),
            events=[{k: v for k, v in e.items() if k != "data"} for e in reversed(events)],
        )
        if failover:
            _timeline(engine, doc, failover, say)
        else:
            say("[demo] the service did not move: see the lines above")
    finally:
        _teardown(engine, conf.state_dir or workdir)
        engine.close()
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
        say("[demo] done: every host the demo started is gone")
    return doc


def _until_moved(engine: Engine, cut_at: float, say: Callable[[str], None]) -> float | None:
    """``check`` rounds every 500ms until the service moved (seconds since the cut-off),
    failed for good, or a minute passed (None)."""
    deadline = cut_at + 60
    while time.monotonic() < deadline:
        round_at = time.monotonic()
        (result,) = engine.check(["web"])
        elapsed = time.monotonic() - cut_at
        say(f"[demo]    +{elapsed:5.2f}s {result.state:<7} {result.message}")
        if result.action == "failover":
            return time.monotonic() - cut_at
        if result.exit_code == 2:
            return None
        time.sleep(max(0.0, 0.5 - (time.monotonic() - round_at)))
    return None


def _timeline(
    engine: Engine, doc: dict[str, Any], failover: dict[str, Any], say: Callable[[str], None]
) -> None:
    say("[demo] 4. timeline (from the moment alpha cut the service off)")
    say(f"[demo]    detected after  {doc['detected_after_s']}s")
    say(
        f"[demo]    recovered after {doc['recovered_after_s']}s "
        f"(on {doc['to']}, DNS {_dns(engine)})"
    )
    for step in failover["steps"]:
        say(f"[demo]      {step['name']:<11} {step['duration_s'] or 0:6.3f}s  {step['detail']}")
    _show_data(engine, doc["data"], say)


def _visits(address: str, post: bool = False) -> int:
    request = urllib.request.Request(f"http://{address}:8080/", data=b"" if post else None)
    with urllib.request.urlopen(request, timeout=5) as answer:
        found = re.search(r"visits: (\d+)", answer.read().decode())
    return int(found.group(1)) if found else -1


def _write_and_back_up(engine: Engine, address: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Three visits into the app's SQLite database, then a backup into both stores."""
    for _ in range(3):
        count = _visits(address, post=True)
    say(f"[demo]    3 visits written to web's SQLite database on alpha (visits: {count})")
    taken = take_backup(engine, "web")
    stores = ", ".join(f"{k} {v}" for k, v in taken["stores"].items())
    say(f"[demo]    backup {taken['id']} ({taken['bytes']} bytes) -> {stores}")
    return {"visits_before": count, "backup": taken["id"], "visits_after": None}


def _show_data(engine: Engine, data: dict[str, Any], say: Callable[[str], None]) -> None:
    active = engine.store.service("web").active
    if active is None:
        return
    data["visits_after"] = _visits(active["address"])
    say(
        f"[demo] 5. the data followed: {active['provider']} serves visits: "
        f"{data['visits_after']} (backup {data['backup']}, {data['visits_before']} on alpha)"
    )


def _dns(engine: Engine) -> str:
    record = engine.dns().get_record("www.demo.test")
    return ", ".join(record.values) if record else "none"


def _cut_off(state_dir: Path, host_id: str) -> None:
    root = state_dir / "local" / "alpha"
    (root / "SUSPENDED").write_text("the provider closed this account\n")
    meta = json.loads((root / "hosts" / host_id / "host.json").read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(meta["pid"]), signal.SIGKILL)


def _teardown(engine: Engine, state_dir: Path) -> None:
    (state_dir / "local" / "alpha" / "SUSPENDED").unlink(missing_ok=True)
    for name in ("alpha", "beta"):
        provider = engine.provider(name)
        for host in provider.list_hosts("web"):
            provider.destroy_host(host.id)
