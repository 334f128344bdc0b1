"""End to end through the ``failover`` command with AWS on moto (server mode, real HTTP).

- Priority ``alpha`` (local) -> ``aws`` (moto) -> ``beta`` (local) with a short
  ``ready_timeout``: after alpha dies the EC2 instance is created, never answers (its only
  address is in 127.79.0.0/24 where nothing listens), is terminated after the timeout, and
  the service lands on beta. No instance tagged for the service is left running in moto.
- A local -> local failover whose DNS is Route 53 on moto: the record seen through
  ``ListResourceRecordSets`` follows the service.
- ``failover drill --to aws`` reports the same timeout as a failed drill.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.moto_server import MotoServer
from tests.doubles.moto_server import require_moto
from tests.doubles.moto_server import seed_ec2
from tests.doubles.moto_server import use_test_credentials
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import dns_values
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import kill_active
from tests.helpers import live_hosts
from tests.helpers import write_config

pytestmark = pytest.mark.timeout(180)

ALIVE = ["pending", "running", "stopping", "stopped"]


@pytest.fixture(scope="session")
def moto() -> MotoServer:
    return require_moto()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # tests.helpers.env_for copies os.environ into every CLI run.
    use_test_credentials(monkeypatch)


@pytest.fixture
def seeded(moto: MotoServer) -> dict[str, str]:
    moto.set_auth(False)
    moto.reset()
    return seed_ec2(moto)


def ec2(moto: MotoServer) -> Any:
    import boto3

    return boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1")


def instances(moto: MotoServer, service: str = "web") -> list[dict[str, Any]]:
    resp = ec2(moto).describe_instances(
        Filters=[{"Name": "tag:failover:service", "Values": [service]}]
    )
    return [i for r in resp["Reservations"] for i in r["Instances"]]


def aws_entry(moto: MotoServer, seeded: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "aws",
        "type": "aws",
        "region": "us-east-1",
        "zones": ["us-east-1a"],
        "instance_type": "t3.micro",
        "image": seeded["image"],
        "subnet": seeded["subnet_a"],
        "endpoint": moto.url,
        "retry_attempts": 2,
        "retry_max_time": "2s",
        "request_timeout": "5s",
    }


@pytest.fixture
def config(tmp_path: Path, moto: MotoServer, seeded: dict[str, str]) -> Iterator[Path]:
    data = base_config(policy={"ready_timeout": "2s", "providers": ["alpha", "aws", "beta"]})
    data["providers"] = [
        {"name": "alpha", "type": "local"},
        aws_entry(moto, seeded),
        {"name": "beta", "type": "local"},
    ]
    path = write_config(tmp_path, data)
    yield path
    cleanup(path)


def fail_over(config: Path, printed: list[str] | None = None) -> dict[str, Any]:
    """Run `check` (as cron would) until the service has moved off alpha."""
    for _ in range(8):
        proc = failover("check", config=config, timeout=120)
        if printed is not None:
            printed += [proc.stdout, proc.stderr]
        service = failover_json("status", config=config)["services"][0]
        if service["active"] and service["active"]["provider"] != "alpha":
            return dict(service)
    raise AssertionError(f"no failover happened: {failover('history', config=config).stdout}")


def assert_nothing_left(moto: MotoServer) -> list[dict[str, Any]]:
    made = instances(moto)
    assert made, "no EC2 instance was ever created for the service"
    assert [i["InstanceId"] for i in made if i["State"]["Name"] in ALIVE] == []
    for inst in made:
        # The instance's only address was on loopback, where nothing listens.
        assert "PublicIpAddress" not in inst
        assert ipaddress.ip_address(inst["PrivateIpAddress"]) in ipaddress.ip_network(
            "127.79.0.0/24"
        )
    volumes = ec2(moto).describe_volumes()["Volumes"]
    assert [
        v["VolumeId"] for v in volumes if v.get("Attachments") or v["State"] == "available"
    ] == []
    return made


def test_validate_and_doctor_with_aws(config: Path) -> None:
    proc = failover("validate", config=config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doctor = failover_json("doctor", config=config)
    aws = next(p for p in doctor["providers"] if p["name"] == "aws")
    assert aws["state"] == "available", aws
    checks = {c["name"]: c for c in aws["checks"]}
    for name in ("identity", "region", "image", "instance_type", "quota", "subnet"):
        assert checks[name]["ok"], checks[name]


def test_aws_host_times_out_is_destroyed_and_service_lands_on_beta(
    config: Path, moto: MotoServer
) -> None:
    failover("deploy", config=config, check=True)
    assert failover_json("status", config=config)["services"][0]["active"]["provider"] == "alpha"
    assert instances(moto) == []
    kill_active(config)

    printed: list[str] = []
    service = fail_over(config, printed)
    assert service["active"]["provider"] == "beta"
    assert dns_values(config) == [service["active"]["address"]]
    assert [h["provider"] for h in live_hosts(config)] == ["beta"]
    assert "moved from alpha to beta" in "".join(printed)

    # AWS was tried: one instance, tagged for the service, terminated after ready_timeout.
    made = assert_nothing_left(moto)
    assert len(made) == 1
    tags = {t["Key"]: t["Value"] for t in made[0]["Tags"]}
    assert tags["failover:service"] == "web" and tags["failover:purpose"] == "serve"
    assert tags["failover:generation"] == "2"

    history = failover_json("history", config=config)["events"]
    event = next(e for e in history if e["kind"] == "failover")
    assert event["status"] == "succeeded" and event["to"]["provider"] == "beta"
    select = next(s for s in event["steps"] if s["name"] == "select")
    assert "aws" in select["detail"]  # aws was the first candidate after alpha
    if "attempts" in event:  # what the engine tried before beta, once history shows it
        (attempt,) = [a for a in event["attempts"] if a["provider"] == "aws"]
        assert "ready_timeout" in attempt["result"]


def test_drill_to_aws_is_a_failed_drill_with_a_clear_report(
    config: Path, moto: MotoServer, tmp_path: Path
) -> None:
    failover("deploy", config=config, check=True)
    before = failover_json("status", config=config)["services"][0]
    junit = tmp_path / "drill.xml"
    doc = failover_json("drill", "--to", "aws", "--junit", str(junit), config=config)
    assert doc["status"] == "failed", doc
    (failed,) = [s for s in doc["steps"] if s["status"] == "failed"]
    # The instance came up on its (loopback) address but never answered on the port.
    assert "aws" in failed["detail"] and "ready_timeout (2s)" in failed["detail"]
    assert "127.79.0." in failed["detail"] and "host destroyed" in failed["detail"]
    assert "<failure" in junit.read_text() and "ready_timeout" in junit.read_text()

    proc = failover("drill", "--to", "aws", config=config)
    assert proc.returncode == 1
    report = proc.stdout + proc.stderr
    assert "drill web -> aws: failed" in report
    assert "not answering within ready_timeout (2s); host destroyed" in report

    # The drill hosts are gone, the live service and its DNS are untouched.
    made = assert_nothing_left(moto)
    assert {t["Value"] for i in made for t in i["Tags"] if t["Key"] == "failover:purpose"} == {
        "drill"
    }
    after = failover_json("status", config=config)["services"][0]
    assert after["active"] == before["active"] and after["generation"] == before["generation"]
    assert dns_values(config) == [before["active"]["address"]]
    assert [h["provider"] for h in live_hosts(config)] == ["alpha"]


# --------------------------------------------------------------------------- Route 53


@pytest.fixture
def route53_config(tmp_path: Path, moto: MotoServer) -> Iterator[tuple[Path, str]]:
    import boto3

    moto.set_auth(False)
    moto.reset()
    r53 = boto3.client("route53", endpoint_url=moto.url, region_name="us-east-1")
    zone = r53.create_hosted_zone(Name="example.test", CallerReference=str(uuid.uuid4()))
    zone_id = str(zone["HostedZone"]["Id"]).split("/")[-1]
    data = base_config()
    data["dns"] = {
        "type": "route53",
        "zone": "example.test",
        "ttl": 30,
        "endpoint": moto.url,
        "retry_attempts": 3,
        "retry_max_time": "5s",
        "change_timeout": "10s",
    }
    path = write_config(tmp_path, data)
    yield path, zone_id
    cleanup(path)


def route53_values(moto: MotoServer, zone_id: str) -> tuple[list[str], int]:
    import boto3

    r53 = boto3.client("route53", endpoint_url=moto.url, region_name="us-east-1")
    sets = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    (rrset,) = [s for s in sets if s["Name"] == "www.example.test." and s["Type"] == "A"]
    return [r["Value"] for r in rrset["ResourceRecords"]], int(rrset["TTL"])


def test_local_failover_with_route53_dns(
    route53_config: tuple[Path, str], moto: MotoServer
) -> None:
    config, zone_id = route53_config
    assert failover("validate", config=config).returncode == 0
    doctor = failover_json("doctor", config=config)
    assert doctor["dns"]["state"] == "available", doctor["dns"]
    assert zone_id in json.dumps(doctor["dns"]["checks"])

    failover("deploy", config=config, check=True)
    before = failover_json("status", config=config)["services"][0]
    assert route53_values(moto, zone_id) == ([before["active"]["address"]], 30)

    kill_active(config)
    after = fail_over(config)
    assert after["active"]["provider"] == "beta"
    assert route53_values(moto, zone_id) == ([after["active"]["address"]], 30)
    assert after["dns"]["values"] == [after["active"]["address"]]
    events = failover_json("history", config=config)["events"]
    assert [e["kind"] for e in events][:2] == ["failover", "deploy"]
    assert events[0]["status"] == "succeeded"


def test_missing_route53_zone_is_refused(tmp_path: Path, moto: MotoServer) -> None:
    moto.set_auth(False)
    moto.reset()
    data = base_config()
    data["dns"] = {"type": "route53", "zone": "example.test", "endpoint": moto.url}
    config = write_config(tmp_path, data)
    try:
        doctor = failover("doctor", config=config)
        assert doctor.returncode == 1
        assert "no hosted zone named example.test" in doctor.stdout + doctor.stderr
        assert failover_json("doctor", config=config)["dns"]["state"] == "unknown"
        deploy = failover("deploy", config=config)
        assert deploy.returncode == 1
        assert "no hosted zone named example.test" in deploy.stdout + deploy.stderr
    finally:
        cleanup(config)


def test_doctor_warns_when_route53_shares_fate_with_aws(
    tmp_path: Path, moto: MotoServer, seeded: dict[str, str]
) -> None:
    import boto3

    r53 = boto3.client("route53", endpoint_url=moto.url, region_name="us-east-1")
    r53.create_hosted_zone(Name="example.test", CallerReference=str(uuid.uuid4()))
    data = base_config(policy={"providers": ["alpha", "aws"]})
    data["providers"] = [{"name": "alpha", "type": "local"}, aws_entry(moto, seeded)]
    data["dns"] = {"type": "route53", "zone": "example.test", "ttl": 1, "endpoint": moto.url}
    config = write_config(tmp_path, data)
    doctor = failover_json("doctor", config=config)
    assert doctor["dns"]["state"] == "available"
    assert any("hosted by aws" in w and "aws" in w for w in doctor["warnings"]), doctor


def test_refused_credentials_mark_aws_blocked_and_skip_it(config: Path, moto: MotoServer) -> None:
    failover("deploy", config=config, check=True)
    kill_active(config)
    with moto.auth():  # moto now refuses the test credentials: AuthFailure / InvalidClientTokenId
        doctor = failover_json("doctor", config=config)
        aws = next(p for p in doctor["providers"] if p["name"] == "aws")
        assert aws["state"] == "blocked" and "InvalidClientTokenId" in aws["reason"]
        service = fail_over(config)
        assert service["active"]["provider"] == "beta"
        states = {p["name"]: p["state"] for p in service["providers"]}
        assert states["aws"] == "blocked"
    assert instances(moto) == []  # a blocked provider is skipped, not tried
