"""Typed records of a run, as the journal stores them.

An event's ``data`` column was a dict of a dozen string keys written all over the
engine. These records are the one place that knows the keys: they read a journal
written by any earlier version (unknown keys are kept, missing ones take defaults) and
write exactly the keys that version wrote, so a run interrupted before an upgrade is
resumed after it.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from dataclasses import field
from typing import Any

STEPS = (
    "lock",
    "select",
    "provision",
    "wait_ready",
    "restore",
    "verify",
    "cutover",
    "fence",
    "release",
)
DRILL_STEPS = ("select", "provision", "wait_ready", "restore", "verify", "teardown")
# A warm standby (policy.standby: warm) is made like a candidate, then kept running.
STANDBY_STEPS = (
    "lock",
    "select",
    "provision",
    "wait_ready",
    "restore",
    "verify",
    "park",
    "release",
)
CANDIDATE_STEPS = ("provision", "wait_ready", "restore", "verify")


class Role(enum.StrEnum):
    """What a host the toolkit made is for, in the state's ``hosts`` table."""

    CANDIDATE = "candidate"  # being brought up by a run
    ACTIVE = "active"  # DNS points at it
    FENCE = "fence"  # to be stopped or destroyed once its provider answers
    DRILL = "drill"
    STANDBY = "standby"  # running and verified, out of DNS, for the next failover
    STOPPED = "stopped"
    DESTROYED = "destroyed"


class StepFailed(Exception):
    """The run cannot go on; the event is marked failed with this message."""


class CandidateFailed(Exception):
    """This provider cannot take the service; the next candidate is tried."""


@dataclass
class HostRef:
    """A host as ``history`` shows it in ``from`` and ``to``."""

    provider: str
    host_id: str
    address: str | None = None
    name: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostRef:
        return cls(
            provider=str(data["provider"]),
            host_id=str(data["host_id"]),
            address=data.get("address"),
            name=str(data.get("name") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "host_id": self.host_id, "address": self.address}

    def active(self) -> dict[str, Any]:
        """The shape of a service's ``active`` row."""
        return {**self.to_dict(), "name": self.name}


@dataclass
class HostRecord:
    """The candidate host a run is working on."""

    provider: str
    host_id: str
    name: str
    address: str | None
    generation: int
    zone: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostRecord:
        return cls(
            provider=str(data["provider"]),
            host_id=str(data["host_id"]),
            name=str(data.get("name") or ""),
            address=data.get("address"),
            generation=int(data.get("generation") or 0),
            zone=data.get("zone"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "host_id": self.host_id,
            "name": self.name,
            "address": self.address,
            "generation": self.generation,
            "zone": self.zone,
        }

    def ref(self) -> HostRef:
        return HostRef(self.provider, self.host_id, self.address, self.name)


@dataclass
class Attempt:
    """A candidate provider that was tried and could not take the service."""

    provider: str
    step: str
    result: str

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "step": self.step, "result": self.result}


_KNOWN = {
    "expected_generation",
    "to",
    "attempt",
    "attempts",
    "candidates",
    "pid",
    "skipped",
    "deadline",
    "host",
    "target_generation",
    "generation",
    "torn_down",
}


@dataclass
class RunData:
    """An event's ``data``: where a run stands, enough to resume it anywhere."""

    expected_generation: int
    to: str | None = None
    attempt: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    pid: int | None = field(default_factory=os.getpid)
    skipped: dict[str, str] | None = None
    deadline: float | None = None
    host: HostRecord | None = None
    target_generation: int | None = None  # adopting a host found by its tags
    generation: int | None = None  # set at cutover
    torn_down: HostRecord | None = None  # drills
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a later version, kept

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunData:
        def host(key: str) -> HostRecord | None:
            value = data.get(key)
            return HostRecord.from_dict(value) if value else None

        return cls(
            expected_generation=int(data.get("expected_generation") or 0),
            to=data.get("to"),
            attempt=int(data.get("attempt") or 0),
            attempts=[
                Attempt(str(a.get("provider")), str(a.get("step")), str(a.get("result")))
                for a in data.get("attempts") or []
            ],
            candidates=[str(c) for c in data.get("candidates") or []],
            pid=data.get("pid"),
            skipped=data.get("skipped"),
            deadline=data.get("deadline"),
            host=host("host"),
            target_generation=data.get("target_generation"),
            generation=data.get("generation"),
            torn_down=host("torn_down"),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "expected_generation": self.expected_generation,
            "to": self.to,
            "attempt": self.attempt,
            "attempts": [a.to_dict() for a in self.attempts],
            "candidates": list(self.candidates),
            "pid": self.pid,
        }
        optional = {
            "skipped": self.skipped,
            "deadline": self.deadline,
            "target_generation": self.target_generation,
            "generation": self.generation,
            "torn_down": self.torn_down.to_dict() if self.torn_down else None,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.host is not None or self.attempt or self.deadline is not None:
            # Earlier versions wrote ``host: null`` once a candidate was dropped.
            out["host"] = self.host.to_dict() if self.host else None
        out.update(self.extra)
        return out

    def target(self) -> int:
        """The generation this run will cut over to."""
        if self.target_generation:
            return int(self.target_generation)
        return self.expected_generation + 1


@dataclass
class Event:
    """One journal event (deploy, failover, move, drill) as the store returns it."""

    id: int
    service: str
    kind: str
    status: str
    reason: str | None
    origin: HostRef | None
    steps: dict[str, str]  # step name -> status
    data: RunData

    @classmethod
    def from_dict(cls, event: dict[str, Any]) -> Event:
        origin = event.get("from")
        return cls(
            id=int(event["id"]),
            service=str(event["service"]),
            kind=str(event["kind"]),
            status=str(event["status"]),
            reason=event.get("reason"),
            origin=HostRef.from_dict(origin) if origin else None,
            steps={s["name"]: s["status"] for s in event.get("steps") or []},
            data=RunData.from_dict(event.get("data") or {}),
        )


@dataclass
class Outcome:
    """The end of one run (deploy, failover, move, drill)."""

    service: str
    kind: str
    status: str  # succeeded | failed | busy | noop | interrupted
    message: str
    event_id: int | None = None
    event: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "noop")
