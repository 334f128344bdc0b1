"""The verdict ladder from a table of cases, without a provider or a host.

The :class:`Observer` here is a plain implementation of the protocol the ladder asks
its questions through (not a patched function): each case fixes what the provider, the
canary and the counters answer, and the test also checks which questions were asked,
so a healthy service never costs a provider call and a blind watcher never counts a
failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any

import pytest
import yaml

from failover.config import parse
from failover.engine.health import CRITICAL
from failover.engine.health import OK
from failover.engine.health import UNKNOWN
from failover.engine.health import WARNING
from failover.engine.health import Judge
from failover.engine.health import after_failover
from failover.engine.journal import Outcome
from failover.probes import ProbeResult
from failover.state import ServiceRow
from tests.helpers import base_config

ACTIVE = {"provider": "alpha", "host_id": "h-1", "address": "127.77.0.1", "name": "web-g1-alpha"}
HTTP_OK = ProbeResult("http", True, 0.004, None)
HTTP_BAD = ProbeResult("http", False, 0.2, "connection refused")
DNS_BAD = ProbeResult("dns", False, 0.001, "www.example.test A is ['127.0.0.9']")


def row(**kw: Any) -> ServiceRow:
    base = ServiceRow("web", 1, dict(ACTIVE), None, "up", 0, 3, None, 0.004)
    return replace(base, **kw)


@dataclass
class Answers:
    """What the world says in one case, and which questions the ladder asked."""

    provider: tuple[str, str] = ("alive", "alpha reports the host running")
    sees: tuple[bool, str] = (True, "the provider's API answers")
    moves: int = 0
    moved_to: int | None = None  # another watcher cut over meanwhile
    # Several watchers: do enough locations agree, and does this one act?
    quorum: tuple[bool, str] = (True, "")
    acts: tuple[bool, str] = (True, "")
    start: ServiceRow = field(default_factory=row)
    asked: list[str] = field(default_factory=list)

    def provider_says(self) -> tuple[str, str]:
        self.asked.append("provider")
        return self.provider

    def watcher_sees(self, provider_word: str) -> tuple[bool, str]:
        self.asked.append("sees")
        return self.sees

    def record(self, ok: bool, latency: float | None, *, down_now: bool = False) -> ServiceRow:
        self.asked.append("record")
        r = self.start
        if ok:
            r = replace(r, failures=0, successes=r.successes + 1, health_state="up")
        else:
            failures = r.failures + 1
            state = "down" if down_now or failures >= 3 else r.health_state
            r = replace(r, failures=failures, successes=0, health_state=state)
        if self.moved_to is not None:
            r = replace(r, generation=self.moved_to, active={**ACTIVE, "provider": "beta"})
        return r

    def moves_last_hour(self) -> int:
        self.asked.append("moves")
        return self.moves

    def quorum_sees_down(self, proof: bool) -> tuple[bool, str]:
        self.asked.append("quorum")
        # As the real watchers answer: the provider's word is proof without votes.
        return self.quorum[0] or proof, self.quorum[1]

    def may_act(self) -> tuple[bool, str]:
        self.asked.append("acts")
        return self.acts


def svc(**policy: Any) -> Any:
    data = base_config(health={"fall": 3, "rise": 2}, policy=policy)
    return parse(yaml.safe_dump(data)).services["web"]


CASES = [
    # name, probes, answers, policy, dry_run -> state, code, action, asked, words
    (
        "healthy",
        [HTTP_OK],
        Answers(),
        {},
        False,
        "up",
        OK,
        "none",
        ["record", "provider"],
        "healthy on",
    ),
    (
        "the host answers but its provider refuses us",
        [HTTP_OK],
        Answers(provider=("blocked", "account suspended")),
        {},
        False,
        "up",
        WARNING,
        "none",
        ["record", "provider"],
        "its provider refuses us: account suspended",
    ),
    (
        "rising after an outage",
        [HTTP_OK],
        Answers(start=row(health_state="down", successes=0)),
        {},
        True,
        "down",
        WARNING,
        "none",
        ["provider"],
        "0/2 good rounds",
    ),
    (
        "only the record is wrong",
        [HTTP_OK, DNS_BAD],
        Answers(),
        {},
        False,
        "up",
        CRITICAL,
        "none",
        [],
        "a failover cannot fix DNS",
    ),
    (
        "the watcher is blind",
        [HTTP_BAD],
        Answers(provider=("silent", "timed out"), sees=(False, "no canary answers")),
        {},
        False,
        "unknown",
        UNKNOWN,
        "none",
        ["provider", "sees"],
        "nothing was moved",
    ),
    (
        "one failure is below fall",
        [HTTP_BAD],
        Answers(),
        {},
        False,
        "up",
        WARNING,
        "none",
        ["provider", "sees", "record"],
        "(1/3)",
    ),
    (
        "fall reached",
        [HTTP_BAD],
        Answers(start=row(failures=2)),
        {},
        False,
        "down",
        CRITICAL,
        "failover",
        ["provider", "sees", "record", "quorum", "moves", "acts"],
        "DOWN on alpha",
    ),
    (
        "the provider says the host is gone: proof at once",
        [HTTP_BAD],
        Answers(provider=("gone", "alpha says the host no longer exists")),
        {},
        False,
        "down",
        CRITICAL,
        "failover",
        ["provider", "record", "quorum", "moves", "acts"],
        "no longer exists",
    ),
    (
        "dry run counts nothing",
        [HTTP_BAD],
        Answers(provider=("blocked", "account suspended")),
        {},
        True,
        "down",
        CRITICAL,
        "would_failover",
        ["provider", "quorum"],
        "dry run: nothing done",
    ),
    (
        "auto_failover off",
        [HTTP_BAD],
        Answers(provider=("gone", "gone")),
        {"auto_failover": False},
        False,
        "down",
        CRITICAL,
        "none",
        ["provider", "record", "quorum"],
        "auto_failover is off",
    ),
    (
        "circuit breaker",
        [HTTP_BAD],
        Answers(provider=("gone", "gone"), moves=3),
        {"max_moves_per_hour": 3},
        False,
        "down",
        CRITICAL,
        "circuit_breaker",
        ["provider", "record", "quorum", "moves"],
        "circuit breaker open: 3 failovers",
    ),
    (
        "moved by another watcher during the round",
        [HTTP_BAD],
        Answers(provider=("gone", "gone"), moved_to=2),
        {},
        False,
        "down",
        WARNING,
        "none",
        ["provider", "record"],
        "by another run during this round",
    ),
    (
        "several watchers: too few locations see it down",
        [HTTP_BAD],
        Answers(start=row(failures=2), quorum=(False, "1 of 3 locations see it down (quorum 2)")),
        {},
        False,
        "up",
        WARNING,
        "none",
        ["provider", "sees", "record", "quorum"],
        "but 1 of 3 locations see it down (quorum 2); nothing moves",
    ),
    (
        "several watchers: a quorum agrees, another watcher acts",
        [HTTP_BAD],
        Answers(start=row(failures=2), acts=(False, "watcher b (fsn1) acts")),
        {},
        False,
        "down",
        CRITICAL,
        "none",
        ["provider", "sees", "record", "quorum", "moves", "acts"],
        "watcher b (fsn1) acts",
    ),
    (
        "several watchers: the provider's word needs no votes",
        [HTTP_BAD],
        Answers(provider=("gone", "gone"), quorum=(False, "0 of 3 locations see it down")),
        {},
        False,
        "down",
        CRITICAL,
        "failover",
        ["provider", "record", "quorum", "moves", "acts"],
        "0 of 3 locations see it down",
    ),
]


@pytest.mark.parametrize(
    ("probes", "answers", "policy", "dry_run", "state", "code", "action", "asked", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_the_ladder(
    probes: list[ProbeResult],
    answers: Answers,
    policy: dict[str, Any],
    dry_run: bool,
    state: str,
    code: int,
    action: str,
    asked: list[str],
    words: str,
) -> None:
    verdict = Judge("web", svc(**policy), answers.start, probes, answers, dry_run=dry_run).verdict()
    assert (verdict.state, verdict.exit_code, verdict.action) == (state, code, action)
    assert answers.asked == asked
    assert words in verdict.message


@pytest.mark.parametrize(
    ("status", "code", "action", "words"),
    [
        ("succeeded", WARNING, "failover", "moved from alpha to beta (127.77.0.2:8080)"),
        ("busy", WARNING, "busy", "another run holds the lock"),
        ("failed", CRITICAL, "failover_failed", "failover failed: no provider"),
    ],
)
def test_after_the_failover(status: str, code: int, action: str, words: str) -> None:
    start = row(failures=2)
    down = Judge("web", svc(), start, [HTTP_BAD], Answers(start=start)).verdict()
    messages = {"busy": "another run holds the lock", "failed": "no provider could take it"}
    event = {"to": {"provider": "beta", "address": "127.77.0.2"}}
    outcome = Outcome("web", "failover", status, messages.get(status, "ok"), 1, event)
    after = after_failover(down, outcome, "alpha", 8080)
    assert (after.exit_code, after.action) == (code, action)
    assert words in after.message
