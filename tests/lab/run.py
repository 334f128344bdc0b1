"""One schedule on the lab: deploy, three watchers, a client writing through DNS, a
sampler, the nemesis's faults, heal, settle, and what the checker needs.

Everything the run records is on its own clock (``Run.now``: seconds since it began),
never on a watcher's, which the nemesis may have jumped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import FAILOVER
from tests.helpers import ROOT
from tests.helpers import pid_alive
from tests.lab import ssh
from tests.lab.nemesis import LEASE_TTL
from tests.lab.nemesis import Fault
from tests.lab.nemesis import schedule
from tests.lab.net import network
from tests.lab.net import prefix
from tests.lab.sites import BINDS
from tests.lab.sites import DNS_PORT
from tests.lab.sites import NAME
from tests.lab.sites import SITES
from tests.lab.sites import TSIG_NAME
from tests.lab.sites import ZONE
from tests.lab.sites import Sites
from tests.lab.sites import server

PORT = 8080
CLOCKSHIFT = Path(__file__).parent / "clockshift"
APP = "{python} -m tests.lab.app"
SETTLE_S = 120.0


@dataclass
class Sample:
    t: float
    answers: dict[str, list[str] | None]  # BIND site -> addresses
    serving: dict[str, str | None]  # address -> the host id that answered


def call(address: str, method: str, path: str, timeout: float) -> dict[str, Any] | None:
    conn = http.client.HTTPConnection(address, PORT, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read()
        return dict(json.loads(body)) if response.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class Run:
    def __init__(
        self,
        sites: Sites,
        seed: int,
        base: Path,
        tweak: Callable[[dict[str, Any]], None] | None,
        compute: dict[str, str] | None = None,
    ) -> None:
        self.sites, self.seed, self.tweak = sites, seed, tweak
        self.faults: list[Fault] = schedule(seed)
        self.compute = compute or ssh.compute(seed, SITES)  # site -> local | ssh
        self.project = base / f"seed-{seed}"
        self.config = self.project / "failover.yaml"
        self.watchers: dict[str, subprocess.Popen[bytes]] = {}
        self.hosts: dict[str, dict[str, Any]] = {}  # id -> address, provider, first_seen
        self.samples: list[Sample] = []
        self.acks: list[tuple[int, str, float]] = []  # write, host that acked, when
        self.fault_start = 0.0
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    # ------------------------------------------------------------------ set-up

    def env(self, site: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FAILOVER_", "FAKETIME"))}
        env.pop("LD_PRELOAD", None)
        env.update(
            PYTHONPATH=str(ROOT),
            LAB_TSIG_SECRET=self.sites.secret,
            FAILOVER_PROBE_NETWORKS=network(),
        )
        if site is not None:
            env.update(FAILOVER_WATCHER=f"w-{site}", FAILOVER_LOCATION=site)
            if any(f.kind == "clock" and f.site == site for f in self.faults):
                # A clock step as NTP makes one: the wall clock jumps, CLOCK_MONOTONIC
                # does not (see clockshift/sitecustomize.py for why not libfaketime).
                env.update(
                    PYTHONPATH=os.pathsep.join([str(CLOCKSHIFT), str(ROOT)]),
                    LAB_CLOCK_FILE=str(self.clock_file(site)),
                )
        return env

    def clock_file(self, site: str) -> Path:
        return self.project / f"{site}.faketime"

    def write_config(self) -> None:
        (self.project / "store").mkdir(parents=True)
        for site in SITES:
            self.clock_file(site).write_text("+0\n")
        data = {
            "version": 1,
            "dns": {
                "type": "rfc2136",
                "zone": ZONE,
                "ttl": 1,
                "server": f"{server(BINDS[0], 53)}:{DNS_PORT}",
                "key_name": TSIG_NAME,
                "key_secret": "${LAB_TSIG_SECRET}",
                "timeout": "1s",
                "propagation_timeout": "5s",
                "poll_interval": "200ms",
            },
            "providers": [self._provider(s) for s in SITES],
            "state": {
                "backend": "etcd",
                "endpoints": self.sites.endpoints,
                "prefix": f"/lab-{self.seed}-{uuid.uuid4().hex[:6]}/",
                "lease_ttl": f"{LEASE_TTL:g}s",
                "timeout": "1s",
            },
            "watchers": {"quorum": 2},
            "stores": [{"name": "vault", "type": "dir", "path": str(self.project / "store")}],
            "services": {
                "web": {
                    "domain": NAME,
                    "port": PORT,
                    "run": {
                        "command": f"{APP} serve --port {{port}} --bind {{address}} --db app.db",
                        "env": {"PYTHONPATH": str(ROOT)},  # an ssh login's has no lab
                    },
                    "health": {"interval": "1s", "timeout": "1s", "fall": 3, "rise": 1},
                    "policy": {"ready_timeout": "30s", "max_moves_per_hour": 100},
                    "data": {
                        "backup": f"{APP} dump app.db",
                        "restore": f"{APP} load app.db",
                        "every": "2s",
                    },
                }
            },
        }
        if self.tweak is not None:
            self.tweak(data)
        self.config.write_text(yaml.safe_dump(data, sort_keys=False))

    def _provider(self, site: str) -> dict[str, Any]:
        if self.compute[site] == "ssh":
            sshd = self.sites.sshd[site]
            return ssh.provider(site, sshd, self.sites.client_key, self.project, server)
        return {"name": site, "type": "local", "network": prefix()}

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        procs = self.sites.net.cgroup("cli") / "cgroup.procs"
        return subprocess.run(
            [FAILOVER, *args, "-c", str(self.config)],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.project,
            preexec_fn=lambda: procs.write_text(str(os.getpid())),
        )

    def cli_json(self, *args: str) -> dict[str, Any]:
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            return dict(json.loads(self.cli(*args, "--json").stdout))
        return {}

    def start_watcher(self, site: str) -> None:
        self.watchers[site] = self.sites.spawn(
            [FAILOVER, "watch", "-c", str(self.config)],
            f"{site}/watcher",
            self.project / f"w-{site}.log",
            env=self.env(site),
            cwd=self.project,
        )

    def host_records(self) -> list[dict[str, Any]]:
        out = ssh.host_records(self.project)
        for path in (self.project / ".failover" / "local").glob("*/hosts/*/host.json"):
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads(path.read_text())
                meta["provider"] = path.parent.parent.parent.name
                out.append(meta)
        return out

    def live_hosts(self) -> list[dict[str, Any]]:
        return [
            h
            for h in self.host_records()
            if not h.get("destroyed")
            and not h.get("stopped")
            and h.get("pid")
            and pid_alive(int(h["pid"]))
        ]

    # ----------------------------------------------------------------- recorders

    def _loop(self, every: float, body: Any) -> None:
        while not self.stop_event.is_set():
            with contextlib.suppress(Exception):
                body()
            self.stop_event.wait(every)

    def _refresh(self) -> None:
        """Hosts join their site's address set and cgroup as they appear."""
        by_site: dict[str, set[str]] = {s: set() for s in SITES}
        records = self.host_records()
        net = self.sites.net
        ssh.place_hosts(net, records)
        for meta in records:
            if meta.get("address") and meta.get("id"):
                self.hosts.setdefault(
                    meta["id"],
                    {
                        "address": meta["address"],
                        "provider": meta["provider"],
                        "first_seen": self.now(),
                    },
                )
                if not meta.get("destroyed") and meta["provider"] in by_site:
                    by_site[meta["provider"]].add(meta["address"])
        for site, addresses in by_site.items():
            net.set_addresses(f"{site}_hosts", addresses)
            net.set_addresses(site, self.sites.infra(site) | addresses)
        net.set_addresses("hosts", set().union(*by_site.values()))
        mine = {p.pid for p in self.watchers.values()}
        for group in [f"{s}/watcher" for s in SITES] + ["cli"]:
            for pid in net.members(group):
                provider = _environ(pid).get("FAILOVER_PROVIDER") if pid not in mine else None
                if provider in SITES:
                    net.place(pid, f"{provider}/hosts")

    def _sample(self) -> None:
        answers = {s: self.sites.dns_answer(s) for s in BINDS}
        addresses = {a for found in answers.values() for a in found or []}
        serving = {}
        for address in addresses:
            reply = call(address, "GET", "/", 0.5)
            serving[address] = str(reply["host"]) if reply else None
        self.samples.append(Sample(self.now(), answers, serving))

    def _client(self) -> None:
        n = len(self.acks) and self.acks[-1][0]
        for _ in range(10):  # a write every ~0.1 s, to the address DNS gives
            n += 1
            found = self.sites.dns_answer(BINDS[0], 0.3) or self.sites.dns_answer(BINDS[1], 0.3)
            reply = call(found[0], "POST", f"/w/{n}", 1.0) if found else None
            if reply is not None:
                self.acks.append((n, str(reply["host"]), self.now()))
            time.sleep(0.1)

    def start_recorders(self) -> None:
        for every, body in ((0.3, self._refresh), (0.5, self._sample), (0.0, self._client)):
            thread = threading.Thread(target=self._loop, args=(every, body), daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop_recorders(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
