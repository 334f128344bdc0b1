"""The Azure provider and Azure DNS backend, through the real SDKs, against the ARM double.

No SDK class is patched: the provider builds its own ``ComputeManagementClient`` /
``NetworkManagementClient`` / ``DnsManagementClient`` with ``base_url`` = the double, a
static token (loopback http endpoint) and ``polling_interval=0``; every fault is injected
on the wire by the double's control API.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.azure import AzureProvider
from providers.azure import AzureSettings
from providers.azure import resource_names
from providers.base import AccountBlocked
from providers.base import CapacityError
from providers.base import ConflictError
from providers.base import HostSpec
from providers.base import HostState
from providers.base import NotFound
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import QuotaError
from providers.base import RunSpec
from providers.base import TransientError
from providers.base import dns_class
from providers.base import provider_class
from providers.dns.azuredns import AzureDns
from providers.dns.azuredns import AzureDnsSettings
from tests.conftest import need
from tests.doubles.azure import AzureDouble

ROOT = Path(__file__).resolve().parent.parent
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFailoverTestKeyOnlyNotARealKeyxxxxxxxxxxx test"
USER_DATA = "#cloud-config\nruncmd:\n  - echo hello from failover\n"


SDKS = ("azure.mgmt.compute", "azure.mgmt.network", "azure.mgmt.dns", "azure.identity")


@pytest.fixture(autouse=True)
def _sdks() -> None:
    missing = []
    for module in SDKS:
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            missing.append(module)
    need(not missing, f"Azure SDKs missing: {missing} (pip install -e '.[azure]')")


@pytest.fixture
def az() -> Iterator[AzureDouble]:
    with AzureDouble() as double:
        yield double


def make(az: AzureDouble, tmp_path: Path, **overrides: Any) -> AzureProvider:
    fields: dict[str, Any] = {
        "name": "az",
        "type": "azure",
        "subscription_id": az.subscription,
        "resource_group": az.resource_group,
        "location": az.location,
        "subnet_id": az.subnet_id(),
        "ssh_public_key": KEY,
        "endpoint": az.url,
        "retry_attempts": 3,
        "retry_max_time": 5,
        "operation_timeout": 10,
    }
    fields.update(overrides)
    logs: list[str] = []
    provider = AzureProvider(
        AzureSettings(**fields), ProviderContext(state_dir=tmp_path, log=logs.append)
    )
    provider.logs = logs  # type: ignore[attr-defined]
    return provider


@pytest.fixture
def provider(az: AzureDouble, tmp_path: Path) -> Iterator[AzureProvider]:
    p = make(az, tmp_path)
    yield p
    p.close()


def spec(name: str = "web-g1-az", service: str = "web", generation: int = 1) -> HostSpec:
    return HostSpec(
        name=name,
        service=service,
        generation=generation,
        port=8080,
        run=RunSpec(command="python3 -m http.server {port}"),
        user_data=USER_DATA,
    )


def resources(az: AzureDouble) -> dict[str, list[str]]:
    return az.snapshot()["resources"]


def nothing_left(az: AzureDouble) -> bool:
    return all(not names for names in resources(az).values())


def puts(az: AzureDouble, fragment: str) -> int:
    return sum(
        1
        for r in az.snapshot()["requests"]
        if r["method"] == "PUT" and fragment.lower() in r["path"].lower()
    )


# --------------------------------------------------------------------------- registry


def test_registry_settings_and_lazy_import() -> None:
    assert provider_class("azure") is AzureProvider
    assert dns_class("azuredns") is AzureDns
    assert AzureProvider.vendor == AzureDns.vendor == "microsoft"
    code = (
        "import sys, providers.azure, providers.dns.azuredns; "
        "bad = [m for m in sys.modules if m.startswith('azure')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)

    base = {
        "name": "az",
        "type": "azure",
        "subscription_id": "s",
        "resource_group": "rg",
        "location": "westeurope",
        "subnet_id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network"
        "/virtualNetworks/v/subnets/default",
        "ssh_public_key": KEY,
    }
    settings = AzureSettings(**base, zones=["1", "2"], operation_timeout="2m")
    assert settings.operation_timeout == 120 and settings.zones == ["1", "2"]
    with pytest.raises(ValueError, match="publisher:offer:sku:version"):
        AzureSettings(**base, image="Canonical:ubuntu")
    with pytest.raises(ValueError, match="subnet"):
        AzureSettings(**{**base, "subnet_id": "default"})
    with pytest.raises(ValueError, match="extra"):
        AzureSettings(**base, region="westeurope")
    AzureDnsSettings(type="azuredns", zone="example.test", subscription_id="s", resource_group="r")


def test_names_are_derived_from_the_host_name() -> None:
    names = resource_names("web-g3-azure")
    assert names == {
        "vm": "web-g3-azure",
        "nic": "web-g3-azure-nic",
        "pip": "web-g3-azure-pip",
        "disk": "web-g3-azure-osdisk",
    }
    long = resource_names("x" * 100 + "_drill")
    assert len(long["vm"]) <= 56 and long == resource_names("x" * 100 + "_drill")


# --------------------------------------------------------------------------- hosts


def test_create_get_list_stop_destroy(az: AzureDouble, provider: AzureProvider) -> None:
    host = provider.create_host(spec())
    assert host.id == "web-g1-az" and host.provider == "az"
    assert host.state is HostState.RUNNING and host.raw_state == "Succeeded/running"
    assert host.address and host.address.startswith("127.80.")
    assert host.service == "web" and host.generation == 1 and host.purpose == "serve"
    assert host.extra["nic"] == "web-g1-az-nic" and host.extra["os_disk"] == "web-g1-az-osdisk"
    assert resources(az) == {
        "vm": ["web-g1-az"],
        "disk": ["web-g1-az-osdisk"],
        "nic": ["web-g1-az-nic"],
        "pip": ["web-g1-az-pip"],
    }
    vm = az.snapshot()["vms"]["web-g1-az"]
    assert vm["customData"] == USER_DATA  # sent base64, decoded by the double
    assert vm["tags"] == {
        "failover-service": "web",
        "failover-generation": "1",
        "failover-purpose": "serve",
        "Name": "web-g1-az",
    }

    got = provider.get_host(host.id)
    assert got is not None and got.address == host.address and got.state is HostState.RUNNING

    provider.create_host(spec("api-g1-az", service="api"))
    listed = provider.list_hosts("web")
    assert [h.id for h in listed] == ["web-g1-az"]
    assert listed[0].address == host.address

    provider.stop_host(host.id)
    stopped = provider.get_host(host.id)
    assert stopped is not None and stopped.state is HostState.STOPPED
    assert stopped.raw_state == "Succeeded/deallocated"

    provider.destroy_host(host.id)
    provider.destroy_host("api-g1-az")
    assert nothing_left(az)
    assert provider.get_host(host.id) is None
    provider.destroy_host(host.id)  # a missing host is fine
    provider.stop_host(host.id)  # and stopping it too


def reads(az: AzureDouble) -> list[tuple[str, dict[str, str]]]:
    """Every GET the double saw, as (path after the subscription, query)."""
    prefix = f"/subscriptions/{az.subscription}"
    return [
        (r["path"].removeprefix(prefix), r["query"])
        for r in az.snapshot()["requests"]
        if r["method"] == "GET"
    ]


def test_get_hosts_is_four_lists_and_says_what_get_host_says(
    az: AzureDouble, provider: AzureProvider
) -> None:
    running = provider.create_host(spec()).id
    stopped = provider.create_host(spec("api-g1-az", service="api")).id
    provider.stop_host(stopped)
    ids = [running, stopped, "never-made", "WEB-G1-AZ"]  # ARM names ignore case
    one_by_one = {host_id: provider.get_host(host_id) for host_id in ids}
    seen = len(reads(az))
    batched = provider.get_hosts(ids)
    assert batched == one_by_one
    assert batched[running].state is HostState.RUNNING  # type: ignore[union-attr]
    assert batched[running].address  # type: ignore[union-attr]
    assert batched[stopped].raw_state == "Succeeded/deallocated"  # type: ignore[union-attr]
    assert batched["never-made"] is None
    rg = f"/resourceGroups/{az.resource_group}/providers"
    assert [path for path, _ in reads(az)[seen:]] == [
        f"{rg}/Microsoft.Compute/virtualMachines",
        "/providers/Microsoft.Compute/virtualMachines",
        f"{rg}/Microsoft.Network/networkInterfaces",
        f"{rg}/Microsoft.Network/publicIPAddresses",
    ]
    assert reads(az)[seen + 1][1]["statusOnly"] == "true"
    # Nothing asked for exists: one list, no more.
    seen = len(reads(az))
    assert provider.get_hosts(["never-made", "gone"]) == {"never-made": None, "gone": None}
    assert len(reads(az)) == seen + 1
    assert provider.get_hosts([]) == {} and len(reads(az)) == seen + 1
    az.fail("AuthorizationFailed", method="GET", path="/virtualMachines")
    with pytest.raises(AccountBlocked) as info:
        provider.get_hosts(ids)  # a refusal of the whole batch stays a refusal
    assert info.value.code == "AuthorizationFailed"


def test_create_is_idempotent_on_name(az: AzureDouble, provider: AzureProvider) -> None:
    first = provider.create_host(spec())
    again = provider.create_host(spec())
    assert again.id == first.id and again.address == first.address
    assert puts(az, "/virtualMachines/") == 1  # found, not created again
    assert {k: len(v) for k, v in resources(az).items()} == {
        "vm": 1,
        "disk": 1,
        "nic": 1,
        "pip": 1,
    }


def test_create_resumes_over_half_made_resources(
    az: AzureDouble, provider: AzureProvider, tmp_path: Path
) -> None:
    once = make(az, tmp_path, retry_attempts=1)
    az.fail("InternalServerError", method="PUT", path="/virtualMachines/")
    with pytest.raises(TransientError):
        once.create_host(spec())
    assert nothing_left(az)  # the failed create cleaned up after itself
    # A first attempt made the public IP, then the process died before the NIC and VM.
    _, network = provider._clients()
    rg = az.resource_group
    pip = network.public_ip_addresses.begin_create_or_update(
        rg, "web-g1-az-pip", {"location": az.location, "properties": {}}
    ).result()
    assert pip.id
    host = provider.create_host(spec())
    assert host.state is HostState.RUNNING
    assert resources(az)["pip"] == ["web-g1-az-pip"]  # the same IP, PUT again


def test_transient_first_response_is_retried(az: AzureDouble, provider: AzureProvider) -> None:
    az.fail("ServiceUnavailable", method="PUT", path="/virtualMachines/")
    az.fail("TooManyRequests", method="PUT", path="/networkInterfaces/", retry_after=0)
    host = provider.create_host(spec())
    assert host.state is HostState.RUNNING
    assert puts(az, "/virtualMachines/") == 2 and puts(az, "/networkInterfaces/") == 2
    assert len(resources(az)["vm"]) == 1


def test_failed_vm_is_replaced_on_retry(az: AzureDouble, provider: AzureProvider) -> None:
    az.fail("OSProvisioningClientError", stage="lro", method="PUT", path="/virtualMachines/")
    az.fail("Conflict", method="DELETE", path="/virtualMachines/")  # and the cleanup fails
    with pytest.raises(ProviderError, match="OSProvisioningClientError") as info:
        provider.create_host(spec())
    assert "could not delete VM web-g1-az" in info.value.message
    assert az.snapshot()["vms"]["web-g1-az"]["provisioningState"] == "Failed"
    failed = provider.get_host("web-g1-az")
    assert failed is not None and failed.state is HostState.UNKNOWN
    assert failed.raw_state == "Failed"
    host = provider.create_host(spec())  # the Failed VM is deleted and made again
    assert host.state is HostState.RUNNING
    assert {k: len(v) for k, v in resources(az).items()} == {
        "vm": 1,
        "disk": 1,
        "nic": 1,
        "pip": 1,
    }


# --------------------------------------------------------------------------- zones


def test_capacity_moves_to_the_next_zone_and_cleans_up(az: AzureDouble, tmp_path: Path) -> None:
    p = make(az, tmp_path, zones=["1", "2", "3"])
    az.fail("ZonalAllocationFailed", stage="lro", method="PUT", path="/virtualMachines/")
    az.fail("SkuNotAvailable", method="PUT", path="/virtualMachines/")
    host = p.create_host(spec())
    assert host.zone == "3" and host.state is HostState.RUNNING
    snap = az.snapshot()
    assert snap["vms"]["web-g1-az"]["zones"] == ["3"]
    assert {k: len(v) for k, v in snap["resources"].items()} == {
        "vm": 1,
        "disk": 1,
        "nic": 1,
        "pip": 1,
    }
    logs = "\n".join(p.logs)  # type: ignore[attr-defined]
    # first-response faults are served before in-operation ones: zone 1 had no such size,
    # zone 2 ran out of capacity during the operation, zone 3 took it
    assert "westeurope-1: az: create VM web-g1-az" in logs and "[SkuNotAvailable]" in logs
    assert "westeurope-2: az: create VM web-g1-az" in logs and "[ZonalAllocationFailed]" in logs


def test_capacity_everywhere_fails_cleanly(az: AzureDouble, tmp_path: Path) -> None:
    p = make(az, tmp_path, zones=["1", "2"])
    az.fail("AllocationFailed", stage="lro", method="PUT", path="/virtualMachines/", times=2)
    with pytest.raises(CapacityError) as info:
        p.create_host(spec())
    err = info.value
    assert err.code == "AllocationFailed" and err.provider == "az"
    assert err.scope == "westeurope"  # the whole location is exhausted now
    assert isinstance(err.__cause__, CapacityError) and err.__cause__.scope == "westeurope-2"
    assert "westeurope-1, westeurope-2" in err.message
    assert nothing_left(az)  # VM (Failed), its OS disk, NIC and IP all deleted


def test_quota_in_a_zone_then_capacity_in_the_next(az: AzureDouble, tmp_path: Path) -> None:
    p = make(az, tmp_path, zones=["1", "2"])
    az.fail("QuotaExceeded", method="PUT", path="/virtualMachines/")
    az.fail("OverconstrainedAllocationRequest", stage="lro", path="/virtualMachines/")
    with pytest.raises(CapacityError) as info:
        p.create_host(spec())
    assert info.value.code == "OverconstrainedAllocationRequest"
    assert nothing_left(az)


# --------------------------------------------------------------------------- errors

ACCOUNT = [
    "AuthenticationFailed",
    "AuthorizationFailed",
    "InvalidAuthenticationToken",
    "SubscriptionNotFound",
    "ReadOnlyDisabledSubscription",
    "DisabledSubscription",
]


@pytest.mark.parametrize("code", ACCOUNT)
def test_account_errors_block_the_whole_provider(
    az: AzureDouble, tmp_path: Path, code: str
) -> None:
    p = make(az, tmp_path, zones=["1", "2"])
    az.fail(code, method="PUT", path="/virtualMachines/")
    with pytest.raises(AccountBlocked) as info:
        p.create_host(spec())
    assert info.value.code == code and info.value.provider == "az"
    assert info.value.scope is None and info.value.hint
    assert puts(az, "/virtualMachines/") == 1  # no second zone: the provider is refused
    assert nothing_left(az)


def test_client_authentication_error_blocks(az: AzureDouble, provider: AzureProvider) -> None:
    # Any 401 comes out of azure-core as ClientAuthenticationError, whatever its ARM code.
    az.fail("ExpiredAuthenticationToken", method="GET", path="/virtualMachines/")
    with pytest.raises(AccountBlocked) as info:
        provider.get_host("web-g1-az")
    assert info.value.code == "ExpiredAuthenticationToken"


def test_403_is_account_blocked_in_lro_too(az: AzureDouble, provider: AzureProvider) -> None:
    az.fail("AuthorizationFailed", stage="lro", method="PUT", path="/publicIPAddresses/")
    with pytest.raises(AccountBlocked, match="does not have authorization"):
        provider.create_host(spec())


@pytest.mark.parametrize(
    ("code", "stage", "message", "expected"),
    [
        ("SkuNotAvailable", "first", None, CapacityError),
        ("AllocationFailed", "first", None, CapacityError),
        ("AllocationFailed", "lro", None, CapacityError),
        ("ZonalAllocationFailed", "lro", None, CapacityError),
        ("OverconstrainedAllocationRequest", "first", None, CapacityError),
        ("QuotaExceeded", "first", None, QuotaError),
        ("QuotaExceeded", "lro", None, QuotaError),
        ("OperationNotAllowed", "first", None, QuotaError),  # the double's text names a quota
        ("OperationNotAllowed", "lro", None, QuotaError),
        ("OperationNotAllowed", "first", "The VM is being updated.", ProviderError),
        ("InvalidParameter", "first", "Bad image.", ProviderError),
    ],
)
def test_create_error_mapping(
    az: AzureDouble,
    provider: AzureProvider,
    code: str,
    stage: str,
    message: str | None,
    expected: type[ProviderError],
) -> None:
    az.fail(code, stage=stage, method="PUT", path="/virtualMachines/", message=message)
    with pytest.raises(ProviderError) as info:
        provider.create_host(spec())
    assert type(info.value) is expected, info.value
    assert info.value.code == code and info.value.provider == "az"
    if expected in (CapacityError, QuotaError):
        assert info.value.scope == "westeurope"
    assert nothing_left(az)


@pytest.mark.parametrize(
    ("code", "stage"),
    [
        ("TooManyRequests", "first"),
        ("RetryableError", "first"),
        ("InternalServerError", "first"),
        ("ServiceUnavailable", "first"),
        ("RetryableError", "lro"),
        ("InternalServerError", "lro"),
    ],
)
def test_transient_errors_retried_then_given_up(
    az: AzureDouble, tmp_path: Path, code: str, stage: str
) -> None:
    p = make(az, tmp_path, retry_attempts=2, retry_max_time=3)
    az.fail(code, stage=stage, method="PUT", path="/networkInterfaces/", times=10, retry_after=0)
    with pytest.raises(TransientError) as info:
        p.create_host(spec())
    assert info.value.code == code
    assert puts(az, "/networkInterfaces/") == 2  # bounded by retry_attempts
    assert nothing_left(az)


def test_transient_in_lro_then_success(az: AzureDouble, provider: AzureProvider) -> None:
    az.fail("RetryableError", stage="lro", method="PUT", path="/virtualMachines/")
    host = provider.create_host(spec())
    assert host.state is HostState.RUNNING
    assert puts(az, "/virtualMachines/") == 2


def test_retry_after_is_read(az: AzureDouble, tmp_path: Path) -> None:
    p = make(az, tmp_path, retry_attempts=1)
    az.fail("TooManyRequests", method="GET", path="/virtualMachines/", retry_after=7)
    with pytest.raises(TransientError) as info:
        p.get_host("web-g1-az")
    assert info.value.retry_after == 7.0 and info.value.code == "TooManyRequests"


def test_not_found(az: AzureDouble, provider: AzureProvider) -> None:
    assert provider.get_host("nope") is None
    compute, _ = provider._clients()
    with pytest.raises(NotFound) as info:
        provider._call(lambda: compute.disks.get(az.resource_group, "nope"), "read disk")
    assert info.value.code == "ResourceNotFound"
    az.fail("ResourceNotFound", method="PUT", path="/publicIPAddresses/")
    with pytest.raises(NotFound):
        provider.create_host(spec())


def test_missing_resource_group(az: AzureDouble, tmp_path: Path) -> None:
    p = make(az, tmp_path, resource_group="nope-rg")
    with pytest.raises(ProviderError) as info:
        p.create_host(spec())
    assert info.value.code == "ResourceGroupNotFound" and "az group create" in str(info.value)
    report = p.check_account()
    assert report.state == "unknown"
    rg = next(c for c in report.checks if c.name == "resource group")
    assert not rg.ok and "could not be found" in rg.detail and "az group create" in rg.detail


def test_unreachable_endpoint_is_transient(tmp_path: Path, az: AzureDouble) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = make(az, tmp_path, endpoint=f"http://127.0.0.1:{port}", retry_attempts=1)
    with pytest.raises(TransientError):
        p.get_host("x")
    report = p.check_account()
    assert report.state == "unknown" and report.reason


def test_operation_timeout_is_bounded_and_cleanup_says_what_is_left(
    az: AzureDouble, tmp_path: Path
) -> None:
    p = make(az, tmp_path, operation_timeout=0.3, polling_interval=0.05, retry_attempts=1)
    az.set_lro(hang=True)
    try:
        with pytest.raises(ProviderError) as info:
            p.create_host(spec())
        text = str(info.value)
        # The IP's create timed out, and so did its delete: said, with where.
        assert "public IP web-g1-az-pip" in text and "resource group failover-rg" in text
        assert "OperationTimedOut" in text
    finally:
        az.set_lro(hang=False)
    p.destroy_host("web-g1-az")
    assert nothing_left(az)


def test_cleanup_failure_names_what_was_left(az: AzureDouble, provider: AzureProvider) -> None:
    az.fail("AllocationFailed", stage="lro", method="PUT", path="/virtualMachines/")
    az.fail("Conflict", method="DELETE", path="/networkInterfaces/", message="NIC is busy.")
    with pytest.raises(ProviderError) as info:
        provider.create_host(spec())
    err = info.value
    assert type(err) is ProviderError
    assert "NIC web-g1-az-nic" in err.message and "failover-rg" in err.message
    assert "AllocationFailed" in err.message  # what happened before
    left = resources(az)
    assert left["vm"] == [] and left["nic"] == ["web-g1-az-nic"]
    assert left["pip"] == [] or left["pip"] == ["web-g1-az-pip"]  # IP held by the NIC
    provider.destroy_host("web-g1-az")
    assert nothing_left(az)


def test_destroy_when_the_vm_is_already_gone(az: AzureDouble, provider: AzureProvider) -> None:
    provider.create_host(spec())
    compute, _ = provider._clients()
    compute.virtual_machines.begin_delete(az.resource_group, "web-g1-az").result()
    assert resources(az)["nic"] and resources(az)["disk"]
    provider.destroy_host("web-g1-az")
    assert nothing_left(az)


def test_disabled_subscription(az: AzureDouble, provider: AzureProvider) -> None:
    provider.create_host(spec())
    az.set_subscription_state("Disabled")
    report = provider.check_account()
    assert report.state == "blocked" and "Disabled" in (report.reason or "")
    assert provider.get_host("web-g1-az") is not None  # reads still work
    with pytest.raises(AccountBlocked) as info:
        provider.create_host(spec("web-g2-az", generation=2))
    assert info.value.code == "ReadOnlyDisabledSubscription"
    with pytest.raises(AccountBlocked):
        provider.destroy_host("web-g1-az")
    assert "web-g2-az" not in resources(az)["vm"]


# --------------------------------------------------------------------------- doctor


def test_check_account(az: AzureDouble, tmp_path: Path) -> None:
    report = make(az, tmp_path, zones=["1", "2"]).check_account()
    assert report.state == "available" and report.reason is None
    assert [c.name for c in report.checks] == ["subscription", "resource group", "vm size"]
    assert all(c.ok for c in report.checks)

    report = make(az, tmp_path, size="Standard_Nope").check_account()
    size = report.checks[-1]
    assert report.state == "unknown" and not size.ok and "not offered" in size.detail

    skus = json.loads(json.dumps(az.state.skus))
    skus[0]["restrictions"] = [
        {
            "type": "Zone",
            "values": [az.location],
            "restrictionInfo": {"locations": [az.location], "zones": ["2"]},
            "reasonCode": "NotAvailableForSubscription",
        }
    ]
    az.state.skus = skus
    size = make(az, tmp_path, zones=["1", "2"]).check_account().checks[-1]
    assert not size.ok and size.level == "warning" and "zone(s) 2" in size.detail
    skus[0]["restrictions"] = [
        {
            "type": "Location",
            "values": [az.location],
            "restrictionInfo": {"locations": [az.location]},
            "reasonCode": "NotAvailableForSubscription",
        }
    ]
    size = make(az, tmp_path).check_account().checks[-1]
    assert not size.ok and size.level == "error" and "NotAvailableForSubscription" in size.detail
    with pytest.raises(CapacityError):  # and create agrees
        make(az, tmp_path).create_host(spec())

    az.fail("AuthorizationFailed", method="GET", path="/subscriptions/")
    report = make(az, tmp_path).check_account()
    assert report.state == "blocked" and "authorization" in (report.reason or "")

    report = make(az, tmp_path, subscription_id="11111111-2222-3333-4444-555555555555")
    blocked = report.check_account()
    assert blocked.state == "blocked" and "could not be found" in (blocked.reason or "")


# --------------------------------------------------------------------------- DNS


@pytest.fixture
def dns(az: AzureDouble, tmp_path: Path) -> Iterator[AzureDns]:
    az.add_zone("example.test")
    settings = AzureDnsSettings(
        type="azuredns",
        zone="example.test",
        ttl=30,
        subscription_id=az.subscription,
        resource_group=az.resource_group,
        endpoint=az.url,
        retry_attempts=2,
        retry_max_time=3,
    )
    d = AzureDns(settings, ProviderContext(state_dir=tmp_path))
    yield d
    d.close()


def record_writes(az: AzureDouble) -> list[dict[str, Any]]:
    return [
        r
        for r in az.snapshot()["requests"]
        if r["method"] in ("PUT", "DELETE", "PATCH") and "/dnszones/" in r["path"].lower()
    ]


def test_dns_replace_is_one_put_and_read_back(az: AzureDouble, dns: AzureDns) -> None:
    assert dns.get_record("www.example.test") is None
    record = dns.set_record("www.example.test", "A", ["127.80.0.9"], 30)
    assert record.to_dict() == {
        "name": "www.example.test",
        "type": "A",
        "values": ["127.80.0.9"],
        "ttl": 30,
    }
    record = dns.set_record("www.example.test.", "A", ["127.80.0.10", "127.80.0.11"], 60)
    assert sorted(record.values) == ["127.80.0.10", "127.80.0.11"] and record.ttl == 60
    writes = record_writes(az)
    assert [w["method"] for w in writes] == ["PUT", "PUT"]  # never delete-then-create
    assert writes[0]["path"].endswith("/A/www")
    stored = az.snapshot()["records"]
    assert len(stored) == 1
    got = dns.get_record("www.example.test", "A")
    assert got is not None and sorted(got.values) == ["127.80.0.10", "127.80.0.11"]
    apex = dns.set_record("example.test", "A", ["127.80.0.12"], 30)
    assert apex.values == ["127.80.0.12"]
    assert record_writes(az)[-1]["path"].endswith("/A/@")
    txt = dns.set_record("www.example.test", "TXT", ["v=1"], 30)
    assert txt.values == ["v=1"]


def test_dns_expect(az: AzureDouble, dns: AzureDns) -> None:
    # expect [] on a missing record: create only if still missing (If-None-Match: *)
    dns.set_record("www.example.test", "A", ["127.80.0.1"], 30, expect=[])
    assert record_writes(az)[-1]["if_none_match"] == "*"
    # matching expect: the write carries the etag read
    dns.set_record("www.example.test", "A", ["127.80.0.2"], 30, expect=["127.80.0.1"])
    etag_sent = record_writes(az)[-1]["if_match"]
    assert etag_sent
    # stale expect: refused before writing
    writes = len(record_writes(az))
    with pytest.raises(ConflictError) as info:
        dns.set_record("www.example.test", "A", ["127.80.0.3"], 30, expect=["127.80.0.1"])
    assert info.value.code == "PreconditionFailed" and len(record_writes(az)) == writes
    with pytest.raises(ConflictError):
        dns.set_record("www.example.test", "A", ["127.80.0.3"], 30, expect=[])
    with pytest.raises(ConflictError):
        dns.set_record("api.example.test", "A", ["127.80.0.3"], 30, expect=["127.80.0.1"])
    # a concurrent write between our read and our PUT: Azure answers 412
    az.fail("PreconditionFailed", stage="race", method="PUT", path="/A/www")
    with pytest.raises(ConflictError) as info:
        dns.set_record("www.example.test", "A", ["127.80.0.4"], 30, expect=["127.80.0.2"])
    assert info.value.code == "PreconditionFailed"
    got = dns.get_record("www.example.test")
    assert got is not None and got.values == ["127.80.0.2"]


def test_dns_read_back_mismatch(az: AzureDouble, dns: AzureDns) -> None:
    dns.set_record("www.example.test", "A", ["127.80.0.1"], 30)
    az.fail("Lost", stage="ignore", method="PUT", path="/A/www")
    with pytest.raises(ProviderError) as info:
        dns.set_record("www.example.test", "A", ["127.80.0.2"], 30)
    assert info.value.code == "ReadBackMismatch"


def test_dns_errors(az: AzureDouble, dns: AzureDns) -> None:
    with pytest.raises(ProviderError, match="not inside the zone"):
        dns.set_record("www.other.test", "A", ["127.80.0.1"], 30)
    with pytest.raises(ProviderError, match="not supported"):
        dns.get_record("www.example.test", "MX")
    az.fail("TooManyRequests", method="PUT", path="/A/www", retry_after=0)
    assert dns.set_record("www.example.test", "A", ["127.80.0.1"], 30).values == ["127.80.0.1"]
    az.fail("InternalServerError", method="PUT", path="/A/www", times=2)
    with pytest.raises(TransientError):
        dns.set_record("www.example.test", "A", ["127.80.0.2"], 30)
    az.fail("AuthorizationFailed", method="GET", path="/A/www")
    with pytest.raises(AccountBlocked):
        dns.get_record("www.example.test")
    az.set_subscription_state("Disabled")
    with pytest.raises(AccountBlocked) as info:
        dns.set_record("www.example.test", "A", ["127.80.0.2"], 30)
    assert info.value.code == "ReadOnlyDisabledSubscription"


def test_dns_check(az: AzureDouble, dns: AzureDns, tmp_path: Path) -> None:
    report = dns.check()
    assert report.state == "available" and report.checks[0].ok
    assert "ns1-01.azure-double.test" in report.checks[0].detail
    az.fail("InvalidAuthenticationToken", method="GET", path="/dnszones/")
    assert dns.check().state == "blocked"
    other = AzureDns(
        AzureDnsSettings(
            type="azuredns",
            zone="missing.test",
            subscription_id=az.subscription,
            resource_group=az.resource_group,
            endpoint=az.url,
        ),
        ProviderContext(state_dir=tmp_path),
    )
    report = other.check()
    assert not report.checks[0].ok and "missing.test" in report.checks[0].detail
    with pytest.raises(ProviderError) as info:
        other.get_record("www.missing.test")
    assert info.value.code == "ParentResourceNotFound"


# --------------------------------------------------------------------------- the double


def test_standalone_double_serves_and_stops() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.doubles.azure", "--port", str(port), "--dns-zone", "a.test"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_control/state", timeout=5) as r:
            state = json.loads(r.read())
        assert state["subscription"]["state"] == "Enabled"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/subscriptions/x?api-version=2022-12-01"
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        body = json.loads(info.value.read())
        assert info.value.code == 401 and body["error"]["code"] == "AuthenticationFailed"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
