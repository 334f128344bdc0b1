"""Choosing where a service goes next, and explaining why.

The plan is computed before anything is changed and can be shown on its own
(``failover plan``), like octoDNS's plans: which providers are candidates, in which
order, which were skipped and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from providers.base import AccountReport


@dataclass
class Candidate:
    provider: str
    usable: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "usable": self.usable, "reason": self.reason}


@dataclass
class Selection:
    kind: str
    service: str
    current: str | None
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def usable(self) -> list[str]:
        return [c.provider for c in self.candidates if c.usable]

    def why_none(self) -> str:
        return "; ".join(f"{c.provider}: {c.reason}" for c in self.candidates) or (
            "no provider is listed for this service"
        )


def select(
    *,
    kind: str,
    service: str,
    priority: list[str],
    current: str | None,
    to: str | None,
    account: Callable[[str], AccountReport],
    unfit: Callable[[str], str | None] = lambda name: None,
) -> Selection:
    """Order the providers a new host may go to.

    - ``deploy``: the priority list (or only ``to``), the current provider included.
    - ``failover``: the priority list without the provider that just lost the service.
    - ``move``/``drill``: exactly ``to``.
    A provider whose account is blocked, or that cannot take the service at all
    (``unfit`` says why: it cannot restore the service's data), is listed, with the
    reason, and skipped.
    """
    if to is not None:
        names = [to]
    elif kind == "failover":
        names = [p for p in priority if p != current]
    else:
        names = list(priority)
    selection = Selection(kind, service, current)
    for name in names:
        why = unfit(name)
        if why is not None:
            selection.candidates.append(Candidate(name, False, why))
            continue
        report = account(name)
        if report.state == "blocked":
            selection.candidates.append(
                Candidate(name, False, f"blocked: {report.reason or 'account refused'}")
            )
        elif report.state == "unknown" and kind != "drill":
            # An API that does not answer now may answer in a minute; try it after the rest.
            selection.candidates.append(
                Candidate(name, True, f"not answering ({report.reason}); tried last")
            )
        else:
            selection.candidates.append(Candidate(name, True, "available"))
    # Stable: available first in priority order, then the ones that did not answer.
    selection.candidates.sort(key=lambda c: (not c.usable, c.reason.startswith("not answering")))
    return selection
