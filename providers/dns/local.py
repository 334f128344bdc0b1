"""The embedded DNS zone: a JSON file in the state directory, replaced atomically.

It is what the probes resolve against when ``dns.type`` is ``local``, and what the demo
and the tests use; nothing outside this machine can query it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Literal

from providers._records import JsonFile
from providers.base import AccountReport
from providers.base import Check
from providers.base import ConflictError
from providers.base import DnsProvider
from providers.base import DnsSettings
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange
from providers.util import locked
from providers.util import write_private


class LocalDnsSettings(DnsSettings):
    type: Literal["local"]


class LocalDns(DnsProvider, kind="local", settings=LocalDnsSettings, vendor="local"):
    batches_changes = True
    shared_across_threads = True  # a path and a file lock: nothing held between calls

    def __init__(self, settings: DnsSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        # A second local provider of the zone (tests, the demo of two companies) keeps
        # its own file; the first keeps the path it always had.
        where = Path(context.state_dir) / "dns"
        if settings.name not in ("", "local"):
            where = where / settings.name
        self.path = where / f"{settings.zone}.json"
        self._file = JsonFile(self.path, check=_zone_shape)

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.path.with_suffix(".lock"))

    def _load(self, *, fresh: bool = False) -> dict[str, Any]:
        """The zone, parsed once while the file stays the same (an audit reads every
        record of it: issue 28), shared and never to be changed; ``fresh``: a copy of
        its own for a read-modify-write under the lock."""
        try:
            data: dict[str, Any] | None = self._file.read(fresh=fresh)
        except (OSError, ValueError) as exc:
            raise self._unreadable(str(exc)) from None
        if data is None:
            return {"zone": self.settings.zone, "serial": 0, "records": {}}
        return data

    def _unreadable(self, why: str) -> ProviderError:
        return ProviderError(
            f"the local zone file {self.path} is unreadable ({why}); move it aside and "
            "run `failover deploy` to write the record again",
            provider=self.name,
        )

    def _key(self, name: str, rtype: str) -> str:
        return f"{name.rstrip('.').lower()} {rtype.upper()}"

    def get_record(self, name: str, rtype: str = "A") -> Record | None:
        entry = self._load()["records"].get(self._key(name, rtype))
        if entry is None:
            return None
        return Record(name, rtype, list(entry["values"]), int(entry["ttl"]))

    def replace_record(self, change: RecordChange) -> Record:
        (result,) = self.replace_records([change])
        if isinstance(result, ProviderError):
            raise result
        return result

    def replace_records(self, changes: Sequence[RecordChange]) -> list[Record | ProviderError]:
        # One read-modify-write of the zone file under its lock, one serial: the lock
        # makes each change's condition exact, so a conflict fails that change alone.
        out: list[Record | ProviderError] = []
        with self._locked():
            zone = self._load(fresh=True)
            for name, rtype, values, ttl, expect in changes:
                key = self._key(name, rtype)
                current = sorted(zone["records"].get(key, {}).get("values", []))
                if expect is not None and current not in (sorted(expect), sorted(values)):
                    out.append(
                        ConflictError(
                            f"{name} {rtype} is {current}, expected {sorted(expect)}: "
                            "someone else changed the record",
                            provider=self.name,
                        )
                    )
                    continue
                if values:
                    zone["records"][key] = {"values": list(values), "ttl": ttl}
                else:  # an empty set is no set, as at every authority (a removed challenge)
                    zone["records"].pop(key, None)
                out.append(Record(name, rtype, list(values), ttl))
            if any(isinstance(result, Record) for result in out):
                zone["serial"] = int(zone.get("serial", 0)) + 1
                # One line: 10,000 records indented took 5 times as long to write.
                write_private(self.path, json.dumps(zone))
                self._file.wrote(zone)  # under the lock: nobody wrote after us
        return out

    def serial(self) -> int:
        """The zone's serial: one more for every write (a request that changed anything)."""
        return int(self._load().get("serial", 0))

    def check(self) -> AccountReport:
        try:
            self._load()
        except ProviderError as exc:
            return AccountReport("unknown", [Check("zone file", False, str(exc))], str(exc))
        return AccountReport("available", [Check("zone file", True, str(self.path))])


def _zone_shape(data: Any) -> None:
    # JSON of the wrong shape (a hand edit, another tool's file) is as unreadable as
    # garbage: report it here rather than fail later with a TypeError (issue 3).
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("values"), list) for e in records.values()
    ):
        raise ValueError("not a zone document: expected {'records': {...}}")
