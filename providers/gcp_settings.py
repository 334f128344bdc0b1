"""The ``gcp`` provider's config section, and the names and labels GCE accepts.

Re-exported by :mod:`providers.gcp`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from providers import _gcp
from providers.base import CloudSettings
from providers.base import Duration

# What GCE accepts as an instance name as it is.
NAME_OK = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_ZONE_OK = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z0-9]+$")


def instance_name(host_name: str) -> str:
    """A valid, deterministic GCE instance name for ``host_name``.

    Names must match ``[a-z]([-a-z0-9]{0,61}[a-z0-9])?``. A name that already does is used
    as is; anything else is lowercased, cleaned and suffixed with a hash of the original,
    so two different host names never map onto one VM.
    """
    if NAME_OK.match(host_name):
        return host_name
    base = re.sub(r"[^a-z0-9-]+", "-", host_name.lower()).strip("-")
    base = re.sub(r"-{2,}", "-", base)
    if not base or not base[0].isalpha():
        base = f"f-{base}".rstrip("-")
    digest = hashlib.sha256(host_name.encode()).hexdigest()[:8]
    return f"{base[: 63 - 9].rstrip('-')}-{digest}"


def label_value(value: str) -> str:
    """GCE label values: at most 63 of ``[a-z0-9_-]``."""
    cleaned = re.sub(r"[^a-z0-9_-]", "-", value.lower())
    if len(cleaned) > 63:
        cleaned = cleaned[:54] + "-" + hashlib.sha256(value.encode()).hexdigest()[:8]
    return cleaned


class GcpSettings(CloudSettings):
    """``type: gcp``: a Compute Engine project and the zones hosts may live in."""

    type: Literal["gcp"] = "gcp"
    project: str = Field(description="Google Cloud project id, e.g. my-project-123456")
    zone: str | None = Field(default=None, description="the zone for hosts (or use `zones`)")
    zones: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "zones tried in order when one has no capacity, e.g. [us-central1-a, us-central1-b]"
        ),
    )
    machine_type: str = Field(default="e2-small", description="machine type, e.g. e2-small")
    image: str = Field(
        default="projects/debian-cloud/global/images/family/debian-12",
        description=(
            "boot image: projects/P/global/images/NAME, .../images/family/F, or an "
            "image of the project"
        ),
    )
    network: str = Field(default="default", description="VPC network name or URL")
    subnetwork: str | None = Field(
        default=None, description="subnetwork name (in the zone's region) or URL"
    )
    service_account: str | None = Field(
        default=None, description="service account e-mail the VM runs as (none when unset)"
    )
    credentials_file: str | None = Field(
        default=None,
        description=(
            "credentials JSON (service account key, ...); else Application Default Credentials"
        ),
    )
    network_tags: list[str] = Field(
        default_factory=list, description="network tags for firewall rules, e.g. [http-server]"
    )
    disk_size_gb: int | None = Field(default=None, ge=10, description="boot disk size (GB)")
    request_timeout: Duration = Field(default=30.0, description="timeout of one API request")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return _gcp.check_endpoint(value)

    @field_validator("zones")
    @classmethod
    def _zones(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for zone in value:
                if not _ZONE_OK.match(zone):
                    raise ValueError(f"{zone!r} is not a zone name like us-central1-a")
            if len(set(value)) != len(value):
                raise ValueError("zones must not repeat")
        return value

    @model_validator(mode="after")
    def _one_of_zone(self) -> GcpSettings:
        if (self.zone is None) == (self.zones is None):
            raise ValueError("set exactly one of `zone` or `zones`")
        if self.zone is not None and not _ZONE_OK.match(self.zone):
            raise ValueError(f"{self.zone!r} is not a zone name like us-central1-a")
        return self

    @property
    def zone_list(self) -> list[str]:
        return list(self.zones) if self.zones else [self.zone or ""]
