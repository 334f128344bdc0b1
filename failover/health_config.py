"""A service's ``health:`` section and its probes. Re-exported by :mod:`failover.config`."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from failover.checks import canary_problem
from failover.config_base import DAY as _DAY
from failover.config_base import Model
from providers.base import Duration


class HttpProbe(Model):
    path: str = "/"
    scheme: Literal["http", "https"] = "http"
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    body: str | None = Field(default=None, description="regular expression the body must match")
    host: str | None = Field(default=None, description="Host header; default: the service domain")
    verify_tls: bool = False
    ca_file: str | None = Field(
        default=None, description="https: trust this authority (PEM) and verify against it"
    )

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        for status in value:
            if not 100 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP status (100-599)")
        return value

    @field_validator("body")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value


class TcpProbe(Model):
    port: int | None = Field(default=None, ge=1, le=65535, description="default: service port")


class TlsProbe(Model):
    port: int | None = Field(default=None, ge=1, le=65535, description="default: service port")
    min_days: int = Field(default=14, ge=0, description="fail when the certificate expires sooner")


class DnsProbe(Model):
    server: str | None = Field(
        default=None, description="host:port of an authoritative server; default: the DNS backend"
    )


class HealthConfig(Model):
    interval: Duration = Field(default=2.0, gt=0, le=_DAY)
    timeout: Duration = Field(default=1.0, gt=0, le=_DAY)
    fall: int = Field(default=3, ge=1, le=1000)
    rise: int = Field(default=2, ge=1, le=1000)
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    tls: TlsProbe | None = None
    dns: DnsProbe | None = None
    canary: str | None = Field(
        default=None,
        description="URL or host:port the watcher must reach to trust its own view",
    )

    @field_validator("canary")
    @classmethod
    def _canary(cls, value: str | None) -> str | None:
        if value is not None:
            problem = canary_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _default_probe(self) -> HealthConfig:
        if not (self.http or self.tcp or self.tls or self.dns):
            self.http = HttpProbe()
        return self
