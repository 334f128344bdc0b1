"""End to end through the ``failover`` command: local alpha -> Azure (the ARM double) -> beta.

The Azure VM of the double gets a public IP in 127.80.0.0/16 where nothing listens, so it
can never pass a probe: the engine must create it (VM, NIC, public IP, OS disk), wait
``ready_timeout``, delete all of it and land the service on ``beta``. A disabled
subscription must show up as a ``blocked`` provider and be skipped.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.doubles.azure import AzureDouble
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import dns_values
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import kill_active
from tests.helpers import write_config

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFailoverTestKeyOnlyNotARealKeyxxxxxxxxxxx test"


@pytest.fixture
def az() -> Iterator[AzureDouble]:
    try:
        found = importlib.util.find_spec("azure.mgmt.compute")
    except ModuleNotFoundError:
        found = None
    need(found, "Azure SDKs missing (pip install -e '.[azure]')")
    with AzureDouble() as double:
        yield double


@pytest.fixture
def config(tmp_path: Path, az: AzureDouble) -> Iterator[Path]:
    data: dict[str, Any] = base_config(
        policy={"ready_timeout": "3s", "providers": ["alpha", "azure", "beta"]}
    )
    data["providers"] = [
        {"name": "alpha", "type": "local"},
        {
            "name": "azure",
            "type": "azure",
            "subscription_id": az.subscription,
            "resource_group": az.resource_group,
            "location": az.location,
            "zones": ["1"],
            "size": "Standard_B1s",
            "image": "Canonical:ubuntu-24_04-lts:server:latest",
            "subnet_id": az.subnet_id(),
            "admin_username": "failover",
            "ssh_public_key": KEY,
            "endpoint": az.url,
            "retry_attempts": 2,
            "retry_max_time": "2s",
            "operation_timeout": "10s",
        },
        {"name": "beta", "type": "local"},
    ]
    path = write_config(tmp_path, data)
    yield path
    cleanup(path)


def provider_states(config: Path) -> dict[str, str]:
    status = failover_json("status", config=config)
    return {p["name"]: p["state"] for p in status["services"][0]["providers"]}


def fail_over(config: Path) -> tuple[dict[str, Any], str]:
    """Run `check` (as cron would) until the service has moved off alpha; returns the
    service's status and what the checks printed."""
    output = ""
    for _ in range(8):
        proc = failover("check", config=config, timeout=120)
        output += proc.stdout + proc.stderr
        status = failover_json("status", config=config)
        active = status["services"][0]["active"]
        if active and active["provider"] != "alpha":
            return status["services"][0], output
    raise AssertionError(f"no failover happened: {output}")


def vm_puts(az: AzureDouble) -> list[str]:
    return [
        r["path"]
        for r in az.snapshot()["requests"]
        if r["method"] == "PUT" and "/virtualmachines/" in r["path"].lower()
    ]


def test_validate_accepts_the_azure_entry(config: Path) -> None:
    proc = failover("validate", config=config)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_azure_vm_times_out_is_deleted_and_service_lands_on_beta(
    config: Path, az: AzureDouble
) -> None:
    failover("deploy", config=config, check=True)
    assert failover_json("status", config=config)["services"][0]["active"]["provider"] == "alpha"
    kill_active(config)

    service, output = fail_over(config)
    assert service["active"]["provider"] == "beta"
    assert dns_values(config) == [service["active"]["address"]]

    # Azure was tried: VM, NIC, public IP and OS disk were created...
    assert len(vm_puts(az)) == 1 and "/web-" in vm_puts(az)[0]
    writes = [(r["method"], r["path"].rsplit("/", 2)[-2]) for r in az.snapshot()["requests"]]
    for kind in ("publicIPAddresses", "networkInterfaces", "virtualMachines"):
        assert ("PUT", kind) in writes, writes
    # ... and after ready_timeout everything was deleted: nothing billable is left.
    assert az.snapshot()["resources"] == {"vm": [], "disk": [], "nic": [], "pip": []}
    for kind in ("virtualMachines", "networkInterfaces", "publicIPAddresses", "disks"):
        assert ("DELETE", kind) in writes, writes

    history = failover_json("history", config=config)["events"]
    event = next(e for e in history if e["kind"] == "failover")
    assert event["status"] == "succeeded" and event["to"]["provider"] == "beta"
    assert event["from"]["provider"] == "alpha"
    # it waited the whole ready_timeout (3s) on the Azure VM before giving up on it
    assert event["duration_s"] >= 3, event
    assert "moved from alpha to beta" in output


def test_disabled_subscription_marks_azure_blocked(config: Path, az: AzureDouble) -> None:
    # Every command here loads the Azure SDKs (seconds each): doctor alone shows the
    # provider available before; status and doctor show it blocked after.
    doctor = failover_json("doctor", config=config)
    azure = next(p for p in doctor["providers"] if p["name"] == "azure")
    assert azure["state"] == "available"
    assert [c["name"] for c in azure["checks"]] == ["subscription", "resource group", "vm size"]

    az.set_subscription_state("Disabled")
    assert provider_states(config)["azure"] == "blocked"
    doctor = failover_json("doctor", config=config)
    azure = next(p for p in doctor["providers"] if p["name"] == "azure")
    assert azure["state"] == "blocked" and "Disabled" in azure["reason"]
    assert doctor["ok"] is False

    failover("deploy", config=config, check=True)
    kill_active(config)
    service, _ = fail_over(config)
    assert service["active"]["provider"] == "beta"
    assert vm_puts(az) == []  # a blocked provider is skipped, not tried
    assert {p["name"]: p["state"] for p in service["providers"]}["azure"] == "blocked"
