"""The ``ssh`` compute provider in the lab: each site's own OpenSSH ``sshd`` on its own
loopback address (``127.88.10N.22``, port 10022), in the cgroup ``siteN/sshd``.

A site whose provider is ``ssh`` lists two machines (``127.88.10N.80`` and ``.81``, each
its own folder under the run's project) reached through that sshd as root, host key
pinned, logged in with the lab's client key. The hosts the provider starts (``setsid``
supervisors, sessions of their own) are moved into ``siteN/hosts`` as they appear, so
the network's faults reach them as they reach a ``local`` host. A suspended ``ssh``
account is what a suspension looks like there: logins refused (``authorized_keys``
moved aside) and the open sessions cut, while the hosts keep running.

Which sites use ``ssh`` is drawn from the seed (``compute``), so a seed replays it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SSH_PORT = 10022
MACHINES = (80, 81)  # last byte of each machine's address at its site
COMPUTE = ("local", "ssh")

SSHD_CONFIG = """\
Port {port}
ListenAddress {address}
HostKey {dir}/host_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
LogLevel INFO
MaxStartups 100:30:200
MaxSessions 100
"""


def compute(seed: int, sites: tuple[str, ...]) -> dict[str, str]:
    """The provider type of each site in schedule ``seed`` (its own draw: the faults'
    draws, and so every older seed's faults, stay as they were)."""
    rng = random.Random(f"compute-{seed}")
    return {site: rng.choice(COMPUTE) for site in sites}


def keygen(path: Path) -> str:
    path.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "failover-lab", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_suffix(".pub").read_text().strip()


class SiteSshd:
    """One site's sshd (kept across schedules, as the etcd members and BINDs are)."""

    def __init__(self, folder: Path, address: str) -> None:
        self.dir, self.address = folder, address
        self.proc: subprocess.Popen[bytes] | None = None
        self.host_key = ""

    @property
    def keys(self) -> Path:
        return self.dir / "authorized_keys"

    def prepare(self, client_key: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # sshd refuses to start as root without its privilege-separation folder.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.host_key = keygen(self.dir / "host_ed25519")
        self.keys.write_text(client_key + "\n")
        (self.dir / "sshd_config").write_text(
            SSHD_CONFIG.format(port=SSH_PORT, address=self.address, dir=self.dir)
        )

    def command(self) -> list[str]:
        binary = shutil.which("sshd") or "/usr/sbin/sshd"
        return [binary, "-D", "-f", str(self.dir / "sshd_config"), "-E", str(self.dir / "log")]

    def answers(self) -> bool:
        try:
            with socket.create_connection((self.address, SSH_PORT), timeout=0.5) as sock:
                return sock.recv(8).startswith(b"SSH-")
        except OSError:
            return False

    def suspend(self) -> None:
        """Refuse every login and cut the sessions already open (the provider keeps
        one connection per machine): the account is closed, its hosts run on."""
        with contextlib.suppress(FileNotFoundError):
            self.keys.rename(self.keys.with_suffix(".suspended"))
        if self.proc is None:
            return
        for pid in _children(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def resume(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.keys.with_suffix(".suspended").rename(self.keys)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def provider(site: str, sshd: SiteSshd, client: Path, project: Path, server: Any) -> dict[str, Any]:
    """The ``type: ssh`` provider named ``site``, its machines reached through ``sshd``."""
    return {
        "name": site,
        "type": "ssh",
        "identity_file": str(client),
        "python": sys.executable,
        "supervisor": "pidfile",
        "connect_timeout": "2s",
        "timeout": "20s",
        "machines": [
            {
                "address": server(site, last),
                "ssh": f"root@{sshd.address}:{SSH_PORT}",
                "host_key": sshd.host_key,
                "dir": str(project / "ssh" / site / f"m{last}"),
            }
            for last in MACHINES
        ],
    }


def host_records(project: Path) -> list[dict[str, Any]]:
    """The hosts of ``ssh`` sites, read from the machines' folders as the provider does
    (a destroyed host's folder is gone)."""
    out = []
    for path in (project / "ssh").glob("*/m*/*/host.json"):
        with contextlib.suppress(OSError, ValueError):
            meta = dict(json.loads(path.read_text()))
            pid = (
                (path.parent / "pid").read_text().strip() if (path.parent / "pid").exists() else ""
            )
            meta.update(
                provider=path.parent.parent.parent.name,
                pid=int(pid) if pid.isdigit() else None,
                stopped=(path.parent / "stopped").exists(),
            )
            out.append(meta)
    return out


def place_hosts(net: Any, records: list[dict[str, Any]]) -> None:
    """Move each ssh host (a session of its own under its site's sshd, led by its
    supervisor) into its site's ``hosts`` cgroup, where the network's faults reach it."""
    for meta in records:
        if not meta.get("ssh") or not meta.get("pid"):
            continue
        for pid in net.members(f"{meta['provider']}/sshd"):
            with contextlib.suppress(OSError):
                if os.getsid(pid) == meta["pid"]:
                    net.place(pid, f"{meta['provider']}/hosts")


def wait_answering(servers: list[SiteSshd], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(s.answers() for s in servers):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the lab's sshd did not answer (logs in {servers[0].dir.parent})")
        time.sleep(0.2)
