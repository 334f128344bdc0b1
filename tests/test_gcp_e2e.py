"""End to end through the ``failover`` command: local alpha -> gcp (the GCE double) -> beta.

The double gives every VM a natIP in 127.78.0.0/16 where nothing listens, so a GCE host
can never pass a probe: the engine must create it, wait ``ready_timeout``, delete it and
land the service on ``beta``. A capacity error in the first zone makes the provider try
the second; a suspended project shows up as a ``blocked`` provider and is skipped.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.doubles.gce import GceDouble
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import dns_values
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import kill_active
from tests.helpers import write_config


@pytest.fixture
def gce() -> Iterator[GceDouble]:
    try:
        found = importlib.util.find_spec("google.cloud.compute_v1")
    except ModuleNotFoundError:
        found = None
    need(found, "Google SDKs missing (pip install -e '.[gcp]')")
    with GceDouble() as double:
        yield double


@pytest.fixture
def config(tmp_path: Path, gce: GceDouble) -> Iterator[Path]:
    data: dict[str, Any] = base_config(
        policy={"ready_timeout": "2s", "providers": ["alpha", "gcp", "beta"]}
    )
    data["providers"] = [
        {"name": "alpha", "type": "local"},
        {
            "name": "gcp",
            "type": "gcp",
            "project": "test-project",
            "zones": ["us-central1-a", "us-central1-b"],
            "machine_type": "e2-small",
            "image": "projects/debian-cloud/global/images/family/debian-12",
            "network": "default",
            "network_tags": ["http-server"],
            "endpoint": gce.endpoint,
            "retry_attempts": 2,
            "retry_max_time": "2s",
            "operation_timeout": "10s",
            "request_timeout": "5s",
        },
        {"name": "beta", "type": "local"},
    ]
    path = write_config(tmp_path, data)
    yield path
    cleanup(path)


def fail_over(config: Path) -> tuple[dict[str, Any], str]:
    """Run `check` (as cron would) until the service has moved off alpha."""
    output = ""
    for _ in range(8):
        proc = failover("check", config=config, timeout=120)
        output += proc.stdout + proc.stderr
        status = failover_json("status", config=config)
        active = status["services"][0]["active"]
        if active and active["provider"] != "alpha":
            return status["services"][0], output
    raise AssertionError(f"no failover happened: {output}")


def zones_of(gce: GceDouble, method: str) -> list[str | None]:
    return [c["zone"] for c in gce.calls(method)]


def test_validate_and_doctor_accept_the_gcp_entry(config: Path) -> None:
    proc = failover("validate", config=config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doctor = failover_json("doctor", config=config)
    gcp = next(p for p in doctor["providers"] if p["name"] == "gcp")
    assert gcp["state"] == "available", gcp
    names = [c["name"] for c in gcp["checks"]]
    assert names[0] == "project" and "zone us-central1-b" in names
    assert any(n.startswith("image ") for n in names)


def test_gcp_vm_times_out_is_deleted_and_service_lands_on_beta(
    config: Path, gce: GceDouble
) -> None:
    failover("deploy", config=config, check=True)
    assert gce.calls("compute.instances.insert") == []  # deployed on alpha
    kill_active(config)

    service, _ = fail_over(config)
    assert service["active"]["provider"] == "beta"
    assert dns_values(config) == [service["active"]["address"]]

    # The VM was made in the first zone, never answered, and was deleted: nothing is left.
    assert zones_of(gce, "compute.instances.insert") == ["us-central1-a"]
    assert zones_of(gce, "compute.instances.delete") == ["us-central1-a"]
    assert gce.instances() == []
    history = failover_json("history", config=config)["events"]
    event = next(e for e in history if e["kind"] == "failover")
    assert event["status"] == "succeeded"
    assert event["from"]["provider"] == "alpha" and event["to"]["provider"] == "beta"
    # It was deleted because it was not ready within ready_timeout (2s), not earlier.
    [insert] = gce.calls("compute.instances.insert")
    [delete] = gce.calls("compute.instances.delete")
    assert delete["t"] - insert["t"] >= 1.5


def test_capacity_in_the_first_zone_tries_the_second(config: Path, gce: GceDouble) -> None:
    # A drill onto gcp is the cheapest way through the CLI's provision/wait/teardown path.
    gce.fail(
        "compute.instances.insert",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        where="operation",
        zone="us-central1-a",
    )
    proc = failover("drill", "--to", "gcp", "--json", config=config, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the VM can never answer
    assert zones_of(gce, "compute.instances.insert") == ["us-central1-a", "us-central1-b"]
    # Nothing was left in the full zone; the VM of the second zone was torn down.
    assert zones_of(gce, "compute.instances.delete")[-1] == "us-central1-b"
    assert gce.instances() == []
    [event] = failover_json("history", config=config)["events"]
    assert event["kind"] == "drill" and event["status"] == "failed"
    assert "ready_timeout" in str(event), event


def test_suspended_project_marks_gcp_blocked_and_is_skipped(config: Path, gce: GceDouble) -> None:
    gce.suspend("test-project")
    doctor = failover_json("doctor", config=config)
    gcp = next(p for p in doctor["providers"] if p["name"] == "gcp")
    assert gcp["state"] == "blocked" and "suspended" in gcp["reason"]
    assert doctor["ok"] is False

    failover("deploy", config=config, check=True)
    kill_active(config)
    service, _ = fail_over(config)
    assert service["active"]["provider"] == "beta"
    assert gce.calls("compute.instances.insert") == []  # skipped, not tried
    states = {p["name"]: p["state"] for p in service["providers"]}
    assert states == {"alpha": "available", "gcp": "blocked", "beta": "available"}


def test_clouddns_cutover_and_shared_fate_warning(tmp_path: Path, gce: GceDouble) -> None:
    gce.add_dns_zone("example-test", "example.test.")
    data: dict[str, Any] = base_config()
    data["dns"] = {
        "type": "clouddns",
        "zone": "example.test",
        "ttl": 5,
        "project": "test-project",
        "endpoint": gce.endpoint,
        "change_timeout": "5s",
    }
    config = write_config(tmp_path, data)
    try:
        failover("deploy", config=config, check=True)
        first = gce.rrsets("example-test")[-1]
        old = kill_active(config)
        assert first["name"] == "www.example.test." and first["rrdatas"] == [old["address"]]
        service, _ = fail_over(config)
        assert service["active"]["provider"] == "beta"
        assert service["dns"]["values"] == [service["active"]["address"]]
        changes = gce.state.managed_zones[("test-project", "example-test")].changes
        # deploy: one addition; failover: one atomic change, old set out, new set in
        assert [len(c["deletions"]) for c in changes] == [0, 1]
        assert changes[1]["deletions"][0]["rrdatas"] == [old["address"]]
        assert changes[1]["additions"][0]["rrdatas"] == [service["active"]["address"]]

        # DNS at Google next to a Google compute provider: doctor warns of shared fate.
        data["providers"].insert(
            1,
            {
                "name": "gcp",
                "type": "gcp",
                "project": "test-project",
                "zone": "us-central1-a",
                "endpoint": gce.endpoint,
            },
        )
        write_config(tmp_path, data)
        doctor = failover_json("doctor", config=config)
        assert any("google" in w and "gcp" in w for w in doctor["warnings"]), doctor["warnings"]
    finally:
        cleanup(config)
