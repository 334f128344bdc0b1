"""The ARM documents the Azure compute provider writes and reads, without a client: the
bodies of a host's public IP, NIC and VM, a VM (with its NIC and IP) as a
:class:`~providers.base.Host`, and what the doctor makes of a subscription and of the
resource SKUs. :mod:`providers.azure` makes the calls.
"""

from __future__ import annotations

import base64
from typing import Any

from providers._azure import dig
from providers.azure_settings import AzureSettings
from providers.base import Check
from providers.base import Host
from providers.base import HostSpec
from providers.base import HostState


def last_segment(resource_id: str | None) -> str | None:
    if not resource_id:
        return None
    return resource_id.rstrip("/").rsplit("/", 1)[-1] or None


# ----------------------------------------------------------------- create


def pip_body(s: AzureSettings, tags: dict[str, str], zones: list[str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "location": s.location,
        "tags": tags,
        "sku": {"name": "Standard"},
        "properties": {
            "publicIPAllocationMethod": "Static",
            "publicIPAddressVersion": "IPv4",
        },
    }
    if zones:
        body["zones"] = zones
    return body


def nic_body(s: AzureSettings, tags: dict[str, str], pip_id: str | None) -> dict[str, Any]:
    return {
        "location": s.location,
        "tags": tags,
        "properties": {
            "ipConfigurations": [
                {
                    "name": "ipconfig1",
                    "properties": {
                        "privateIPAllocationMethod": "Dynamic",
                        "subnet": {"id": s.subnet_id},
                        "publicIPAddress": {"id": pip_id},
                    },
                }
            ]
        },
    }


def vm_body(
    s: AzureSettings,
    spec: HostSpec,
    names: dict[str, str],
    nic_id: str | None,
    tags: dict[str, str],
    zones: list[str] | None,
) -> dict[str, Any]:
    if s.image.startswith("/subscriptions/"):
        image: dict[str, Any] = {"id": s.image}
    else:
        publisher, offer, sku, version = s.image.split(":")
        image = {"publisher": publisher, "offer": offer, "sku": sku, "version": version}
    os_profile: dict[str, Any] = {
        "computerName": names["vm"][:63],
        "adminUsername": s.admin_username,
        "linuxConfiguration": {
            "disablePasswordAuthentication": True,
            "ssh": {
                "publicKeys": [
                    {
                        "path": f"/home/{s.admin_username}/.ssh/authorized_keys",
                        "keyData": s.ssh_public_key.strip(),
                    }
                ]
            },
        },
    }
    if spec.user_data:
        os_profile["customData"] = base64.b64encode(spec.user_data.encode()).decode()
    body: dict[str, Any] = {
        "location": s.location,
        "tags": tags,
        "properties": {
            "hardwareProfile": {"vmSize": s.size},
            "storageProfile": {
                "imageReference": image,
                "osDisk": {
                    "name": names["disk"],
                    "createOption": "FromImage",
                    "caching": "ReadWrite",
                    "managedDisk": {"storageAccountType": s.os_disk_type},
                },
            },
            "osProfile": os_profile,
            "networkProfile": {
                "networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]
            },
        },
    }
    if zones:
        body["zones"] = zones
    return body


# ----------------------------------------------------------------- read


def to_host(
    vm: dict[str, Any],
    nic: dict[str, Any] | None,
    pip: dict[str, Any] | None,
    *,
    provider: str,
    resource_group: str,
) -> Host:
    props = vm.get("properties") or {}
    tags = vm.get("tags") or {}
    provisioning = str(props.get("provisioningState") or "")
    statuses = dig(props, "instanceView", "statuses") or []
    power = _power(statuses)
    state, reason = _state(provisioning, power)
    if state is HostState.UNKNOWN and provisioning.lower() == "failed":
        for status in statuses:
            if isinstance(status, dict) and str(status.get("code", "")).startswith(
                "ProvisioningState/failed"
            ):
                reason = status.get("message") or status.get("displayStatus") or reason
    zones = vm.get("zones") or []
    try:
        generation = int(tags.get("failover-generation", "0"))
    except ValueError:
        generation = 0
    name = str(vm.get("name") or "")
    return Host(
        id=name,
        provider=provider,
        name=tags.get("Name", name),
        service=tags.get("failover-service", ""),
        generation=generation,
        state=state,
        raw_state=f"{provisioning}/{power}" if power else provisioning,
        reason=reason,
        address=dig(pip, "properties", "ipAddress"),
        private_address=dig(
            nic, "properties", "ipConfigurations", 0, "properties", "privateIPAddress"
        ),
        zone=zones[0] if zones else None,
        created_at=props.get("timeCreated"),
        purpose=tags.get("failover-purpose", "serve"),
        extra={
            "resource_group": resource_group,
            "location": vm.get("location"),
            "vm_id": vm.get("id"),
            "nic": (nic or {}).get("name"),
            "public_ip": (pip or {}).get("name"),
            "os_disk": dig(props, "storageProfile", "osDisk", "name"),
            "size": dig(props, "hardwareProfile", "vmSize"),
        },
    )


def _power(statuses: list[Any]) -> str:
    """The VM's power state from its instance view (the last ``PowerState/`` code)."""
    power = ""
    for status in statuses:
        code = str(status.get("code") or "") if isinstance(status, dict) else ""
        if code.startswith("PowerState/"):
            power = code.split("/", 1)[1]
    return power


def _state(provisioning: str, power: str) -> tuple[HostState, str | None]:
    p = provisioning.lower()
    if p == "deleting":
        return HostState.TERMINATED, "deleting"
    if p == "failed":
        return HostState.UNKNOWN, "provisioning failed"
    if p in ("creating", "updating", "migrating"):
        return HostState.PENDING, None
    match power.lower():
        case "running":
            return HostState.RUNNING, None
        case "starting":
            return HostState.PENDING, None
        case "stopped" | "stopping":
            return HostState.STOPPED, "stopped (still allocated)"
        case "deallocated" | "deallocating":
            return HostState.STOPPED, "deallocated"
    if not power:
        return HostState.PENDING, None
    return HostState.UNKNOWN, f"power state {power}"


# ----------------------------------------------------------------- doctor


def subscription_check(sub: dict[str, Any], subscription_id: str) -> tuple[Check, str | None]:
    """The doctor's line for the subscription, and why it blocks the account (or None)."""
    sub_state = str(sub.get("state") or "unknown")
    label = f"{sub.get('displayName') or subscription_id}: {sub_state}"
    if sub_state in ("Disabled", "Deleted", "Expired"):
        return Check("subscription", False, label), f"subscription is {sub_state}"
    if sub_state in ("Warned", "PastDue"):
        return Check("subscription", False, label, level="warning"), None
    return Check("subscription", True, label), None


def size_check(s: AzureSettings, skus: list[dict[str, Any]]) -> Check:
    """Is ``s.size`` offered in the location (and the configured zones), by the resource
    SKUs listed for the location."""
    location = s.location.lower()
    match = None
    for sku in skus:
        if sku.get("resourceType") != "virtualMachines":
            continue
        if str(sku.get("name", "")).lower() != s.size.lower():
            continue
        if location in [str(loc).lower() for loc in sku.get("locations") or []]:
            match = sku
            break
    if match is None:
        return Check("vm size", False, f"{s.size} is not offered in {s.location}")
    restricted_zones: set[str] = set()
    for restriction in match.get("restrictions") or []:
        kind = restriction.get("type")
        reason = restriction.get("reasonCode") or "restricted"
        if kind == "Location":
            return Check("vm size", False, f"{s.size} in {s.location}: {reason}")
        if kind == "Zone":
            restricted_zones.update(dig(restriction, "restrictionInfo", "zones") or [])
    offered: set[str] = set()
    for info in match.get("locationInfo") or []:
        if str(info.get("location", "")).lower() == location:
            offered.update(info.get("zones") or [])
    if s.zones:
        usable = [z for z in s.zones if z in offered and z not in restricted_zones]
        missing = [z for z in s.zones if z not in usable]
        if not usable:
            return Check(
                "vm size",
                False,
                f"{s.size} is offered in none of zones {s.zones} of {s.location}",
            )
        if missing:
            return Check(
                "vm size",
                False,
                f"{s.size} in {s.location}: not in zone(s) {', '.join(missing)}",
                level="warning",
            )
    return Check("vm size", True, f"{s.size} available in {s.location}")
