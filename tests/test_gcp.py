"""The gcp provider and the clouddns backend, through the real Google SDKs, against the
Compute Engine / Cloud DNS REST double (tests/doubles/gce.py). Nothing is patched: every
call crosses HTTP on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

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
from tests.doubles.gce import ERRORS
from tests.doubles.gce import GceDouble

ZONES = ["us-central1-a", "us-central1-b", "europe-west1-b"]
NAT = ipaddress.ip_network("127.78.0.0/16")

BLOCKED = [
    "401",
    "accountDisabled",
    "billingNotEnabled",
    "BILLING_DISABLED",
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    "IAM_PERMISSION_DENIED",
    "forbidden",
    "CONSUMER_SUSPENDED",
]
CAPACITY = [
    "ZONE_RESOURCE_POOL_EXHAUSTED",
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
    "RESOURCE_NOT_READY",
    "UNSUPPORTED_OPERATION",
]
TRANSIENT = ["429", "rateLimitExceeded", "500", "503", "drop"]


@pytest.fixture
def gce() -> Iterator[GceDouble]:
    with GceDouble() as double:
        yield double


@pytest.fixture
def logs() -> list[str]:
    return []


def make(gce: GceDouble, logs: list[str] | None = None, **overrides: Any) -> Any:
    from providers.gcp import GcpProvider
    from providers.gcp import GcpSettings

    fields: dict[str, Any] = {
        "name": "gcp",
        "type": "gcp",
        "project": "test-project",
        "zones": ZONES[:2],
        "endpoint": gce.endpoint,
        "retry_attempts": 3,
        "retry_max_time": 3,
        "operation_timeout": 5,
        "request_timeout": 5,
    }
    fields.update(overrides)
    settings = GcpSettings.model_validate(fields)
    sink = logs if logs is not None else []
    return GcpProvider(settings, ProviderContext(state_dir=Path("/nonexistent"), log=sink.append))


def spec(name: str = "web-g1-gcp", service: str = "web", generation: int = 1) -> HostSpec:
    return HostSpec(
        name=name,
        service=service,
        generation=generation,
        port=8080,
        run=RunSpec(command="python3 -m http.server {port} --bind {address}", setup=("true",)),
        user_data="#cloud-config\nruncmd: [echo hi]\n",
    )


def wait_running(provider: Any, host_id: str) -> Any:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        host = provider.get_host(host_id)
        if host is not None and host.state == HostState.RUNNING and host.address:
            return host
        time.sleep(0.02)
    raise AssertionError(f"{host_id} never became RUNNING")


# --------------------------------------------------------------------------- settings


def test_registry_settings_and_lazy_import() -> None:
    cls = provider_class("gcp")
    assert cls.type == "gcp" and cls.vendor == "google"
    assert dns_class("clouddns").vendor == "google"
    settings = cls.Settings.model_validate(
        {"name": "g", "type": "gcp", "project": "p", "zone": "us-central1-a"}
    )
    assert settings.zone_list == ["us-central1-a"]  # type: ignore[attr-defined]
    for bad in (
        {"name": "g", "type": "gcp", "project": "p"},  # no zone
        {"name": "g", "type": "gcp", "project": "p", "zone": "us-central1-a", "zones": ["x-y1-a"]},
        {"name": "g", "type": "gcp", "project": "p", "zone": "nowhere"},
        {"name": "g", "type": "gcp", "project": "p", "zone": "us-central1-a", "colour": "red"},
        # tokens never travel over plain http except to a loopback double
        {
            "name": "g",
            "type": "gcp",
            "project": "p",
            "zone": "us-central1-a",
            "endpoint": "http://compute.example.com",
        },
    ):
        with pytest.raises(ValidationError):
            cls.Settings.model_validate(bad)
    schema = cls.Settings.model_json_schema()
    assert {
        "project",
        "zone",
        "zones",
        "machine_type",
        "image",
        "network",
        "subnetwork",
        "service_account",
        "credentials_file",
        "endpoint",
    } <= set(schema["properties"])
    # Importing the modules must not import the SDKs (google.cloud.compute_v1 takes seconds).
    code = (
        "import sys, providers.gcp, providers.dns.clouddns;"
        "bad=[m for m in sys.modules if m.startswith(('google.cloud', 'google.api_core'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_instance_names_follow_gce_rules() -> None:
    from providers.gcp import instance_name
    from providers.gcp import label_value

    pattern = r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$"
    assert instance_name("web-g3-gcp") == "web-g3-gcp"
    for raw in ("Web_App.g3", "9lives", "x" * 80, "a--b__c", "ÜBER-web"):
        name = instance_name(raw)
        assert __import__("re").match(pattern, name), (raw, name)
        assert instance_name(raw) == name  # deterministic
    assert instance_name("Web_App") != instance_name("web-app")
    assert label_value("Web.App") == "web-app"
    assert len(label_value("s" * 100)) <= 63


# --------------------------------------------------------------------------- lifecycle


def test_create_get_list_stop_destroy(gce: GceDouble, logs: list[str]) -> None:
    provider = make(gce, logs)
    host = provider.create_host(spec())
    assert host.id == "us-central1-a/web-g1-gcp"
    assert host.zone == "us-central1-a" and host.service == "web" and host.generation == 1
    assert host.state in (HostState.PENDING, HostState.RUNNING)
    host = wait_running(provider, host.id)
    assert ipaddress.ip_address(host.address) in NAT
    assert host.raw_state == "RUNNING" and host.private_address

    [body] = gce.instances()
    assert body["labels"] == {
        "failover-service": "web",
        "failover-generation": "1",
        "failover-purpose": "serve",
    }
    meta = {item["key"]: item["value"] for item in body["metadata"]["items"]}
    assert meta["user-data"].startswith("#cloud-config")
    assert "cloud-init" in meta["startup-script"] and "http.server 8080" in meta["startup-script"]
    assert body["disks"][0]["autoDelete"] is True  # nothing billable outlives the VM
    assert body["machineType"].endswith("/zones/us-central1-a/machineTypes/e2-small")

    provider.create_host(spec("api-g1-gcp", service="api"))
    provider.create_host(spec("web-g2-gcp", generation=2))
    listed = provider.list_hosts("web")
    assert sorted(h.name for h in listed) == ["web-g1-gcp", "web-g2-gcp"]
    assert {h.generation for h in listed} == {1, 2}
    aggregated = gce.calls("compute.instances.aggregatedList")
    assert aggregated[-1]["query"]["filter"] == 'labels.failover-service = "web"'

    provider.stop_host(host.id)
    stopped = provider.get_host(host.id)
    assert stopped.state == HostState.STOPPED and stopped.raw_state == "TERMINATED"
    provider.destroy_host(host.id)
    assert provider.get_host(host.id) is None
    provider.destroy_host(host.id)  # a missing host is not an error
    assert sorted(h.name for h in provider.list_hosts("web")) == ["web-g2-gcp"]
    assert provider.get_host("us-central1-b/never-made") is None
    with pytest.raises(ProviderError):
        provider.get_host("no-slash")
    # The operations were waited on through zoneOperations.wait on the double.
    assert gce.calls("compute.zoneOperations.wait")


def test_create_is_idempotent_on_name(gce: GceDouble) -> None:
    provider = make(gce)
    first = provider.create_host(spec())
    again = provider.create_host(spec())
    assert again.id == first.id
    assert len(gce.instances()) == 1
    assert len(gce.calls("compute.instances.insert")) == 1
    # Also when the first one landed in the second zone.
    gce.fail(
        "compute.instances.insert",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        where="operation",
        zone="us-central1-a",
    )
    other = provider.create_host(spec("web-g2-gcp", generation=2))
    assert other.zone == "us-central1-b"
    assert provider.create_host(spec("web-g2-gcp", generation=2)).id == other.id
    assert len(gce.instances()) == 2


def test_insert_answer_lost_then_409_fetches_the_existing_vm(gce: GceDouble) -> None:
    provider = make(gce)
    gce.fail("compute.instances.insert", "503", apply_first=True)
    host = provider.create_host(spec())
    assert host.id == "us-central1-a/web-g1-gcp"
    assert len(gce.instances()) == 1
    inserts = gce.calls("compute.instances.insert")
    assert len(inserts) == 2  # the retry got 409 alreadyExists and fetched the VM


def test_get_hosts_is_one_aggregated_list_and_says_what_get_host_says(gce: GceDouble) -> None:
    provider = make(gce)
    running = wait_running(provider, provider.create_host(spec()).id)
    stopped = provider.create_host(spec("api-g1-gcp", service="api")).id
    provider.stop_host(stopped)
    ids = [
        running.id,
        stopped,
        "us-central1-b/never-made",
        "us-central1-b/web-g1-gcp",  # the name exists, in another zone
        "europe-west1-b/api-g1-gcp",
    ]
    one_by_one = {host_id: provider.get_host(host_id) for host_id in ids}
    lists = len(gce.calls("compute.instances.aggregatedList"))
    gets = len(gce.calls("compute.instances.get"))
    batched = provider.get_hosts(ids)
    assert batched == one_by_one
    assert batched[stopped].state == HostState.STOPPED  # type: ignore[union-attr]
    assert batched[running.id].state == HostState.RUNNING  # type: ignore[union-attr]
    assert [k for k, v in batched.items() if v is None] == ids[2:]
    calls = gce.calls("compute.instances.aggregatedList")[lists:]
    assert len(calls) == 1 and len(gce.calls("compute.instances.get")) == gets
    assert calls[0]["query"]["filter"] == 'name eq "(api-g1-gcp|never-made|web-g1-gcp)"'
    before = len(gce.calls())
    assert provider.get_hosts([]) == {} and len(gce.calls()) == before
    with pytest.raises(ProviderError):
        provider.get_hosts([running.id, "no-slash"])
    gce.suspend()
    with pytest.raises(AccountBlocked) as info:
        provider.get_hosts(ids)
    assert info.value.code == "CONSUMER_SUSPENDED"


def test_get_hosts_splits_a_large_batch_into_lists_of_100(gce: GceDouble) -> None:
    provider = make(gce)
    host = wait_running(provider, provider.create_host(spec()).id)
    ids = [host.id] + [f"us-central1-a/gone-{n}" for n in range(150)]
    lists = len(gce.calls("compute.instances.aggregatedList"))
    found = provider.get_hosts(ids)
    assert found[host.id] == provider.get_host(host.id)
    assert sum(v is None for v in found.values()) == 150
    assert len(gce.calls("compute.instances.aggregatedList")) - lists == 2


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("error", BLOCKED)
def test_refusals_block_the_whole_provider(gce: GceDouble, error: str) -> None:
    provider = make(gce)
    gce.fail("compute.instances.insert", error)
    with pytest.raises(AccountBlocked) as info:
        provider.create_host(spec())
    exc = info.value
    assert exc.provider == "gcp" and exc.scope is None and exc.hint
    # (a 401 makes google-auth try a token refresh, which anonymous credentials refuse)
    assert exc.code in (ERRORS[error].info_reason, ERRORS[error].reason, "401")
    # Blocked: no other zone was tried, nothing was left behind.
    assert [c["zone"] for c in gce.calls("compute.instances.insert")] == ["us-central1-a"]
    assert gce.instances() == []


@pytest.mark.parametrize("where", ["operation", "http"])
@pytest.mark.parametrize("error", CAPACITY)
def test_capacity_blocks_one_zone_and_the_next_is_tried(
    gce: GceDouble, logs: list[str], error: str, where: str
) -> None:
    provider = make(gce, logs)
    gce.fail("compute.instances.insert", error, where=where, zone="us-central1-a")
    host = provider.create_host(spec())
    assert host.zone == "us-central1-b"
    assert [c["zone"] for c in gce.calls("compute.instances.insert")] == [
        "us-central1-a",
        "us-central1-b",
    ]
    assert any(error in line and "us-central1-a" in line for line in logs)


def test_capacity_in_every_zone_raises_capacity(gce: GceDouble) -> None:
    provider = make(gce)
    for zone in ZONES[:2]:
        gce.fail(
            "compute.instances.insert", "ZONE_RESOURCE_POOL_EXHAUSTED", where="operation", zone=zone
        )
    with pytest.raises(CapacityError) as info:
        provider.create_host(spec())
    assert "us-central1-a" in str(info.value) and "us-central1-b" in str(info.value)
    assert info.value.code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert gce.instances() == []


def test_half_made_vm_in_a_full_zone_is_cleaned_up(gce: GceDouble) -> None:
    provider = make(gce)
    gce.fail(
        "compute.instances.insert",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        where="operation",
        zone="us-central1-a",
        leave_instance=True,
    )
    host = provider.create_host(spec())
    assert host.zone == "us-central1-b"
    assert [(i["zone"].rsplit("/", 1)[-1], i["name"]) for i in gce.instances()] == [
        ("us-central1-b", "web-g1-gcp")
    ]
    deletes = gce.calls("compute.instances.delete")
    assert [c["zone"] for c in deletes] == ["us-central1-a"]


def test_failed_cleanup_says_what_was_left_where(gce: GceDouble) -> None:
    provider = make(gce, zones=["us-central1-a"])
    gce.fail(
        "compute.instances.insert",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        where="operation",
        leave_instance=True,
    )
    gce.fail("compute.instances.delete", "IAM_PERMISSION_DENIED")
    with pytest.raises(ProviderError) as info:
        provider.create_host(spec())
    message = str(info.value)
    assert not isinstance(info.value, CapacityError)
    assert "web-g1-gcp" in message and "us-central1-a" in message and "test-project" in message
    assert "gcloud compute instances delete" in message


@pytest.mark.parametrize("where", ["operation", "http"])
def test_quota_blocks_the_region(gce: GceDouble, logs: list[str], where: str) -> None:
    # Two zones of us-central1, then europe-west1: a regional quota skips the sibling zone.
    provider = make(gce, logs, zones=ZONES)
    gce.fail("compute.instances.insert", "QUOTA_EXCEEDED", where=where, zone="us-central1-a")
    host = provider.create_host(spec())
    assert host.zone == "europe-west1-b"
    assert [c["zone"] for c in gce.calls("compute.instances.insert")] == [
        "us-central1-a",
        "europe-west1-b",
    ]
    assert any("skipping us-central1-b" in line for line in logs)


def test_quota_everywhere_raises_quota(gce: GceDouble) -> None:
    provider = make(gce, zones=["us-central1-a"])
    gce.fail("compute.instances.insert", "QUOTA_EXCEEDED", where="operation")
    with pytest.raises(QuotaError) as info:
        provider.create_host(spec())
    assert info.value.code == "QUOTA_EXCEEDED"


@pytest.mark.parametrize("error", TRANSIENT)
def test_transient_errors_are_retried(gce: GceDouble, error: str) -> None:
    provider = make(gce)
    gce.fail("compute.instances.get", error, retry_after=0 if error == "429" else None)
    gce.fail("compute.instances.insert", error)
    host = provider.create_host(spec())
    assert host.zone == "us-central1-a"
    assert len(gce.calls("compute.instances.insert")) == 2
    assert len(gce.instances()) == 1


def test_transient_exhaustion_raises_transient(gce: GceDouble) -> None:
    provider = make(gce, retry_attempts=2)
    gce.fail("compute.instances.aggregatedList", "503", times=5)
    with pytest.raises(TransientError) as info:
        provider.list_hosts("web")
    assert info.value.code == "backendError"
    assert len(gce.calls("compute.instances.aggregatedList")) == 2


def test_operation_errors_on_stop_and_delete(gce: GceDouble) -> None:
    provider = make(gce)
    host = provider.create_host(spec())
    gce.fail("compute.instances.stop", "IAM_PERMISSION_DENIED", where="operation")
    with pytest.raises(AccountBlocked) as info:
        provider.stop_host(host.id)
    assert info.value.code == "IAM_PERMISSION_DENIED" and "operation" in str(info.value)
    gce.fail("compute.instances.delete", "500", where="operation")
    provider.destroy_host(host.id)  # a failed delete operation is retried
    assert provider.get_host(host.id) is None
    with pytest.raises(NotFound):
        provider.stop_host(host.id)


def test_operation_wait_is_bounded(gce: GceDouble) -> None:
    gce.state.op_delay = 30.0
    gce.state.wait_max = 0.2
    provider = make(gce, operation_timeout=0.5, retry_attempts=1)
    # The operation would take 30 s: only the operation_timeout bound ends the wait.
    with pytest.raises(ProviderError) as info:
        provider.create_host(spec())
    # The insert did not finish in time, nor did the delete that cleans it up: the error
    # says so and says what may be left where.
    message = str(info.value)
    assert "OPERATION_TIMEOUT" in message and "not done after 0.5s" in message
    assert "may be left in zone us-central1-a" in message


def test_suspended_project(gce: GceDouble) -> None:
    provider = make(gce)
    host = provider.create_host(spec())
    gce.suspend()
    report = provider.check_account()
    assert report.state == "blocked" and "suspended" in (report.reason or "")
    for call in (
        lambda: provider.get_host(host.id),
        lambda: provider.list_hosts("web"),
        lambda: provider.create_host(spec("web-g2-gcp", generation=2)),
        lambda: provider.destroy_host(host.id),
    ):
        with pytest.raises(AccountBlocked) as info:
            call()
        assert info.value.code == "CONSUMER_SUSPENDED"
    gce.resume()
    assert provider.check_account().state == "available"


def test_unreachable_endpoint_is_transient() -> None:
    from providers.gcp import GcpProvider
    from providers.gcp import GcpSettings

    settings = GcpSettings(
        name="gcp",
        project="p",
        zone="us-central1-a",
        endpoint="http://127.0.0.1:9",
        retry_attempts=2,
        retry_max_time=1,
        request_timeout=1,
    )
    provider = GcpProvider(settings, ProviderContext(state_dir=Path("/nonexistent")))
    with pytest.raises(TransientError):
        provider.list_hosts("web")
    assert provider.check_account().state == "unknown"


def test_missing_credentials_file_blocks_without_any_network(tmp_path: Path) -> None:
    from providers.gcp import GcpProvider
    from providers.gcp import GcpSettings

    # (ADC is never exercised in tests: it may ask the metadata server, off loopback.)
    settings = GcpSettings(
        name="gcp",
        project="p",
        zone="us-central1-a",
        credentials_file=str(tmp_path / "missing.json"),
    )
    provider = GcpProvider(settings, ProviderContext(state_dir=tmp_path))
    report = provider.check_account()
    assert report.state == "blocked" and "credentials_file" in (report.reason or "")
    with pytest.raises(AccountBlocked) as info:
        provider.create_host(spec())
    assert info.value.code == "CREDENTIALS_MISSING"


def test_doctor_checks(gce: GceDouble) -> None:
    report = make(gce).check_account()
    assert report.state == "available", report
    names = [c.name for c in report.checks]
    assert names[0] == "project"
    assert "zone us-central1-a" in names and "machine type e2-small in us-central1-b" in names
    assert any(n.startswith("image ") for n in names)
    assert all(c.ok for c in report.checks)

    gce.set_zone_status("us-central1-b", "DOWN")
    bad = make(
        gce, machine_type="n9-huge", image="projects/debian-cloud/global/images/nope"
    ).check_account()
    assert bad.state == "unknown"
    failed = {c.name for c in bad.checks if not c.ok}
    assert "zone us-central1-b" in failed
    assert "machine type n9-huge in us-central1-a" in failed
    assert "image projects/debian-cloud/global/images/nope" in failed
    assert bad.reason and "not found" in bad.reason

    unknown_project = make(gce, project="no-such-project").check_account()
    assert unknown_project.state == "blocked"


# --------------------------------------------------------------------------- Cloud DNS


def make_dns(gce: GceDouble, **overrides: Any) -> Any:
    from providers.dns.clouddns import CloudDns
    from providers.dns.clouddns import CloudDnsSettings

    fields: dict[str, Any] = {
        "type": "clouddns",
        "zone": "example.test",
        "project": "test-project",
        "endpoint": gce.endpoint,
        "retry_attempts": 3,
        "retry_max_time": 3,
        "change_timeout": 5,
    }
    fields.update(overrides)
    return CloudDns(CloudDnsSettings.model_validate(fields), ProviderContext(Path("/nonexistent")))


@pytest.fixture
def dns_zone(gce: GceDouble) -> str:
    gce.add_dns_zone("example-test", "example.test.")
    return "example-test"


def test_dns_change_is_one_atomic_replace(gce: GceDouble, dns_zone: str) -> None:
    dns = make_dns(gce)
    assert dns.check().state == "available"
    assert dns.get_record("www.example.test") is None
    record = dns.set_record("www.example.test", "A", ["127.78.0.1"], 30)
    assert record.to_dict() == {
        "name": "www.example.test",
        "type": "A",
        "values": ["127.78.0.1"],
        "ttl": 30,
    }
    record = dns.set_record("www.example.test", "A", ["127.78.0.2"], 30, expect=["127.78.0.1"])
    assert record.values == ["127.78.0.2"]
    changes = gce.state.managed_zones[("test-project", dns_zone)].changes
    last = changes[-1]
    assert [r["rrdatas"] for r in last["deletions"]] == [["127.78.0.1"]]
    assert [r["rrdatas"] for r in last["additions"]] == [["127.78.0.2"]]
    assert len(changes) == 2
    # The backend waited for `done`: it polled the change it created.
    assert gce.calls("dns.changes.get")
    # Same values again: nothing to change.
    dns.set_record("www.example.test", "A", ["127.78.0.2"], 30)
    assert len(changes) == 2
    # Empty values remove the record (one change with only the deletion).
    assert dns.set_record("www.example.test", "A", [], 30).values == []
    assert dns.get_record("www.example.test") is None


def test_dns_expect_conflict(gce: GceDouble, dns_zone: str) -> None:
    dns = make_dns(gce, managed_zone=dns_zone)
    dns.set_record("www.example.test", "A", ["127.78.0.1"], 30)
    with pytest.raises(ConflictError):
        dns.set_record("www.example.test", "A", ["127.78.0.3"], 30, expect=["127.78.0.9"])
    assert dns.get_record("www.example.test").values == ["127.78.0.1"]
    # A resumed write of the value already there passes.
    dns.set_record("www.example.test", "A", ["127.78.0.1"], 30, expect=["127.78.0.9"])


def test_dns_lost_answer_and_retries(gce: GceDouble, dns_zone: str) -> None:
    dns = make_dns(gce)
    dns.set_record("www.example.test", "A", ["127.78.0.1"], 30)
    gce.fail("dns.changes.create", "503", apply_first=True)
    record = dns.set_record("www.example.test", "A", ["127.78.0.2"], 30, expect=["127.78.0.1"])
    assert record.values == ["127.78.0.2"]
    assert len(gce.state.managed_zones[("test-project", dns_zone)].changes) == 2
    gce.fail("dns.resourceRecordSets.list", "429")
    assert dns.get_record("www.example.test").values == ["127.78.0.2"]


def test_dns_errors(gce: GceDouble, dns_zone: str) -> None:
    assert make_dns(gce, zone="other.test").check().state == "unknown"
    with pytest.raises(NotFound):
        make_dns(gce, zone="other.test").get_record("www.other.test")
    gce.suspend()
    report = make_dns(gce).check()
    assert report.state == "blocked"
    with pytest.raises(AccountBlocked):
        make_dns(gce).set_record("www.example.test", "A", ["127.78.0.1"], 30)


def test_dns_waits_for_done_bounded(gce: GceDouble, dns_zone: str) -> None:
    gce.state.change_delay = 60
    dns = make_dns(gce, change_timeout=0.3, retry_attempts=1)
    with pytest.raises(TransientError) as info:
        dns.set_record("www.example.test", "A", ["127.78.0.1"], 30)
    assert info.value.code == "CHANGE_TIMEOUT"


def test_standalone_double_serves_the_sdk(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.doubles.gce",
            "--port",
            str(port),
            "--dns-zone",
            "example-test=example.test.",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()

        class Remote:
            endpoint = f"http://127.0.0.1:{port}"

        provider = make(Remote())  # type: ignore[arg-type]
        host = provider.create_host(spec())
        assert host.zone == "us-central1-a"
        assert make_dns(Remote()).check().state == "available"  # type: ignore[arg-type]
        import json
        import urllib.request

        req = urllib.request.Request(
            f"{Remote.endpoint}/_control/fail",
            method="POST",
            data=json.dumps(
                {"method": "compute.instances.insert", "error": "accountDisabled"}
            ).encode(),
        )
        urllib.request.urlopen(req, timeout=5).read()
        with pytest.raises(AccountBlocked):
            provider.create_host(spec("web-g2-gcp", generation=2))
    finally:
        proc.terminate()
        proc.wait(timeout=5)
