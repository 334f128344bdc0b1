"""The embedded provider: a host is a process group on this machine, on its own loopback
address (127.77.x.y), with its files under ``<state_dir>/local/<provider>/``.

It needs no root and no network, which makes it the place to try the toolkit and to
rehearse: a file named ``SUSPENDED`` in the provider's folder makes every call fail the
way a cloud fails a suspended account.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from typing import BinaryIO
from typing import Literal

from pydantic import Field

from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import Check
from providers.base import ComputeProvider
from providers.base import ExecResult
from providers.base import Host
from providers.base import HostSpec
from providers.base import HostState
from providers.base import NotFound
from providers.base import ProviderError
from providers.base import ProviderSettings
from providers.base import TransientError
from providers.util import locked
from providers.util import open_private
from providers.util import pid_alive
from providers.util import private_dir
from providers.util import run_script
from providers.util import write_private

# What a host inherits from the watcher: enough to run programs and find Python, never
# its credentials whatever they are called (a deny-list of names let DATABASE_URL,
# MYSQL_PWD and CI_JOB_JWT through: issue 11). `run.env` gives the service the rest.
_INHERITED = frozenset(
    {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "PYTHONPATH"}
)


def _failpoint(point: str) -> None:
    # Read only here, at the one moment it names: free when unset.
    if os.environ.get("FAILOVER_FAILPOINT") == point:
        os._exit(137)


class LocalSettings(ProviderSettings):
    type: Literal["local"]
    network: str = Field(
        default="127.77", description="first two octets of the loopback addresses hosts get"
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_json(path: Path, data: dict[str, Any], *, durable: bool = False) -> None:
    write_private(path, json.dumps(data, indent=2), durable=durable)


class LocalProvider(ComputeProvider, kind="local", settings=LocalSettings, vendor="local"):
    # Everything that changes lives in files, never on the instance (three paths and a
    # network prefix, set once): separate instances in one process would race exactly
    # as threads sharing one do. Files are replaced atomically (write_private), and the
    # read-modify-writes (creates, the address table) hold flock locks, which exclude
    # threads too because each holder opens the lock file itself.
    shared_across_threads = True

    def __init__(self, settings: ProviderSettings, context: Any) -> None:
        super().__init__(settings, context)
        assert isinstance(settings, LocalSettings)
        self.root = Path(context.state_dir) / "local" / self.name
        self.hosts_dir = self.root / "hosts"
        self.network = settings.network

    # ----------------------------------------------------------------- helpers

    def _guard(self) -> None:
        if (self.root / "SUSPENDED").exists():
            raise AccountBlocked(
                "account suspended by the provider",
                provider=self.name,
                code="AccountSuspended",
                hint=f"remove {self.root / 'SUSPENDED'} to restore the account",
            )

    def _host_dir(self, host_id: str) -> Path:
        if not re.fullmatch(r"h-[0-9a-f]{8}", host_id):
            raise ProviderError(f"{host_id!r} is not a local host id", provider=self.name)
        return self.hosts_dir / host_id

    def _read(self, host_dir: Path) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((host_dir / "host.json").read_text())
            return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ProviderError(
                f"host record {host_dir / 'host.json'} is unreadable: {exc}", provider=self.name
            ) from None

    def _host(self, meta: dict[str, Any]) -> Host:
        host_dir = self.hosts_dir / meta["id"]
        state, raw, reason = self._observe(meta, host_dir)
        return Host.from_record(
            meta,
            self.name,
            state,
            raw,
            reason,
            address=meta["address"],
            zone="loopback",
            extra={"log": str(host_dir / "log"), "pid": self._pid(meta)},
        )

    def _pid(self, meta: dict[str, Any]) -> int | None:
        """The host's process group: recorded once started, or, for a create cut short
        between starting it and recording it, written by the host's own shell first."""
        if meta.get("pid"):
            return int(meta["pid"])
        text = _read_text(self.hosts_dir / meta["id"] / "pid")
        return int(text) if text and text.isdigit() and int(text) > 0 else None

    def _observe(self, meta: dict[str, Any], host_dir: Path) -> tuple[HostState, str, str | None]:
        if meta.get("destroyed"):
            return HostState.TERMINATED, "destroyed", "destroyed"
        if meta.get("stopped"):
            return HostState.STOPPED, "stopped", "stopped by request"
        pid = self._pid(meta)
        phase = _read_text(host_dir / "phase") or "starting"
        if pid_alive(pid):
            return (HostState.RUNNING if phase == "serving" else HostState.PENDING), phase, None
        status = _read_text(host_dir / "exit")
        if pid is None and meta.get("state") == "creating":
            reason = "its creation was cut short before the process started"
        elif status is None:
            reason = "the process group is gone (killed)"
        elif phase in ("setup", "restore"):
            reason = f"{phase} failed with exit status {status}; see {host_dir / 'log'}"
        else:
            reason = f"the service exited with status {status}; see {host_dir / 'log'}"
        return HostState.STOPPED, "exited", reason

    def _allocate_address(self, host_id: str, port: int) -> str:
        """One loopback address per host, unique within this state directory, and not
        already bound on ``port`` by anything else on the machine."""
        table = Path(self.context.state_dir) / "local" / "addresses.json"
        with locked(table.with_suffix(".lock")):
            try:
                used: dict[str, str] = json.loads(table.read_text())
            except (FileNotFoundError, ValueError):
                used = {}
            # Start where this state directory hashes to, so parallel test runs and several
            # projects on one machine rarely even try the same addresses.
            seed = int(hashlib.sha256(str(self.context.state_dir).encode()).hexdigest(), 16)
            start = seed % (254 * 254)
            for offset in range(254 * 254):
                n = (start + offset) % (254 * 254)
                address = f"{self.network}.{n // 254 + 1}.{n % 254 + 1}"
                if address in used:
                    continue
                if not _bindable(address, port):
                    self._port_taken(port)
                    continue
                used[address] = host_id
                _write_json(table, used)
                return address
        raise ProviderError(
            f"no free loopback address left under {self.network}.0.0/16", provider=self.name
        )

    def _port_taken(self, port: int) -> None:
        holder = _wildcard_holder(port)
        if holder:
            # It shares the port with every loopback address: scanning them cannot help,
            # and "no free address left" sent people looking in the wrong place (issue 11).
            raise ProviderError(
                f"port {port} is already in use: something listens on {holder}:{port}, "
                f"which takes the port on every address under {self.network}.0.0/16",
                provider=self.name,
                hint=f"stop what listens on port {port}, or give the service another port",
            )

    def _free_address(self, address: str) -> None:
        table = Path(self.context.state_dir) / "local" / "addresses.json"
        with locked(table.with_suffix(".lock")):
            try:
                used: dict[str, str] = json.loads(table.read_text())
            except (FileNotFoundError, ValueError):
                return
            if used.pop(address, None) is not None:
                _write_json(table, used)

    # ----------------------------------------------------------------- interface

    def create_host(self, spec: HostSpec) -> Host:
        self._guard()
        private_dir(self.hosts_dir)
        with locked(self.root / "create.lock"):
            for existing in self._all():
                if existing["name"] != spec.name or existing.get("destroyed"):
                    continue
                if existing.get("state") != "creating":
                    return self._host(existing)
                finished = self._finish_creating(existing)
                if finished is not None:
                    return finished
            host_id = f"h-{uuid.uuid4().hex[:8]}"
            address = self._allocate_address(host_id, spec.port)
            host_dir = self.hosts_dir / host_id
            try:
                meta = self._record_intent(spec, host_id, address)
                proc = self._start(host_dir, self._environment(spec, host_id, address))
            except (OSError, ValueError) as exc:
                # A full disk, an environment the kernel refuses: nothing was started.
                self._discard(host_dir, address)
                raise ProviderError(
                    f"cannot start host {host_id}: {exc}", provider=self.name
                ) from None
            except BaseException:
                self._discard(host_dir, address)
                raise
            _failpoint("local:started")
            meta["pid"] = proc.pid
            meta["state"] = "created"
            _write_json(host_dir / "host.json", meta, durable=True)
            return self._host(meta)

    def _record_intent(self, spec: HostSpec, host_id: str, address: str) -> dict[str, Any]:
        """The host's folder and its record, on disk before its process starts: a crash
        in between leaves a host that `list_hosts` reports and `destroy_host` removes,
        never one nothing tracks (issue 11)."""
        host_dir = self.hosts_dir / host_id
        private_dir(host_dir / "root")
        meta: dict[str, Any] = {
            "id": host_id,
            "name": spec.name,
            "service": spec.service,
            "generation": spec.generation,
            "purpose": spec.purpose,
            "address": address,
            "port": spec.port,
            "created_at": _now(),
            "tags": spec.tags,
            "state": "creating",
        }
        for name in ("pid", "phase", "exit", "log"):
            os.close(open_private(host_dir / name))
        _write_json(host_dir / "host.json", meta, durable=True)
        values = {
            "port": str(spec.port),
            "address": address,
            "host_id": host_id,
            "service": spec.service,
            "generation": str(spec.generation),
            "python": shlex.quote(sys.executable),
        }
        write_private(host_dir / "run.sh", _run_script(spec, values, host_dir))
        write_private(host_dir / "user-data", spec.user_data)
        return meta

    def _environment(self, spec: HostSpec, host_id: str, address: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _INHERITED or k.startswith("LC_")}
        env.update(spec.run.env)
        for name in ("FAILOVER_FAILPOINT", "FAILOVER_CONFIG", "FAILOVER_STATE_DIR"):
            env.pop(name, None)
        env.update(
            FAILOVER_ADDRESS=address,
            FAILOVER_PORT=str(spec.port),
            FAILOVER_HOST_ID=host_id,
            FAILOVER_PROVIDER=self.name,
            FAILOVER_SERVICE=spec.service,
            FAILOVER_GENERATION=str(spec.generation),
        )
        # What a command run on the host later (a backup) starts with: the same
        # environment the service got, as a cloud host keeps it in its unit file.
        _write_json(self.hosts_dir / host_id / "env.json", env)
        return env

    def _start(self, host_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(open_private(host_dir / "log"), "ab") as log:
            # The host's shell writes its own pid first: a creator killed right after
            # starting it cannot leave a process group nobody can find.
            return subprocess.Popen(
                ["/bin/sh", "-c", "echo $$ > pid; sh ./run.sh; echo $? > exit"],
                cwd=host_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def _finish_creating(self, meta: dict[str, Any]) -> Host | None:
        """A record left "creating" by a creator that died before its last write (the
        caller holds the create lock, so no creator is at work): the host it started is
        recorded and returned if it runs, else the record is discarded (None)."""
        host_dir = self.hosts_dir / meta["id"]
        pid = self._pid(meta)
        if pid_alive(pid):
            meta["pid"] = pid
            meta["state"] = "created"
            _write_json(host_dir / "host.json", meta, durable=True)
            return self._host(meta)
        self._kill(meta)
        self._tombstone(host_dir, meta)
        return None

    def _discard(self, host_dir: Path, address: str) -> None:
        """Undo a create that failed: whatever its shell started dies with its record."""
        self._kill({"id": host_dir.name})
        subprocess.run(["rm", "-rf", str(host_dir)], check=False)
        self._free_address(address)

    def get_host(self, host_id: str) -> Host | None:
        self._guard()
        meta = self._read(self._host_dir(host_id))
        return self._host(meta) if meta else None

    batches_lookups = True

    def get_hosts(self, host_ids: list[str]) -> dict[str, Host | None]:
        self._guard()
        metas = {host_id: self._read(self._host_dir(host_id)) for host_id in host_ids}
        return {host_id: self._host(m) if m else None for host_id, m in metas.items()}

    def _all(self) -> list[dict[str, Any]]:
        if not self.hosts_dir.exists():
            return []
        out = []
        for host_dir in sorted(self.hosts_dir.iterdir()):
            meta = self._read(host_dir)
            if meta:
                out.append(meta)
        return out

    def list_hosts(self, service: str) -> list[Host]:
        self._guard()
        return [
            self._host(m) for m in self._all() if m["service"] == service and not m.get("destroyed")
        ]

    def _kill(self, meta: dict[str, Any]) -> None:
        pid = self._pid(meta)
        if not pid:
            return
        try:
            os.killpg(int(pid), signal.SIGTERM)
            os.killpg(int(pid), signal.SIGCONT)  # a frozen host must wake up to die
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGKILL)

    def _kill_host(self, host_id: str) -> tuple[Path, dict[str, Any]] | None:
        """End the processes of a host that was not destroyed; None when there is none."""
        self._guard()
        host_dir = self._host_dir(host_id)
        meta = self._read(host_dir)
        if meta is not None and meta.get("state") == "creating":
            # Its creator may still be at work: wait for it to record what it started.
            with locked(self.root / "create.lock"):
                meta = self._read(host_dir)
        if meta is None or meta.get("destroyed"):
            return None
        self._kill(meta)
        return host_dir, meta

    def stop_host(self, host_id: str) -> None:
        killed = self._kill_host(host_id)
        if killed is None:
            return
        host_dir, meta = killed
        meta["stopped"] = True
        _write_json(host_dir / "host.json", meta)

    def destroy_host(self, host_id: str) -> None:
        killed = self._kill_host(host_id)
        if killed is not None:
            self._tombstone(*killed)

    def _tombstone(self, host_dir: Path, meta: dict[str, Any]) -> None:
        # A tombstone stays so that get_host answers "terminated" rather than "never was".
        for child in ("root", "run.sh", "user-data"):
            path = host_dir / child
            if path.is_dir():
                subprocess.run(["rm", "-rf", str(path)], check=False)
            else:
                path.unlink(missing_ok=True)
        meta["destroyed"] = True
        meta["destroyed_at"] = _now()
        _write_json(host_dir / "host.json", meta)
        self._free_address(meta["address"])

    def exec_on_host(
        self,
        host_id: str,
        command: str,
        *,
        stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        self._guard()
        host_dir = self._host_dir(host_id)
        meta = self._read(host_dir)
        if meta is None or meta.get("destroyed"):
            raise NotFound(f"no host {host_id}", provider=self.name)
        if meta.get("stopped") or not pid_alive(self._pid(meta)):
            raise ProviderError(f"host {host_id} is not running", provider=self.name)
        try:
            env: dict[str, str] = json.loads((host_dir / "env.json").read_text())
        except (OSError, ValueError):
            raise ProviderError(
                f"host {host_id} has no environment record (made by an older failover)",
                provider=self.name,
            ) from None
        return _stream(
            ["/bin/sh", "-c", command],
            cwd=host_dir / "root",
            env=env,
            stdin=stdin,
            stdout=stdout,
            timeout=timeout,
            provider=self.name,
        )

    def check_account(self) -> AccountReport:
        suspended = (self.root / "SUSPENDED").exists()
        checks = [
            Check(
                "account",
                not suspended,
                "suspended (SUSPENDED file present)" if suspended else "active",
            ),
        ]
        try:
            private_dir(self.root)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            checks.append(Check("state folder", True, str(self.root)))
        except OSError as exc:
            checks.append(Check("state folder", False, f"{self.root}: {exc}"))
        ok = _bindable(f"{self.network}.254.254", 0)
        checks.append(
            Check(
                "loopback",
                ok,
                f"can bind {self.network}.x.y"
                if ok
                else f"cannot bind addresses in {self.network}.0.0/16",
            )
        )
        if suspended:
            return AccountReport("blocked", checks, "account suspended by the provider")
        bad = [c for c in checks if not c.ok]
        return AccountReport(
            "unknown" if bad else "available", checks, bad[0].detail if bad else None
        )


_BLOCK = 256 * 1024
_TAIL = 8 * 1024


class _Piped:
    """One command's process group and the threads that feed its stdin and keep the
    tail of its stderr; an error of the stdin stream kills the group."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.errors: list[BaseException] = []
        self.tail = bytearray()
        self.timed_out = threading.Event()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def expire(self) -> None:
        self.timed_out.set()
        self.kill()

    def feed(self, source: BinaryIO) -> None:
        sink = self.proc.stdin
        assert sink is not None
        try:
            while block := source.read(_BLOCK):
                sink.write(block)
        except BrokenPipeError:
            pass  # the command stopped reading: its exit status says why
        except BaseException as exc:
            self.errors.append(exc)
            self.kill()
        finally:
            with contextlib.suppress(OSError):
                sink.close()

    def drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while block := os.read(self.proc.stderr.fileno(), 4096):
            self.tail.extend(block)
            del self.tail[:-_TAIL]


def _stream(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdin: BinaryIO | None,
    stdout: BinaryIO | None,
    timeout: float | None,
    provider: str,
) -> ExecResult:
    """Run ``argv`` with ``stdin`` fed and ``stdout`` filled block by block. An error of
    either stream (a checksum that does not match, a store that failed) kills the
    command's process group and is raised here, so a half-fed restore never finishes."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    piped = _Piped(proc)
    threads = [threading.Thread(target=piped.drain_stderr, daemon=True)]
    if stdin is not None:
        threads.append(threading.Thread(target=piped.feed, args=(stdin,), daemon=True))
    timer = threading.Timer(timeout or 0, piped.expire)
    timer.daemon = True
    if timeout:
        timer.start()
    for thread in threads:
        thread.start()
    try:
        if stdout is not None:
            assert proc.stdout is not None
            while block := os.read(proc.stdout.fileno(), _BLOCK):
                stdout.write(block)
    except BaseException:
        piped.kill()
        raise
    finally:
        proc.wait()
        timer.cancel()
        for thread in threads:
            thread.join()
    if piped.errors:
        raise piped.errors[0]
    if piped.timed_out.is_set():
        raise TransientError(f"the command did not finish within {timeout:g}s", provider=provider)
    return ExecResult(proc.returncode, piped.tail.decode("utf-8", "replace"))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _wildcard_holder(port: int) -> str | None:
    """``0.0.0.0`` or ``::`` when a socket listens on ``port`` on every address of this
    machine (read from /proc/net/tcp*; None where there is no /proc)."""
    for table, wildcard, name in (("tcp", "00000000", "0.0.0.0"), ("tcp6", "0" * 32, "[::]")):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and address == wildcard and int(hex_port, 16) == port:
                return name
    return None


def _bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                return False
            raise
    return True


def _run_script(spec: HostSpec, values: dict[str, str], host_dir: Path) -> str:
    return run_script(spec, values, str(host_dir / "root"))
