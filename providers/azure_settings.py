"""The ``azure`` provider's config section, and the names a host's resources take.

Re-exported by :mod:`providers.azure`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import Field
from pydantic import field_validator

from providers.base import CloudSettings
from providers.base import Duration

_NAME_BAD = re.compile(r"[^A-Za-z0-9-]+")


class AzureSettings(CloudSettings):
    """``providers: [{type: azure, ...}]``."""

    type: Literal["azure"] = "azure"
    subscription_id: str = Field(description="subscription that pays for the VMs")
    resource_group: str = Field(description="existing resource group every resource goes into")
    location: str = Field(description="Azure location (region), e.g. westeurope")
    zones: list[str] = Field(
        default_factory=list,
        description="availability zones to try in order (e.g. ['1', '2', '3']); empty: regional",
    )
    size: str = Field(default="Standard_B1s", description="VM size")
    image: str = Field(
        default="Canonical:ubuntu-24_04-lts:server:latest",
        description="marketplace image publisher:offer:sku:version, or an image resource id",
    )
    subnet_id: str = Field(description="resource id of the subnet the NIC joins")
    admin_username: str = Field(default="failover", description="Linux admin user")
    ssh_public_key: str = Field(description="OpenSSH public key installed for admin_username")
    os_disk_type: str = Field(default="StandardSSD_LRS", description="managed OS disk SKU")
    polling_interval: Duration | None = Field(
        default=None,
        description="seconds between polls of a long-running operation; default: what Azure "
        "asks for (Retry-After), 0 for a loopback test endpoint",
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if value.startswith("/subscriptions/"):
            return value
        parts = value.split(":")
        if len(parts) != 4 or not all(parts):
            raise ValueError("use publisher:offer:sku:version (or an image resource id)")
        return value

    @field_validator("subnet_id")
    @classmethod
    def _subnet(cls, value: str) -> str:
        if "/subnets/" not in value.lower():
            raise ValueError(
                "a subnet resource id: /subscriptions/.../virtualNetworks/NET/subnets/NAME"
            )
        return value


def resource_names(host_name: str) -> dict[str, str]:
    """VM, NIC, public IP and OS disk names for a host (Azure: letters, digits, hyphens)."""
    base = _NAME_BAD.sub("-", host_name).strip("-") or "host"
    if len(base) > 56:
        digest = hashlib.sha1(host_name.encode()).hexdigest()[:8]
        base = f"{base[:47].rstrip('-')}-{digest}"
    return {
        "vm": base,
        "nic": f"{base}-nic",
        "pip": f"{base}-pip",
        "disk": f"{base}-osdisk",
    }
