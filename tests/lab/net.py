"""The lab's network: who may send to whom, enforced by the kernel.

Every process of the lab lives in a cgroup (v2) of its own, ``failover_lab/<site>/<role>``,
and every packet it sends to a lab address leaves from ``127.88.0.254`` (a ``local``
route for ``127.88.0.0/16`` that names that source). A fault is an nftables rule in the
table ``inet failover_lab``: *packets from this cgroup to that set of addresses are
dropped*. Each rule matches ``ip saddr 127.88.0.0/16`` and a destination set holding only
127.88 addresses, so nothing but the lab's own traffic can ever match it. Loss is a rule
too: ``numgen random`` drops a share of what is sent to a set.

Latency goes through a ``prio`` qdisc on ``lo`` whose fourth band carries ``netem``;
only ``u32`` filters on 127.88 destinations send packets there. It is added only when
``lo`` has no qdisc of its own (``noqueue``), and removed at the end; a kernel without
``sch_prio``/``sch_netem`` has no way to delay packets, and the fault is skipped.

Several labs may run on one machine (``SLOTS``): the first free slot is taken, and slot
N uses ``127.(88+N)`` wherever slot 0 (described here) uses ``127.88``.

``Net.reset()`` (run at start, at exit, on SIGTERM/SIGINT and by the pytest fixture)
deletes the table, the route, the qdisc and the cgroups, whatever state a killed run left.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO
from typing import Any

TABLE = "failover_lab"
# Labs one machine runs at once, each in a slot of its own: slot N takes 127.(88+N)/16,
# the table and cgroup failover_lab_N and its own lock (slot 0 keeps the bare names).
SLOTS = 6
_lock = threading.Lock()
_slot = [0]  # the slot of this process's lab (``Sites``), which ``prefix()`` names


def use_slot(slot: int) -> None:
    _slot[0] = slot


def prefix(slot: int | None = None) -> str:
    """The first two bytes of the lab's addresses: ``127.88`` in slot 0."""
    return f"127.{88 + (_slot[0] if slot is None else slot)}"


def network(slot: int | None = None) -> str:
    return f"{prefix(slot)}.0.0/16"


def table(slot: int) -> str:
    return TABLE if slot == 0 else f"{TABLE}_{slot}"


def lock_path(slot: int) -> Path:
    return Path("/run/failover-lab.lock" if slot == 0 else f"/run/failover-lab-{slot}.lock")


