"""The ``stores:`` entries and a service's ``data:`` section.

Each store type brings its own model (as providers do), so a typo in an S3 store's
fields is reported at ``stores[1].bukcet`` with the same words as everywhere else.
"""

from __future__ import annotations

import re
from typing import Annotated
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from failover.data.engines.pgsettings import PostgresSettings
from failover.redact import register_secret
from providers.base import Duration

_NAME = r"^[a-z][a-z0-9-]{0,39}$"
_DAY = 86400.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreBase(_Model):
    name: str = Field(pattern=_NAME, description="how services and output name this store")
    provider: str | None = Field(
        default=None,
        description="the compute provider this store shares fate with: skipped while it is blocked",
    )
    retry_attempts: int = Field(default=5, ge=1, le=50)
    retry_max_time: Duration = Field(default=60.0, gt=0, le=_DAY)
    timeout: Duration = Field(default=60.0, gt=0, le=_DAY, description="one request's budget")


class DirStoreSettings(StoreBase):
    type: Literal["dir"]
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="a directory: a disk, an NFS mount... (relative: to the config's folder)",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("contains a NUL byte")
        if any(len(part.encode()) > 255 for part in value.split("/")):
            raise ValueError("has a component longer than 255 bytes")
        return value


def check_url(value: str) -> str:
    """An http(s) URL with a host, or ``ValueError`` saying what is wrong."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


class _CloudStore(StoreBase):
    endpoint: str | None = Field(
        default=None, description="API endpoint override (emulators, compatible clouds)"
    )
    prefix: str = Field(default="", description="key prefix inside the bucket/container")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)


class _PrivateCa(_CloudStore):
    ca_file: str | None = Field(
        default=None, description="CA bundle of an https endpoint with a private authority"
    )


class S3StoreSettings(_PrivateCa):
    type: Literal["s3"]
    bucket: str = Field(min_length=3)
    region: str | None = None


class GcsStoreSettings(_CloudStore):
    type: Literal["gcs"]
    bucket: str = Field(min_length=3)
    project: str | None = None


class AzureBlobStoreSettings(_PrivateCa):
    type: Literal["azureblob"]
    account_url: str | None = Field(
        default=None,
        min_length=1,
        description="https://<account>.blob.core.windows.net (not with connection_string)",
    )
    container: str = Field(min_length=1)
    connection_string: str | None = Field(
        default=None, description="instead of the credential chain (Azurite, SAS setups)"
    )

    @field_validator("account_url")
    @classmethod
    def _account_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @model_validator(mode="after")
    def _where(self) -> AzureBlobStoreSettings:
        if not (self.account_url or self.connection_string or self.endpoint):
            raise ValueError("account_url (or connection_string) is required")
        return self

    @field_validator("connection_string")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value:
            register_secret(value)
            fields = dict(p.split("=", 1) for p in value.split(";") if "=" in p)
            if any(p.strip() and "=" not in p for p in value.split(";")) or not (
                fields.keys() & {"AccountName", "BlobEndpoint", "UseDevelopmentStorage"}
            ):
                # Not the value in the message: it is a secret.
                raise ValueError(
                    "is not an Azure connection string (Key=Value;... with AccountName "
                    "or BlobEndpoint)"
                )
            if "BlobEndpoint" in fields:
                check_url(fields["BlobEndpoint"])
        return value


StoreSettings = Annotated[
    DirStoreSettings | S3StoreSettings | GcsStoreSettings | AzureBlobStoreSettings,
    Field(discriminator="type"),
]

# The vendor behind each store type, for doctor's "all eggs at one company" warning.
# (An S3 store with an `endpoint` is an S3-compatible one elsewhere: no vendor known.)
STORE_VENDOR = {"s3": "aws", "gcs": "google", "azureblob": "microsoft"}


class DataConfig(_Model):
    """``services.<name>.data``: how the service's data is backed up and restored."""

    engine: Literal["commands", "pgbackrest"] = Field(
        default="commands", description="backup/restore commands, or pgBackRest (PostgreSQL)"
    )
    backup: str | None = Field(
        default=None, min_length=1, description="runs on the live host; stdout is the backup"
    )
    restore: str | None = Field(
        default=None,
        min_length=1,
        description="runs on a new host after setup; the backup on stdin",
    )
    postgres: PostgresSettings | None = Field(default=None, description="engine pgbackrest")
    archive_timeout: Duration = Field(
        default=60.0, gt=0, le=_DAY, description="pgbackrest: WAL is pushed at least this often"
    )
    full_every: Duration = Field(
        default=_DAY, gt=0, le=30 * _DAY, description="pgbackrest: full backups; diff every `every`"
    )
    every: Duration = Field(
        default=300.0, gt=0, le=_DAY, description="how often check/watch back up"
    )
    stores: list[str] | None = Field(default=None, description="default: every store")
    keep: int = Field(default=24, ge=1, le=10000, description="backups kept in each store")
    max_age: Duration | None = Field(
        default=None,
        gt=0,
        le=30 * _DAY,
        description="check is WARNING when the newest backup is older; default: 3 x every",
    )
    encryption_key: str | None = Field(
        default=None, min_length=16, description="encrypts backups (AES-256-GCM) before upload"
    )
    timeout: Duration = Field(
        default=3600.0, gt=0, le=_DAY, description="how long one backup or restore may run"
    )
    quiesce: str | None = Field(
        default=None,
        min_length=1,
        description="runs on the old host before a move's final backup: stop taking writes",
    )

    @field_validator("stores")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("must have at least one entry (or leave it out: every store)")
            if len(set(value)) != len(value):
                raise ValueError("lists a store twice")
            for name in value:
                if not re.match(_NAME, name):
                    raise ValueError(f"{name!r} is not a store name")
        return value

    @model_validator(mode="after")
    def _engine(self) -> DataConfig:
        if self.engine == "pgbackrest":
            if self.postgres is None:
                raise ValueError("engine pgbackrest needs `postgres` (data_dir, bin_dir, user)")
            if self.backup or self.restore:
                raise ValueError("engine pgbackrest takes no backup/restore commands")
        elif not (self.backup and self.restore):
            raise ValueError("needs `backup` and `restore` commands (or engine: pgbackrest)")
        return self

    def backup_max_age(self) -> float:
        """How old the newest backup may be (pgbackrest: the WAL is what ages fast)."""
        return 3 * self.every if self.engine == "pgbackrest" else self.oldest_ok()

    def oldest_ok(self) -> float:
        if self.max_age is not None:
            return self.max_age
        return 4 * self.archive_timeout if self.engine == "pgbackrest" else 3 * self.every


def store_vendor(store: StoreBase) -> str:
    """The company a store's data sits at, as far as the config tells ("" unknown)."""
    if getattr(store, "endpoint", None):
        return ""
    return STORE_VENDOR.get(getattr(store, "type", ""), "")
