"""The embedded provider: a host is a process group on this machine, on its own loopback
address (127.77.x.y), with its files under ``<state_dir>/local/<provider>/``.

It needs no root and no network, which makes it the place to try the toolkit and to
rehearse: a file named ``SUSPENDED`` in the provider's folder makes every call fail the
way a cloud fails a suspended account.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from providers.base import (
    AccountBlocked,
    AccountReport,
    Check,
    ComputeProvider,
    Host,
    HostSpec,
    HostState,
    ProviderError,
    ProviderSettings,
)
from providers.util import fill_placeholders, is_secret_name, pid_alive


class LocalSettings(ProviderSettings):
    type: Literal["local"]
    network: str = Field(
        default="127.77", description="first two octets of the loopback addresses hosts get"
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class LocalProvider(ComputeProvider):
    type = "local"
    Settings = LocalSettings
    vendor = "local"

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
        return Host(
            id=meta["id"],
            provider=self.name,
            name=meta["name"],
            service=meta["service"],
            generation=int(meta["generation"]),
            state=state,
            raw_state=raw,
            reason=reason,
            address=meta["address"],
            zone="loopback",
            created_at=meta["created_at"],
            purpose=meta.get("purpose", "serve"),
            extra={"log": str(host_dir / "log"), "pid": meta.get("pid")},
        )

    def _observe(self, meta: dict[str, Any], host_dir: Path) -> tuple[HostState, str, str | None]:
        if meta.get("destroyed"):
            return HostState.TERMINATED, "destroyed", "destroyed"
        if meta.get("stopped"):
            return HostState.STOPPED, "stopped", "stopped by request"
        pid = meta.get("pid")
        phase = _read_text(host_dir / "phase") or "starting"
        if pid_alive(pid):
            return (HostState.RUNNING if phase == "serving" else HostState.PENDING), phase, None
        status = _read_text(host_dir / "exit")
        if status is None:
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
        with _locked(table.with_suffix(".lock")):
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
                if address in used or not _bindable(address, port):
                    continue
                used[address] = host_id
                _write_json(table, used)
                return address
        raise ProviderError(
            f"no free loopback address left under {self.network}.0.0/16", provider=self.name
        )

    def _free_address(self, address: str) -> None:
        table = Path(self.context.state_dir) / "local" / "addresses.json"
        with _locked(table.with_suffix(".lock")):
            try:
                used: dict[str, str] = json.loads(table.read_text())
            except (FileNotFoundError, ValueError):
                return
            if used.pop(address, None) is not None:
                _write_json(table, used)

    # ----------------------------------------------------------------- interface

    def create_host(self, spec: HostSpec) -> Host:
        self._guard()
        self.hosts_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / "create.lock"):
            for existing in self._all():
                if existing["name"] == spec.name and not existing.get("destroyed"):
                    return self._host(existing)
            host_id = f"h-{uuid.uuid4().hex[:8]}"
            host_dir = self.hosts_dir / host_id
            (host_dir / "root").mkdir(parents=True)
            address = self._allocate_address(host_id, spec.port)
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
            }
            values = {
                "port": str(spec.port),
                "address": address,
                "host_id": host_id,
                "service": spec.service,
                "generation": str(spec.generation),
                "python": shlex.quote(sys.executable),
            }
            (host_dir / "run.sh").write_text(_run_script(spec, values, host_dir))
            (host_dir / "user-data").write_text(spec.user_data)
            env = {
                # The watcher's own credentials (cloud keys, DNS keys, tokens) are not the
                # service's: a host gets only what `run.env` gives it (issue 3).
                **{k: v for k, v in os.environ.items() if not is_secret_name(k)},
                **spec.run.env,
                "FAILOVER_ADDRESS": address,
                "FAILOVER_PORT": str(spec.port),
                "FAILOVER_HOST_ID": host_id,
                "FAILOVER_PROVIDER": self.name,
                "FAILOVER_SERVICE": spec.service,
                "FAILOVER_GENERATION": str(spec.generation),
            }
            for name in ("FAILOVER_FAILPOINT", "FAILOVER_CONFIG", "FAILOVER_STATE_DIR"):
                env.pop(name, None)
            with open(host_dir / "log", "ab") as log:
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", "sh ./run.sh; echo $? > exit"],
                    cwd=host_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            meta["pid"] = proc.pid
            _write_json(host_dir / "host.json", meta)
            return self._host(meta)

    def get_host(self, host_id: str) -> Host | None:
        self._guard()
        meta = self._read(self._host_dir(host_id))
        return self._host(meta) if meta else None

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
        pid = meta.get("pid")
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
        if killed is None:
            return
        host_dir, meta = killed
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
            self.root.mkdir(parents=True, exist_ok=True)
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


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
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
    def fill(command: str) -> str:
        return fill_placeholders(command, values)

    lines = ["#!/bin/sh", "set -e", f"cd {shlex.quote(str(host_dir / 'root'))}"]
    lines.append("echo setup > ../phase")
    lines.extend(fill(c) for c in spec.run.setup)
    lines.append("echo restore > ../phase")
    lines.extend(fill(c) for c in spec.run.restore)
    lines.append("echo serving > ../phase")
    lines.append(f"exec {fill(spec.run.command)}")
    return "\n".join(lines) + "\n"
