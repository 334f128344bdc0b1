"""Three sites on one machine: an etcd member, a watcher and a compute provider each, a
BIND at two of them, every address in 127.88.0.0/16 (in slot 0, see ``net.py``).

Site ``siteN`` owns ``127.88.10N.0/24`` for its servers (etcd ``.1``, BIND ``.53``); the
hosts its provider (``local``, ``network: "127.88"``) starts get addresses anywhere in
127.88.0.0/16, and join the site's address set as they appear (``Sites.refresh``). BIND
at site1 is the zone's primary (the one failover updates); site2's is a secondary fed by
NOTIFY and transfer, so a partition can leave it behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.lab.net import Net
from tests.lab.net import prefix
from tests.lab.net import use_slot
from tests.lab.ssh import SiteSshd
from tests.lab.ssh import keygen
from tests.lab.ssh import wait_answering

SITES = ("site1", "site2", "site3")
ROLES = ("etcd", "watcher", "bind", "hosts", "sshd")
ETCD_CLIENT, ETCD_PEER, DNS_PORT = 12379, 12380, 10053
ZONE, NAME = "lab.test", "www.lab.test"
BINDS = ("site1", "site2")
TSIG_NAME = "lab-key"


def server(site: str, last: int) -> str:
    return f"{prefix()}.{100 + SITES.index(site) + 1}.{last}"


ZONE_FILE = """$TTL 1
@       IN SOA  ns1.{zone}. hostmaster.{zone}. 1 1 1 3600 1
@       IN NS   ns1.{zone}.
ns1     IN A    {ns}
"""

NAMED_CONF = """
key "{key}" {{ algorithm hmac-sha256; secret "{secret}"; }};
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    listen-on port {port} {{ {address}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
    min-refresh-time 1;
    min-retry-time 1;
    max-retry-time 2;
}};
controls {{ }};
zone "{zone}" {{
{zone_body}
}};
"""

PRIMARY = """    type primary;
    file "{dir}/{zone}.zone";
    notify explicit;
    also-notify {{ {secondary} port {port}; }};
    allow-transfer {{ any; }};
    update-policy {{ grant {key} zonesub ANY; }};"""

SECONDARY = """    type secondary;
    file "{dir}/{zone}.secondary";
    primaries {{ {primary} port {port}; }};"""


class Sites:
    """The long-lived servers of the lab (kept across schedules) and its network."""

    def __init__(self, base: Path, slots: list[int] | None = None) -> None:
        self.base, self.slots = base, slots
        self.secret = base64.b64encode(os.urandom(32)).decode()
        self.net = Net([f"{s}/{r}" for s in SITES for r in ROLES] + ["cli"])
        self.etcd: dict[str, subprocess.Popen[bytes]] = {}
        self.binds: dict[str, subprocess.Popen[bytes]] = {}
        self.sshd: dict[str, SiteSshd] = {}

    def spawn(
        self,
        cmd: list[str],
        group: str,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in its own session, inside the cgroup ``group``."""
        procs = self.net.cgroup(group) / "cgroup.procs"

        def enter() -> None:
            procs.write_text(str(os.getpid()))

        with log.open("ab") as out:
            return subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=enter,
                env=env,
                cwd=cwd,
            )

    @property
    def endpoints(self) -> list[str]:
        return [f"http://{server(s, 1)}:{ETCD_CLIENT}" for s in SITES]

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        sets = [s for s in SITES] + [f"{s}_hosts" for s in SITES] + ["hosts"]
        self.net.setup(sets, self.slots)
        use_slot(self.net.slot)  # every address of the lab is in it
        for site in SITES:
            self.net.set_addresses(site, self.infra(site))
            self.start_etcd(site)
        self._start_sshd()
        named = self.base / "named"
        shutil.copy2(shutil.which("named") or "/usr/sbin/named", named)
        for site in BINDS:
            self.net.add_address(server(site, 53))
            self._start_bind(site, named)
        self.wait_etcd()
        wait_answering(list(self.sshd.values()))
        deadline = time.monotonic() + 30
        while any(self.soa(s) is None for s in BINDS):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the lab's BIND did not answer (logs in {self.base})")
            time.sleep(0.2)

    def infra(self, site: str) -> set[str]:
        """The site's own servers' addresses: etcd, sshd, BIND."""
        return {server(site, 1), server(site, 22)} | (
            {server(site, 53)} if site in BINDS else set()
        )

    @property
    def client_key(self) -> Path:
        return self.base / "ssh-client"

    def _start_sshd(self) -> None:
        public = keygen(self.client_key)
        for site in SITES:
            sshd = self.sshd[site] = SiteSshd(self.base / f"sshd-{site}", server(site, 22))
            sshd.prepare(public)
            sshd.proc = self.spawn(sshd.command(), f"{site}/sshd", sshd.dir / "out.log")

    def start_etcd(self, site: str) -> None:
        if site in self.etcd and self.etcd[site].poll() is None:
            return
        peers = ",".join(f"{s}=http://{server(s, 1)}:{ETCD_PEER}" for s in SITES)
        client, peer = (
            f"http://{server(site, 1)}:{ETCD_CLIENT}",
            f"http://{server(site, 1)}:{ETCD_PEER}",
        )
        self.etcd[site] = self.spawn(
            [
                shutil.which("etcd") or "/usr/bin/etcd",
                "--name",
                site,
                "--data-dir",
                str(self.base / f"etcd-{site}"),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                peers,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "failover-lab",
                "--heartbeat-interval",
                "100",
                "--election-timeout",
                "1000",
                "--log-level",
                "warn",
            ],
            f"{site}/etcd",
            self.base / f"etcd-{site}.log",
        )

    def stop_etcd(self, site: str) -> None:
        proc = self.etcd.get(site)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def etcd_healthy(self, site: str) -> bool:
        url = f"http://{server(site, 1)}:{ETCD_CLIENT}/health"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def wait_etcd(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.etcd_healthy(s) for s in SITES):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the lab's etcd did not become healthy (logs in {self.base})")

    def _start_bind(self, site: str, named: Path) -> None:
        folder = self.base / f"bind-{site}"
        folder.mkdir(exist_ok=True)
        fields = {"dir": folder, "zone": ZONE, "port": DNS_PORT, "key": TSIG_NAME}
        if site == BINDS[0]:
            (folder / f"{ZONE}.zone").write_text(ZONE_FILE.format(zone=ZONE, ns=server(site, 53)))
            body = PRIMARY.format(secondary=server(BINDS[1], 53), **fields)
        else:
            body = SECONDARY.format(primary=server(BINDS[0], 53), **fields)
        (folder / "named.conf").write_text(
            NAMED_CONF.format(
                secret=self.secret, address=server(site, 53), zone_body=body, **fields
            )
        )
        self.binds[site] = self.spawn(
            [str(named), "-g", "-n", "1", "-c", str(folder / "named.conf")],
            f"{site}/bind",
            folder / "named.log",
            cwd=folder,
        )

    def soa(self, site: str) -> int | None:
        """The zone's serial at the BIND of ``site`` (None: no answer)."""
        import dns.exception
        import dns.message
        import dns.query

        query = dns.message.make_query(ZONE, "SOA")
        try:
            reply = dns.query.udp(query, server(site, 53), port=DNS_PORT, timeout=0.5)
        except (OSError, dns.exception.DNSException):
            return None
        return next((int(r.serial) for rrset in reply.answer for r in rrset), None)

    def dns_answer(self, site: str, timeout: float = 0.5) -> list[str] | None:
        """What the BIND at ``site`` answers for the service's name (None: no answer)."""
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode

        query = dns.message.make_query(NAME, "A")
        try:
            reply = dns.query.udp(query, server(site, 53), port=DNS_PORT, timeout=timeout)
        except (OSError, dns.exception.DNSException):
            return None
        if reply.rcode() != dns.rcode.NOERROR:
            return None
        return sorted(str(r) for rrset in reply.answer for r in rrset if rrset.rdtype == 1)

    def stop(self) -> None:
        self.net.close()  # cgroup.kill ends every process of the lab
        sshd = [s.proc for s in self.sshd.values() if s.proc is not None]
        for proc in [*self.etcd.values(), *self.binds.values(), *sshd]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
