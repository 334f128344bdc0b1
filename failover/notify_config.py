"""The ``notify:`` section's models: the targets, the events they take, and what the
config must get right before anything is sent (header values and e-mail addresses
that cannot carry a line break, URLs whose userinfo is a login, unique names).

Imported by :mod:`failover.config`; :mod:`failover.notify` sends to these targets.
"""

from __future__ import annotations

import re
import urllib.parse
from email.utils import parseaddr
from typing import Annotated
from typing import Literal
from typing import get_args

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator

from providers.base import Duration

EventName = Literal[
    "failover",
    "failover_failed",
    "move",
    "circuit_breaker",
    "provider_blocked",
    "backup_stale",
    "quorum_lost",
    "service_down",
    "resolved",
    "dns_provider_blocked",
    "dns_drift",
]
EVENTS: tuple[EventName, ...] = get_args(EventName)
# The events that wake somebody up: PagerDuty's default, and the ones that open an
# incident (resolved once the service is healthy again).
PAGING: tuple[EventName, ...] = (
    "failover_failed",
    "circuit_breaker",
    "quorum_lost",
    "backup_stale",
    "service_down",
)
INCIDENT: tuple[EventName, ...] = (*PAGING, "provider_blocked")
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"

# RFC 9110 field names; values with no control character but tab (a CR or LF would
# end the header and start another: http.client refuses them at send time).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if _CONTROL.search(value) or " " in value:
        raise ValueError("must not contain spaces or control characters")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError as exc:  # a port that is not a number: urllib's own words
        raise ValueError(f"is not a usable URL: {exc}") from None
    if not host:
        raise ValueError("has no host name")
    return value


def _address(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain a line break or control character")
    _, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or " " in address:
        raise ValueError(f"{value!r} is not an e-mail address (name@example.com)")
    return value


Url = Annotated[str, AfterValidator(_url)]
Address = Annotated[str, AfterValidator(_address)]


class BaseTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, description="how the journal names it")
    events: list[EventName] = Field(
        default_factory=lambda: list(EVENTS), description="which events it gets"
    )
    timeout: Duration = Field(default=5.0, gt=0, le=60, description="per attempt")
    retries: int = Field(default=2, ge=0, le=10, description="retries within one round")
    retry_rounds: int = Field(
        default=3, ge=0, le=100, description="later rounds a failed delivery is retried in"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or _CONTROL.search(value)):
            raise ValueError("must be a non-empty name without control characters")
        return value

    def budget(self) -> float:
        """The longest one delivery may take (attempts and the backoff between them)."""
        return float(self.timeout) * (self.retries + 1) + min(5.0, 0.5 * 2.0**self.retries)


class WebhookTarget(BaseTarget):
    type: Literal["webhook"]
    url: Url = Field(description="user:password@ in it is sent as HTTP basic auth")
    secret: str | None = Field(
        default=None, description="X-Failover-Signature: sha256=<HMAC-SHA256 of the body>"
    )
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name (letters, digits, '-')")
            if _CONTROL.search(text):
                raise ValueError(f"the value of {name} must not contain a line break")
        return value


class SlackTarget(BaseTarget):
    type: Literal["slack"]
    url: Url = Field(description="the incoming webhook URL")


class PagerDutyTarget(BaseTarget):
    type: Literal["pagerduty"]
    routing_key: str = Field(min_length=1, description="the integration's routing key")
    url: Url = Field(default=PAGERDUTY_URL, description="Events API v2 endpoint")
    events: list[EventName] = Field(default_factory=lambda: list(PAGING))


class EmailTarget(BaseTarget):
    type: Literal["email"]
    server: str = Field(description="host:port of the SMTP server (587: STARTTLS)")
    sender: Address = Field(alias="from", min_length=3)
    to: list[Address] = Field(min_length=1)
    username: str | None = None
    password: str | None = None
    starttls: bool = Field(default=True, description="refuse to send unless STARTTLS works")
    ca_file: str | None = Field(default=None, description="CA bundle of an internal relay")

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port")
        return value

    def address(self) -> tuple[str, int]:
        host, _, port = self.server.rpartition(":")
        return host.strip("[]"), int(port)


class AppriseTarget(BaseTarget):
    type: Literal["apprise"]
    urls: list[str] = Field(
        min_length=1, description="Apprise URLs (pip install failover[apprise])"
    )


NotifyTarget = Annotated[
    WebhookTarget | SlackTarget | PagerDutyTarget | EmailTarget | AppriseTarget,
    Field(discriminator="type"),
]


def target_name(target: NotifyTarget, index: int) -> str:
    """How the journal calls the target: its ``name``, else ``<type>-<position>``."""
    return target.name or f"{target.type}-{index}"


def _unique(targets: list[NotifyTarget]) -> list[NotifyTarget]:
    # The journal keys a delivery by target name: two targets of one name would share
    # one delivery record, so only the first would ever be sent to (and retried).
    seen: dict[str, int] = {}
    for index, target in enumerate(targets):
        name = target_name(target, index)
        if name in seen:
            raise ValueError(
                f"notify[{seen[name]}] and notify[{index}] are both named {name!r}: "
                "give each target its own `name`"
            )
        seen[name] = index
    return targets


NotifyTargets = Annotated[list[NotifyTarget], AfterValidator(_unique)]


__all__ = [
    "EVENTS",
    "INCIDENT",
    "PAGERDUTY_URL",
    "PAGING",
    "AppriseTarget",
    "BaseTarget",
    "EmailTarget",
    "EventName",
    "NotifyTarget",
    "NotifyTargets",
    "PagerDutyTarget",
    "SlackTarget",
    "WebhookTarget",
    "target_name",
]
