"""Plain machines over SSH (``type: ssh``): servers you rent or own, listed in the config.

A host is the service started on one machine of the list that does not already serve
it: its files under ``~/.failover/<service>/`` there (the same run script the local
provider writes), run by a supervisor detached from the SSH session: a transient
systemd unit when the machine runs systemd (a system unit as root, ``systemd-run
--user`` otherwise), else a small ``setsid`` supervisor with a pid file. Everything the
provider knows about a host is read back from those files and the process, so
``list_hosts`` rebuilds the picture from the machines alone.

Host keys are pinned (``host_key`` or a ``known_hosts`` file, ``@cert-authority`` and
``@revoked`` included); a key that does not match ends the connection during the key
exchange, before a login or a command is sent. asyncssh is imported lazily (``[ssh]``).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
import uuid
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import BinaryIO
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from providers._ssh import START
from providers._ssh import STATUS
from providers._ssh import STOP
from providers._ssh import SUPERVISE
from providers._ssh import Connections
from providers._ssh import HostKeyMismatch
from providers._ssh import Machine
from providers._ssh import env_file
from providers._ssh import parse_endpoint
from providers._ssh import parse_status
from providers._ssh import parse_statuses
from providers._ssh import shell_path
from providers._ssh import status_script
from providers._ssh import upload_script
from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import CapacityError
from providers.base import Check
from providers.base import ComputeProvider
from providers.base import Duration
from providers.base import ExecResult
from providers.base import Host
from providers.base import HostSpec
from providers.base import HostState
from providers.base import NotFound
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import ProviderSettings
from providers.base import TransientError
from providers.ssh_hostkey import normalize_host_key
from providers.util import answers
from providers.util import run_script


class SshMachine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(min_length=1, description="where the service answers (probes, DNS)")
    name: str | None = Field(default=None, description="a label for messages (default: address)")
    ssh: str | None = Field(default=None, description="USER@HOST[:PORT] (default root@ADDRESS:22)")
    host_key: str | None = Field(default=None, description='pinned key: "ssh-ed25519 AAAA..."')
    known_hosts: str | None = Field(default=None, description="a known_hosts file to check against")
    dir: str | None = Field(default=None, description="folder for the hosts (default: provider's)")

    @field_validator("ssh")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            parse_endpoint(value, "")
        return value

    @field_validator("host_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else normalize_host_key(value)


class SshSettings(ProviderSettings):
    type: Literal["ssh"]
    machines: list[SshMachine] = Field(min_length=1)
    identity_file: str | None = Field(default=None, description="private key (default: agent)")
    known_hosts: str | None = Field(default=None, description="for machines without their own")
    dir: str = Field(default="~/.failover", description="where hosts live on the machines")
    python: str = Field(default="python3", description="what {python} is on the machines")
    supervisor: Literal["auto", "systemd", "pidfile"] = "auto"
    connect_timeout: Duration = Field(default=10.0, description="to connect and log in")
    timeout: Duration = Field(default=60.0, description="deadline of one call on one machine")

    @model_validator(mode="after")
    def _pinned(self) -> SshSettings:
        seen: set[str] = set()
        for i, m in enumerate(self.machines):
            if not (m.host_key or m.known_hosts or self.known_hosts):
                raise ValueError(
                    f"machines.{i} ({m.address}): no host key pinned; set host_key (the line "
                    "`ssh-keyscan HOST` prints, checked out of band) or known_hosts. A first "
                    "connection is never trusted blindly"
                )
            for label in {m.address, m.name or m.address}:
                if label in seen:
                    raise ValueError(f"machines.{i}: {label} is listed twice")
                seen.add(label)
        return self


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SshProvider(ComputeProvider, kind="ssh", settings=SshSettings):
    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        assert isinstance(settings, SshSettings)
        self.s = settings
        self.machines = [
            Machine(
                name=m.name or m.address,
                address=m.address,
                endpoint=parse_endpoint(m.ssh, m.address),
                host_key=m.host_key,
                known_hosts=m.known_hosts or (None if m.host_key else settings.known_hosts),
                dir=m.dir or settings.dir,
            )
            for m in settings.machines
        ]
        self.net = Connections(self.name, self._options)

    def _options(self, machine: Machine) -> dict[str, Any]:
        from providers._ssh import known_hosts_arg

        options: dict[str, Any] = {
            "known_hosts": known_hosts_arg(machine),
            "config": None,  # ~/.ssh/config must not change what the pin means
            "preferred_auth": "publickey",
            "connect_timeout": self.s.connect_timeout,
            "login_timeout": self.s.connect_timeout,
            "keepalive_interval": 15,
        }
        if self.s.identity_file:
            options["client_keys"] = [self.s.identity_file]
            options["agent_path"] = None
        return options

    # ----------------------------------------------------------------- helpers

    def _machine(self, host_id: str) -> tuple[Machine, str, str]:
        """``ADDRESS/SERVICE/NONCE`` -> (machine, service, id)."""
        address, _, rest = host_id.partition("/")
        service, _, nonce = rest.partition("/")
        for m in self.machines:
            if m.address == address and service and nonce:
                return m, service, host_id
        raise NotFound(f"{host_id!r} is not a host of a listed machine", provider=self.name)

    def _gather(
        self, machines: list[Machine], call: Callable[[Machine], Awaitable[Any]]
    ) -> list[Any]:
        """``call(machine)`` on every machine at once; each result or its ProviderError."""

        async def every() -> list[Any]:
            return list(await asyncio.gather(*(call(m) for m in machines), return_exceptions=True))

        results = self.net.run(every())
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, ProviderError):
                raise r
        return results

    async def _status(self, machine: Machine, service: str) -> dict[str, str]:
        status, out, err = await self.net.sh(
            machine, STATUS.format(dir=machine.service_dir(service)), self.s.timeout
        )
        if status != 0:
            raise ProviderError(
                f"{machine.label()}: reading the host failed (exit {status}): {err.strip()}",
                provider=self.name,
            )
        return parse_status(out)

    def _host(self, machine: Machine, info: dict[str, str]) -> Host | None:
        if "meta" not in info:
            return None
        try:
            meta = json.loads(info["meta"])
            # A folder without these is not a host this provider made.
            missing = [k for k in ("id", "name", "service", "generation") if k not in meta]
            if missing:
                raise KeyError(", ".join(missing))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(
                f"{machine.label()}: its host.json under {machine.dir} is unreadable ({exc})",
                provider=self.name,
            ) from None
        state, raw, reason = _observe(
            info, f"{machine.dir}/{meta['service']}/log on {machine.name}"
        )
        return Host.from_record(
            meta,
            self.name,
            state,
            raw,
            reason,
            address=machine.address,
            zone=machine.name,
            extra={"machine": machine.name, "ssh": str(machine.endpoint), "pid": info.get("pid")},
        )

    # ----------------------------------------------------------------- interface

    def create_host(self, spec: HostSpec) -> Host:
        results = self._gather(self.machines, lambda m: self._status(m, spec.service))
        free: list[tuple[Machine, bool]] = []
        failures: list[ProviderError] = []
        for machine, result in zip(self.machines, results, strict=True):
            if isinstance(result, ProviderError):
                self.context.log(f"{self.name}: {result.message}; trying the next machine")
                failures.append(result)
                continue
            host = self._host(machine, result)
            if host is not None and host.name == spec.name:
                if result.get("pid") or result.get("exit") or result.get("stopped"):
                    return host
                return self._start(machine, spec, host.id)  # files there, never started
            if host is None:
                free.append((machine, False))
            elif host.state.gone:
                # A stopped or dead host of the service: its folder is reused, after the
                # machines that hold nothing of this service.
                free.append((machine, True))
            else:
                failures.append(
                    CapacityError(
                        f"{machine.label()}: already serves {spec.service} ({host.id})",
                        provider=self.name,
                    )
                )
        free.sort(key=lambda pair: pair[1])
        for machine, replace in free:
            try:
                return self._create_on(machine, spec, replace)
            except (TransientError, CapacityError, HostKeyMismatch, AccountBlocked) as exc:
                self.context.log(f"{self.name}: {exc.message}; trying the next machine")
                failures.append(exc)
        raise self._none_took(spec, failures)

    def _none_took(self, spec: HostSpec, failures: list[ProviderError]) -> ProviderError:
        detail = "; ".join(f.message for f in failures) or "no machine listed"
        what = f"no machine could take {spec.service}: {detail}"
        kinds = {type(f) for f in failures}
        last = failures[-1] if failures else None
        hint = last.hint if last else None
        if kinds == {AccountBlocked}:
            return AccountBlocked(what, provider=self.name, code="PermissionDenied", hint=hint)
        for f in failures:
            if isinstance(f, HostKeyMismatch):
                return HostKeyMismatch(what, provider=self.name, code=f.code, hint=f.hint)
        if TransientError in kinds:
            return TransientError(what, provider=self.name, hint=hint)
        return CapacityError(what, provider=self.name, hint="free a machine or list another")

    def _create_on(self, machine: Machine, spec: HostSpec, replace: bool) -> Host:
        if answers(machine.address, spec.port):
            raise CapacityError(
                f"{machine.label()}: port {spec.port} is taken by something else",
                provider=self.name,
            )
        host_id = f"{machine.address}/{spec.service}/{uuid.uuid4().hex[:8]}"
        values = {
            "port": str(spec.port),
            "address": machine.address,
            "host_id": host_id,
            "service": spec.service,
            "generation": str(spec.generation),
            "python": self.s.python,
        }
        env = {
            **spec.run.env,
            "FAILOVER_ADDRESS": machine.address,
            "FAILOVER_PORT": str(spec.port),
            "FAILOVER_HOST_ID": host_id,
            "FAILOVER_PROVIDER": self.name,
            "FAILOVER_SERVICE": spec.service,
            "FAILOVER_GENERATION": str(spec.generation),
        }
        meta = {
            "id": host_id,
            "name": spec.name,
            "service": spec.service,
            "generation": spec.generation,
            "purpose": spec.purpose,
            "address": machine.address,
            "port": spec.port,
            "created_at": _now(),
            "tags": spec.tags,
        }
        files = {
            "run.sh": run_script(spec, values, "."),
            "supervise.sh": SUPERVISE,
            "env": env_file(env),
            "user-data": spec.user_data,
            "id": host_id,
            "host.json": json.dumps(meta),
        }
        script = upload_script(machine.service_dir(spec.service), files, replace)
        self._must(machine, script, "uploading the host's files")
        return self._start(machine, spec, host_id)

    def _start(self, machine: Machine, spec: HostSpec, host_id: str) -> Host:
        unit = f"failover-{spec.service}-{host_id.rsplit('/', 1)[1]}"
        script = START.format(
            dir=machine.service_dir(spec.service),
            pref=shlex.quote(self.s.supervisor),
            unit=shlex.quote(unit),
        )
        self._must(machine, script, "starting the service")
        host = self._host(machine, self.net.run(self._status(machine, spec.service)))
        if host is None or host.id != host_id:
            raise ProviderError(f"{machine.label()}: the host vanished while starting")
        return host

    def _must(self, machine: Machine, script: str, what: str) -> str:
        status, out, err = self.net.run(self.net.sh(machine, script, self.s.timeout))
        if status != 0:
            raise TransientError(
                f"{machine.label()}: {what} failed (exit {status}): {err.strip()[-500:]}",
                provider=self.name,
            )
        return out

    def get_host(self, host_id: str) -> Host | None:
        try:
            machine, service, _ = self._machine(host_id)
        except NotFound:
            return None
        host = self._host(machine, self.net.run(self._status(machine, service)))
        return host if host is not None and host.id == host_id else None

    batches_lookups = True
    capacity_per_service = True

    def get_hosts(self, host_ids: list[str]) -> dict[str, Host | None]:
        """A round's look-up: one script per machine for all the hosts asked about
        there, the machines at once. The hosts of a machine that did not answer are
        left out (the round cannot tell about them); when none answered, its error is
        raised."""
        wanted: dict[str, list[tuple[str, str]]] = {}
        out: dict[str, Host | None] = {}
        for host_id in host_ids:
            try:
                machine, service, _ = self._machine(host_id)
            except NotFound:
                out[host_id] = None
                continue
            wanted.setdefault(machine.address, []).append((host_id, service))
        machines = [m for m in self.machines if m.address in wanted]
        results = self._gather(
            machines, lambda m: self._statuses(m, [s for _, s in wanted[m.address]])
        )
        failed = [r for r in results if isinstance(r, ProviderError)]
        if failed and len(failed) == len(machines):
            raise failed[0]
        for machine, result in zip(machines, results, strict=True):
            if isinstance(result, ProviderError):
                self.context.log(f"{self.name}: {result}")
                continue
            for (host_id, _), info in zip(wanted[machine.address], result, strict=True):
                host = self._host(machine, info)
                out[host_id] = host if host is not None and host.id == host_id else None
        return out

    async def _statuses(self, machine: Machine, services: list[str]) -> list[dict[str, str]]:
        script = status_script([machine.service_dir(s) for s in services])
        status, out, err = await self.net.sh(machine, script, self.s.timeout)
        try:
            if status != 0:
                raise ValueError(f"exit {status}: {err.strip()}")
            return parse_statuses(out, len(services))
        except ValueError as exc:
            raise ProviderError(
                f"{machine.label()}: reading the hosts failed ({exc})", provider=self.name
            ) from None

    def list_hosts(self, service: str) -> list[Host]:
        results = self._gather(self.machines, lambda m: self._status(m, service))
        hosts = [
            h
            for m, r in zip(self.machines, results, strict=True)
            if not isinstance(r, ProviderError) and (h := self._host(m, r)) is not None
        ]
        failed = [r for r in results if isinstance(r, ProviderError)]
        # A machine that does not answer must not hide the hosts the others hold; with
        # nothing found, though, "none" would be a guess, so the error is raised.
        if failed and not hosts:
            raise failed[0]
        for f in failed:
            self.context.log(f"{self.name}: {f}")
        return hosts

    def _stop(self, host_id: str, remove: bool) -> None:
        machine, service, _ = self._machine(host_id)
        unit = f"failover-{service}-{host_id.rsplit('/', 1)[1]}"
        script = STOP.format(
            dir=machine.service_dir(service),
            id=shlex.quote(host_id),
            unit=shlex.quote(unit),
            remove=1 if remove else 0,
        )
        self._must(machine, script, "destroying the host" if remove else "stopping the host")

    def stop_host(self, host_id: str) -> None:
        self._stop(host_id, remove=False)

    def destroy_host(self, host_id: str) -> None:
        try:
            self._stop(host_id, remove=True)
        except NotFound:
            return

    def check_account(self) -> AccountReport:
        """Each machine: reached with its pinned key, logged in, its folder writable. No
        service's port: that is :meth:`check_service`'s, for one service."""
        return self._report(self._gather(self.machines, self._check_machine))

    def check_service(self, service: str, port: int) -> AccountReport:
        """:meth:`check_account`, and on each machine whether ``port`` is free or
        serves this ``service`` (a move tries the machines where it is)."""

        async def both(machine: Machine) -> list[Check]:
            return [*await self._check_machine(machine), await self._port(machine, service, port)]

        return self._report(self._gather(self.machines, both))

    def _report(self, results: list[Any]) -> AccountReport:
        checks: list[Check] = []
        refused = 0
        for machine, result in zip(self.machines, results, strict=True):
            if isinstance(result, ProviderError):
                refused += isinstance(result, AccountBlocked)
                # A key that does not match may be someone in the middle: never a warning.
                level = "error" if isinstance(result, HostKeyMismatch) else "warning"
                checks.append(Check(machine.name, False, str(result), level=level))
            else:
                checks.extend(result)
        usable = [c for c in checks if c.name.endswith(": login") and c.ok]
        reason = "; ".join(c.detail for c in checks if not c.ok) or None
        if refused and refused == len(self.machines):
            return AccountReport("blocked", checks, reason)
        if not usable:
            # No machine could take a host: the provider is not usable as configured.
            for c in checks:
                c.level = "error"
            return AccountReport("unknown", checks, reason)
        return AccountReport("available", checks, reason)

    async def _check_machine(self, machine: Machine) -> list[Check]:
        status, _, err = await self.net.sh(
            machine, "mkdir -p " + shell_path(machine.dir), self.s.timeout
        )
        if status != 0:
            raise ProviderError(f"{machine.label()}: cannot make {machine.dir}: {err.strip()}")
        return [Check(f"{machine.name}: login", True, f"{machine.endpoint}, host key matches")]

    async def _port(self, machine: Machine, service: str, port: int) -> Check:
        info = await self._status(machine, service)
        ours = "meta" in info and "alive" in info
        busy = await asyncio.to_thread(answers, machine.address, port)
        ok = ours or not busy
        return Check(
            f"{machine.name}: port {port}",
            ok,
            f"{machine.address}:{port} "
            + ("serves our " + service if ours else "free" if ok else "taken by another"),
            level="warning",
        )

    def exec_on_host(
        self,
        host_id: str,
        command: str,
        *,
        stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        from providers._ssh import exec_stream

        machine, service, _ = self._machine(host_id)
        if self.get_host(host_id) is None:
            raise NotFound(f"{machine.label()}: no host {host_id}", provider=self.name)
        directory = machine.service_dir(service)
        script = f"cd {directory}/root && . ../env && exec /bin/sh -c {shlex.quote(command)}"
        status, err = self.net.run(
            self.net.call(
                machine,
                lambda conn: exec_stream(conn, script, stdin, stdout),
                timeout if timeout is not None else self.s.timeout,
            )
        )
        return ExecResult(status, err)

    def close(self) -> None:
        self.net.close()


def _observe(info: dict[str, str], log: str) -> tuple[HostState, str, str | None]:
    phase = info.get("phase") or "starting"
    if info.get("stopped"):
        return HostState.STOPPED, "stopped", "stopped by request"
    if info.get("alive"):
        return (HostState.RUNNING if phase == "serving" else HostState.PENDING), phase, None
    status = info.get("exit")
    if not info.get("pid"):
        return HostState.PENDING, "uploaded", None
    if not status:
        return (
            HostState.STOPPED,
            "exited",
            "the supervisor is gone (killed, or the machine rebooted)",
        )
    if phase in ("setup", "restore"):
        return HostState.STOPPED, "exited", f"{phase} failed with exit status {status}; see {log}"
    return HostState.STOPPED, "exited", f"the service exited with status {status}; see {log}"
