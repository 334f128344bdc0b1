"""Machines where the service already runs (``type: static``): kept by hand, a warm
standby at another host. Nothing is started, stopped or copied there.

``create_host`` adopts the first listed machine that answers on the service's port and
is not already a host of the service; the engine's probes then decide, as for any new
host, before DNS moves. ``stop_host``/``destroy_host`` only release the machine: the
service on it keeps running, so a static host is fenced by DNS alone (clients that
cached the old address, or write to it directly, still reach it).

What was adopted is remembered in ``<state_dir>/static/<provider>.json``; the machines
carry no mark of it. A round reads that file once for all its hosts (parsed again only
when it changed) and connects to none of them: the round's own probes say whether the
machines serve (issue 28).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import model_validator

from providers._records import JsonFile
from providers.base import AccountReport
from providers.base import CapacityError
from providers.base import Check
from providers.base import ComputeProvider
from providers.base import Duration
from providers.base import Host
from providers.base import HostSpec
from providers.base import HostState
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import ProviderSettings
from providers.util import answers
from providers.util import locked
from providers.util import private_dir
from providers.util import write_private


class StaticMachine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(min_length=1, description="where the service already answers")
    name: str | None = Field(default=None, description="a label for messages (default: address)")


class StaticSettings(ProviderSettings):
    type: Literal["static"]
    machines: list[StaticMachine] = Field(min_length=1)
    connect_timeout: Duration = Field(default=2.0, description="to decide a machine answers")

    @model_validator(mode="after")
    def _unique(self) -> StaticSettings:
        addresses = [m.address for m in self.machines]
        for i, address in enumerate(addresses):
            if address in addresses[:i]:
                raise ValueError(f"machines.{i}: {address} is listed twice")
        return self


class StaticProvider(ComputeProvider, kind="static", settings=StaticSettings):
    # The records file is the only thing that changes, and every read-modify-write of
    # it holds its flock (parallel moves of one round adopt and release at once).
    shared_across_threads = True
    # Nothing is copied onto a machine kept by hand: a service with `data:` cannot go there.
    restores_data = False

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        assert isinstance(settings, StaticSettings)
        self.s = settings
        self.path = Path(context.state_dir) / "static" / f"{self.name}.json"
        self._lock_path = self.path.with_suffix(".lock")
        self._file = JsonFile(self.path)

    # ----------------------------------------------------------------- records

    def _records(self, *, fresh: bool = False) -> dict[str, dict[str, Any]]:
        """The records, shared with every thread (never to be changed), or with
        ``fresh`` a copy of its own for a read-modify-write under the lock."""
        try:
            data = self._file.read(fresh=fresh)
        except (OSError, ValueError) as exc:
            raise ProviderError(f"{self.path} is unreadable: {exc}", provider=self.name) from None
        hosts: dict[str, dict[str, Any]] = (data or {}).get("hosts", {})
        return hosts

    def _save(self, records: dict[str, dict[str, Any]]) -> None:
        private_dir(self.path.parent)
        doc = {"hosts": records}
        write_private(self.path, json.dumps(doc), durable=True)
        self._file.wrote(doc)  # under the lock: nobody wrote after us

    def _label(self, address: str) -> str:
        for m in self.s.machines:
            if m.address == address:
                return m.name or m.address
        return address

    def _host(self, record: dict[str, Any], *, connect: bool = True) -> Host:
        address = record["address"]
        if record.get("released"):
            state, raw = HostState.TERMINATED, "released"
            reason = "released; the service there was left running (static: fenced by DNS only)"
        elif not connect:
            # The records are all this provider knows without reaching the machine; the
            # round that asks has probed the machine already.
            state, raw, reason = HostState.UNKNOWN, "adopted", "the probes judge the machine"
        elif answers(address, int(record["port"]), self.s.connect_timeout):
            state, raw, reason = HostState.RUNNING, "serving", None
        else:
            state, raw = HostState.UNKNOWN, "not answering"
            reason = f"nothing answers on {address}:{record['port']}"
        return Host.from_record(
            record,
            self.name,
            state,
            raw,
            reason,
            address=address,
            zone=self._label(address),
        )

    # ----------------------------------------------------------------- interface

    def create_host(self, spec: HostSpec) -> Host:
        with locked(self._lock_path):  # two adoptions at once would lose one record
            return self._adopt(spec)

    def _adopt(self, spec: HostSpec) -> Host:
        records = self._records(fresh=True)
        for record in records.values():
            if record["name"] == spec.name and not record.get("released"):
                return self._host(record)
        taken = {
            r["address"]
            for r in records.values()
            if r["service"] == spec.service and not r.get("released")
        }
        tried = []
        for machine in self.s.machines:
            label = machine.name or machine.address
            if machine.address in taken:
                tried.append(f"{label}: already a host of {spec.service}")
            elif not answers(machine.address, spec.port, self.s.connect_timeout):
                tried.append(f"{label}: nothing answers on {machine.address}:{spec.port}")
            else:
                host_id = f"{machine.address}/{spec.service}/{uuid.uuid4().hex[:8]}"
                records[host_id] = {
                    "id": host_id,
                    "name": spec.name,
                    "service": spec.service,
                    "generation": spec.generation,
                    "purpose": spec.purpose,
                    "address": machine.address,
                    "port": spec.port,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                self._save(records)
                self.context.log(f"{self.name}: adopted {label} for {spec.service}, as it is")
                return self._host(records[host_id])
        raise CapacityError(
            f"no listed machine serves {spec.service}: " + "; ".join(tried),
            provider=self.name,
            hint="a static machine must already run the service; start it there by hand",
        )

    def get_host(self, host_id: str) -> Host | None:
        record = self._records().get(host_id)
        return self._host(record) if record else None

    batches_lookups = True
    capacity_per_service = True

    def get_hosts(self, host_ids: list[str]) -> dict[str, Host | None]:
        """A round's look-up: one read of the records for every host, no connection."""
        records = self._records()
        found = {host_id: records.get(host_id) for host_id in host_ids}
        return {h: self._host(r, connect=False) if r else None for h, r in found.items()}

    def list_hosts(self, service: str) -> list[Host]:
        return [
            self._host(r)
            for r in self._records().values()
            if r["service"] == service and not r.get("released")
        ]

    def _release(self, host_id: str) -> None:
        with locked(self._lock_path):
            self._unrecord(host_id)

    def _unrecord(self, host_id: str) -> None:
        records = self._records(fresh=True)
        record = records.get(host_id)
        if record is None or record.get("released"):
            return
        record["released"] = True
        self._save(records)
        self.context.log(
            f"{self.name}: released {self._label(record['address'])}; the service there "
            "keeps running (static hosts are fenced by DNS only)"
        )

    def stop_host(self, host_id: str) -> None:
        self._release(host_id)

    def destroy_host(self, host_id: str) -> None:
        self._release(host_id)

    def check_account(self) -> AccountReport:
        """The records are readable, and the machines listed. A static provider has no
        API that could refuse us; whether a machine serves is asked per service
        (:meth:`check_service`), never for every port of the config at once."""
        try:
            count = sum(1 for r in self._records().values() if not r.get("released"))
        except ProviderError as exc:
            return AccountReport.from_checks([Check("records", False, exc.message)])
        checks = [Check("records", True, f"{self.path}: {count} adopted")]
        for machine in self.s.machines:
            label = machine.name or machine.address
            checks.append(Check(label, True, f"{machine.address}: listed"))
        return AccountReport.from_checks(checks)

    def check_service(self, service: str, port: int) -> AccountReport:
        """Which listed machines answer on ``port``: none makes the provider ``unknown``
        for ``service`` (a move tries it last)."""
        checks = []
        for machine in self.s.machines:
            label = machine.name or machine.address
            ok = answers(machine.address, port, self.s.connect_timeout)
            detail = f"{machine.address}:{port} " + (
                f"answers ({service})" if ok else f"does not answer ({service})"
            )
            checks.append(Check(f"{label}: port {port}", ok, detail, level="warning"))
        if not any(c.ok for c in checks):
            for c in checks:
                c.level = "error"
        return AccountReport.from_checks(checks)
