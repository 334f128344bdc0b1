"""The ``state:``, ``watcher:`` and ``watchers:`` sections: where the state lives, and
how much one watcher (and several together) may do. Re-exported by :mod:`failover.config`.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from failover.config_base import DAY as _DAY
from failover.config_base import Model
from providers.base import Duration


class StateConfig(Model):
    backend: Literal["sqlite", "etcd"] = Field(
        default="sqlite", description="where the journal, health counters and lock live"
    )
    dir: str | None = Field(
        default=None,
        description="the state directory (relative: to this file's folder); default "
        ".failover/ beside this file. --state-dir and FAILOVER_STATE_DIR override it",
    )
    lease_ttl: Duration = Field(
        default=30.0,
        gt=0,
        le=_DAY,
        description="how long a lock (and, with etcd, a watcher's votes) outlives a watcher "
        "that stopped renewing it",
    )
    # etcd only (contract section 7): several watchers share one store.
    endpoints: list[str] = Field(
        default_factory=list, description="etcd client URLs, tried in turn (etcd only)"
    )
    prefix: str = Field(default="/failover/", min_length=1, description="every etcd key's prefix")
    timeout: Duration = Field(default=2.0, gt=0, le=600, description="one etcd request's timeout")
    ca_file: str | None = Field(default=None, description="CA bundle for https endpoints")
    cert_file: str | None = Field(default=None, description="client certificate (TLS)")
    key_file: str | None = Field(default=None, description="client certificate's key (TLS)")
    username: str | None = None
    password: str | None = Field(default=None, description="use ${ENV}; never written anywhere")

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s)://host:port URL")
        return value

    @model_validator(mode="after")
    def _etcd_needs(self) -> StateConfig:
        if self.backend == "etcd" and not self.endpoints:
            raise ValueError("backend etcd needs `endpoints` (its client URLs)")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class WatchersConfig(Model):
    """Several watchers sharing an etcd store (README: "Several watchers, one decision")."""

    quorum: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="distinct locations that must see a service down before it moves; "
        "default: a majority of the live watchers' locations",
    )


class WatcherConfig(Model):
    """How much one watcher does at once (README: "Many services, one watcher")."""

    probes_in_flight: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="probes open at once in a round; default 500 (fewer if the open-file "
        "limit is low)",
    )
    # A move spends its time waiting on a provider (boot, readiness), and the moves of a
    # round share their thread-safe provider clients and one zone writer, so a worker
    # costs a thread and a SQLite connection: 64 lets a mass cut-off of 50 services come
    # back in about one boot time instead of one per 16 (bench/cutoff.py).
    parallel_moves: int = Field(
        default=64, ge=1, le=256, description="failovers of different services run at once"
    )
    lookups: int = Field(
        default=16, ge=1, le=256, description="provider API calls made at once in a round"
    )