def _run(*cmd: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.stdout


def cgroup_root() -> Path:
    """Where cgroup v2 is mounted (``/sys/fs/cgroup`` or, on hybrid hosts, ``.../unified``)."""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    raise RuntimeError("no cgroup v2 hierarchy is mounted")


def unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the fault lab needs root (nftables, routes, cgroups)"
    for binary in ("nft", "ip", "etcd", "named", "sshd", "ssh-keygen"):
        if not any((Path(d) / binary).exists() for d in ("/usr/sbin", "/usr/bin", "/sbin")):
            return f"the fault lab needs {binary}"
    try:
        cgroup_root()
    except RuntimeError as exc:
        return str(exc)
    return None


class Net:
    def __init__(self, groups: list[str], slot: int | None = None) -> None:
        self.root = cgroup_root()
        self.groups = groups  # "site1/etcd", "site1/watcher", ...
        self.sets: dict[str, set[str]] = {}
        self.netem = False
        self.slot = _slot[0] if slot is None else slot
        self._lockfile: IO[str] | None = None

    @property
    def table(self) -> str:
        return table(self.slot)

    @property
    def network(self) -> str:
        return network(self.slot)

    def cgroup(self, group: str) -> Path:
        return self.root / self.table / group

    def _lab_address(self, address: str) -> str:
        if ipaddress.ip_address(address) not in ipaddress.ip_network(self.network):
            raise ValueError(f"{address} is outside {self.network}")
        return address

    def place(self, pid: int, group: str) -> None:
        with contextlib.suppress(OSError):
            (self.cgroup(group) / "cgroup.procs").write_text(str(pid))

    def members(self, group: str) -> list[int]:
        try:
            text = (self.cgroup(group) / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def setup(self, sets: list[str], slots: list[int] | None = None) -> None:
        """Take the first free slot of ``slots`` and build the lab's network there."""
        self._hold_lock(list(range(SLOTS)) if slots is None else slots)
        self.reset()
        for group in self.groups:
            self.cgroup(group).mkdir(parents=True, exist_ok=True)
        source = f"{prefix(self.slot)}.0.254"
        _run(*f"ip route add local {self.network} dev lo src {source} table local".split())
        decl = "".join(f"  set {name} {{ type ipv4_addr; }}\n" for name in sets)
        _run(
            "nft",
            "-f",
            "-",
            stdin=(
                f"table inet {self.table} {{\n{decl}"
                "  chain out { type filter hook output priority 0; policy accept; }\n}\n"
            ),
        )
        self.sets = {name: set() for name in sets}
        _install_cleanup(self)

    def _hold_lock(self, slots: list[int]) -> None:
        # One lab per slot: a second one's reset would kill the first one's processes.
        for slot in slots:
            lockfile = lock_path(slot).open("a")
            try:
                fcntl.flock(lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lockfile.close()
                continue
            self._lockfile, self.slot = lockfile, slot
            return
        raise RuntimeError(
            f"every fault lab slot {slots} is taken on this machine "
            f"(their locks: {', '.join(str(lock_path(s)) for s in slots)})"
        )

    def add_address(self, address: str) -> None:
        """Put ``address`` on ``lo`` (BIND listens only on an interface's addresses)."""
        _run("ip", "addr", "add", f"{self._lab_address(address)}/32", "dev", "lo")

    def set_addresses(self, name: str, addresses: set[str]) -> None:
        """Make the set ``name`` hold exactly ``addresses`` (hosts come and go)."""
        with _lock:
            old = self.sets[name]
            if addresses == old:
                return
            for verb, items in (("delete", old - addresses), ("add", addresses - old)):
                if items:
                    listed = ", ".join(self._lab_address(a) for a in sorted(items))
                    _run("nft", verb, "element", "inet", self.table, name, f"{{ {listed} }}")
            self.sets[name] = set(addresses)

    def drop(self, group: str, target: str) -> None:
        """Drop every packet a process of ``group`` sends to an address of set ``target``."""
        level = group.count("/") + 2
        rel = self.cgroup(group).relative_to("/sys/fs/cgroup")
        rule = f"ip saddr {self.network} ip daddr @{target} socket cgroupv2 level {level}"
        _run("nft", "add", "rule", "inet", self.table, "out", *rule.split(), f'"{rel}"', "drop")

    def lose(self, target: str, percent: int) -> None:
        """Drop ``percent`` % of the packets any lab process sends to set ``target``, at
        random (the kernel's ``numgen random``: real loss, as netem's ``loss`` would)."""
        rule = f"ip saddr {self.network} ip daddr @{target}"
        if percent < 100:
            rule += f" numgen random mod 100 < {percent}"
        _run("nft", "add", "rule", "inet", self.table, "out", *rule.split(), "drop")

    def delay(self, addresses: set[str], ms: int) -> str | None:
        """Add ``ms`` of latency to packets sent to ``addresses``; why not, when it cannot.

        Never a bare netem on ``lo``: a ``prio`` root whose default bands behave as before,
        and netem on a fourth band that only 127.88 destinations are filtered into."""
        qdisc = f"a{self.slot}:"  # one lab's qdisc, never another slot's
        first = _run("tc", "qdisc", "show", "dev", "lo").split("\n")[0]
        if "noqueue" not in first:
            return f"lo already has a qdisc ({first.strip()}): left alone"
        priomap = "1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"
        try:
            _run(*f"tc qdisc add dev lo root handle {qdisc} prio bands 4 priomap {priomap}".split())
            self.netem = True
            _run(*f"tc qdisc add dev lo parent {qdisc}4 netem delay {ms}ms".split())
            for address in sorted(addresses):
                match = f"u32 match ip dst {self._lab_address(address)}/32 flowid {qdisc}4"
                _run(*f"tc filter add dev lo parent {qdisc} protocol ip {match}".split())
        except RuntimeError as exc:
            self.undelay()
            return f"this kernel cannot delay packets: no tc prio/netem qdisc ({exc})"
        return None

    def flush(self) -> None:
        _run("nft", "flush", "chain", "inet", self.table, "out", check=False)

    def heal(self) -> None:
        self.flush()
        self.undelay()

    def undelay(self) -> None:
        shown = _run("tc", "qdisc", "show", "dev", "lo", check=False)
        if f"qdisc prio a{self.slot}: root" in shown:
            _run("tc", "qdisc", "del", "dev", "lo", "root", check=False)
        self.netem = False

    def close(self) -> None:
        """Remove the lab and give its slot back."""
        self.reset()
        if self in _active:
            _active.remove(self)
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None

    def reset(self) -> None:
        """Remove everything the lab adds to the machine (also what a killed run left)."""
        _run("nft", "delete", "table", "inet", self.table, check=False)
        for _ in range(5):
            if self.network not in _run("ip", "route", "show", "table", "local", check=False):
                break
            _run("ip", "route", "del", "local", self.network, "table", "local", check=False)
        self.undelay()
        for line in _run("ip", "-o", "-4", "addr", "show", "dev", "lo", check=False).splitlines():
            address = line.split()[3]
            if address.startswith(prefix(self.slot) + "."):
                _run("ip", "addr", "del", address, "dev", "lo", check=False)
        base = self.root / self.table
        if not base.exists():
            return
        # Deepest first: a cgroup is removed only once its children are.
        for path in sorted(base.glob("**/"), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                (path / "cgroup.kill").write_text("1")
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


_active: list[Net] = []


def _install_cleanup(net: Net) -> None:
    import atexit

    if not _active:
        atexit.register(_cleanup)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous = signal.getsignal(sig)
            if threading.current_thread() is threading.main_thread():
                signal.signal(sig, _on_signal(previous))
    _active.append(net)


def _cleanup() -> None:
    while _active:
        _active[-1].close()


def _on_signal(previous: Any) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        _cleanup()
        if callable(previous):
            previous(signum, frame)
        raise SystemExit(128 + signum)

    return handler
