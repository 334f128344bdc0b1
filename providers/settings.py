"""What every provider's and DNS backend's section of the config shares: the base
models, their retry bounds, and the duration type they (and the whole config) read.

Re-exported by :mod:`providers.base`.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field

# --------------------------------------------------------------------------- durations

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """``500ms``, ``2s``, ``1m``, ``1h``, ``1d`` or a plain number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 2s, 1m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration; use e.g. 500ms, 2s, 1m or 1h")
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        raise ValueError("a duration must be a finite number >= 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]

# --------------------------------------------------------------------------- settings


class ProviderSettings(BaseModel):
    """Base of every provider's section in ``providers:``; each type adds its own fields."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: str


class DnsSettings(BaseModel):
    """Base of the ``dns:`` section; each DNS type adds its own fields."""

    model_config = ConfigDict(extra="forbid")

    type: str
    zone: str
    ttl: int = 30
    #: Unique among the file's DNS providers (section 12); a single mapping is named
    #: after its type.
    name: str = Field(default="", description="this DNS provider's name; default: its type")
    vendor: str | None = Field(
        default=None,
        description="the company that runs it, when not the backend's own (doctor warns "
        "when every provider of a zone is one company)",
    )


class RetryingDnsSettings(DnsSettings):
    """Fields every DNS backend that talks to a server shares: retry bounds."""

    retry_attempts: int = Field(default=5, ge=1, le=50)
    retry_max_time: Duration = Field(default=60.0, description="total time retries may take")


class ApiDnsSettings(RetryingDnsSettings):
    """Fields every DNS backend behind a vendor's HTTP API shares: retry bounds and an
    endpoint override (what :class:`CloudSettings` is for compute)."""

    endpoint: str | None = Field(
        default=None, description="API endpoint override (tests, compatible or sovereign clouds)"
    )


class CloudSettings(ProviderSettings):
    """Fields every cloud provider shares: an endpoint override and retry bounds."""

    endpoint: str | None = Field(
        default=None, description="API endpoint override (tests, compatible or sovereign clouds)"
    )
    retry_attempts: int = Field(default=5, ge=1, le=50)
    retry_max_time: Duration = Field(default=60.0, description="total time retries may take")
    operation_timeout: Duration = Field(
        default=600.0, description="how long to wait on one long-running operation"
    )
