"""The renderers of failover/output.py, fed documents directly (no CLI, no engine run)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from failover import output
from failover.exitcodes import CheckCode
from failover.exitcodes import ExitCode


def test_exit_codes_are_the_contract_numbers() -> None:
    assert [int(c) for c in (ExitCode.SUCCESS, ExitCode.FAILED, ExitCode.USAGE)] == [0, 1, 2]
    assert int(ExitCode.INTERRUPTED) == 130
    assert [c.name for c in sorted(CheckCode)] == ["OK", "WARNING", "CRITICAL", "UNKNOWN"]
    assert ExitCode.of(True) is ExitCode.SUCCESS and ExitCode.of(False) is ExitCode.FAILED


def test_worst_ranks_unknown_between_critical_and_warning() -> None:
    assert output.worst([]) is CheckCode.OK
    assert output.worst([0, 1, 3]) is CheckCode.UNKNOWN
    assert output.worst([3, 2, 1]) is CheckCode.CRITICAL
    assert output.worst([CheckCode.WARNING, 0]) is CheckCode.WARNING


def test_nagios_line_names_each_service_in_the_perfdata_when_several() -> None:
    def result(service: str, latency: float | None, probes: list[bool]) -> Any:
        return SimpleNamespace(
            service=service,
            message=f"{service} healthy",
            latency=latency,
            probes=[SimpleNamespace(ok=ok) for ok in probes],
        )

    one = [result("web", 0.0042, [True])]
    assert output.nagios_line(one, 0) == "FAILOVER OK - web healthy | latency=0.004s"
    two = [result("web", 0.01, [True]), result("api", None, [])]  # api: not deployed
    assert output.nagios_line(two, CheckCode.WARNING) == (
        "FAILOVER WARNING - web healthy; api healthy | web_latency=0.010s"
    )
    # A failed probe has no latency worth graphing: "U", never 0.000s.
    failed = [result("web", 0.0, [True, False])]
    assert output.nagios_line(failed, 2) == "FAILOVER CRITICAL - web healthy | latency=U"


def test_plan_lines_say_why_a_move_is_not_possible() -> None:
    plan = {
        "kind": "failover",
        "service": "web",
        "from": {"provider": "alpha", "address": "127.77.0.1"},
        "to": None,
        "steps": [{"name": "lock", "does": "take the lock"}],
        "possible": False,
        "candidates": [{"provider": "beta", "reason": "blocked"}],
    }
    assert output.plan_lines(plan) == [
        "failover web: alpha (127.77.0.1) -> NOWHERE",
        "  lock        take the lock",
        "not possible now: beta: blocked",
    ]


def test_progress_shows_the_start_of_long_steps_only() -> None:
    assert output.progress_line("lock", "in_progress", "") is None
    assert output.progress_line("provision", "in_progress", "") == "  provision   .."
    assert output.progress_line("lock", "succeeded", "held") == "  lock        ok  held"


def test_history_without_events() -> None:
    assert output.history_lines([]) == ["no events yet"]
