"""What every model of the config file shares: the strict base model, the bound on
durations, and how problems are reported (``path: message`` through :class:`ConfigError`).

Re-exported by :mod:`failover.config`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict


class ConfigError(Exception):
    """One or more located problems in a config file."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.source = source


# Upper bound of the durations the watcher sleeps on or adds to the clock: a longer one is
# a typo, and a huge one overflows the clock functions (1e10s passed validation, then
# ended `watch` with an OverflowError: issue 3).
DAY = 86400.0


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


Problems = list[tuple[tuple[Any, ...], str]]


class Located(ValueError):
    """Problems found by a model validator, with their own locations."""

    def __init__(self, problems: list[tuple[tuple[Any, ...], str]]) -> None:
        super().__init__("; ".join(m for _, m in problems))
        self.problems = problems


def plain_message(err: Any) -> str:
    """A pydantic error (one of ``ValidationError.errors()``) in the words of a config
    problem: ``required``, ``must be >= 1``, ``unknown field (...)``."""
    msg = str(err.get("msg", "invalid"))
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; `failover schema` lists the fields)"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        bound = next(iter(ctx.values()), "")
        return f"must be {op} {bound}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        # pydantic's words name our classes ("instance of HealthConfig"): no user knows them.
        given = "a list" if isinstance(err.get("input"), list) else "a single value"
        return f"must be a mapping of settings (`key: value` lines), not {given}"
    if kind == "too_short":
        return "must have at least one entry"
    if kind == "literal_error":
        return msg.replace("Input should be", "must be")
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def untagged(field: str, errors: list[Any], kinds: str) -> list[tuple[tuple[Any, ...], str]]:
    """The problems of a list of ``type:``-tagged entries at their own paths: pydantic puts
    the tag in the path (``stores[0].s3.bucket``) and words a bad tag in its own terms."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    for err in errors:
        loc = (field, *err["loc"][:1], *err["loc"][2:])
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            problems.append(((*loc, "type"), f"required, one of: {kinds}"))
        else:
            problems.append((loc, plain_message(err)))
    return problems


def format_loc(loc: tuple[Any, ...], data: Any = None) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
