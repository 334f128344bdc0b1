"""Provider API faults end to end: during a failover, and under ``failover watch``.

The proxy of tests/doubles/faultproxy.py sits in front of moto (AWS), the GCE double and
the ARM double, and the real ``failover`` command runs against them:

- a cloud second in the priority list whose create call keeps failing (reset, 503 or a
  200 of garbage) is given up after a bounded number of attempts, its half-made host is
  cleaned up, the failure is journaled in the provider's words, and the next provider
  takes the service;
- garbage from every AWS API, from Route 53, or from the local zone file (with a dns
  probe) never ends ``failover watch``, moves nothing it should not, and the next
  ``check`` after the API heals finishes the job;
- a watcher stuck in a hung API's retries still ends cleanly on SIGTERM, and what it
  left is finished by the next ``check``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.doubles.faultproxy import FaultProxy
from tests.doubles.moto_server import require_moto
from tests.doubles.moto_server import use_test_credentials
from tests.fault_clouds import ATTEMPTS
from tests.fault_clouds import CLOUDS
from tests.fault_clouds import GARBAGE
from tests.fault_clouds import Cloud
from tests.fault_clouds import aws_cloud
from tests.fault_clouds import azure_cloud
from tests.fault_clouds import fault
from tests.fault_clouds import gcp_cloud
from tests.fault_clouds import have
from tests.helpers import FAILOVER
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import kill_active
from tests.helpers import live_hosts
from tests.helpers import state_dir
from tests.helpers import wait_for
from tests.helpers import write_config

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_credentials(monkeypatch)


@pytest.fixture(scope="module")
def moto() -> Any:
    need(have("boto3"), "boto3 is not installed (pip install -e '.[aws]')")
    return require_moto()


@pytest.fixture(params=CLOUDS)
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cloud]:
    with ExitStack() as stack:
        if request.param == "aws":
            yield aws_cloud(stack, tmp_path, request.getfixturevalue("moto"))
        elif request.param == "gcp":
            yield gcp_cloud(stack, tmp_path)
        else:
            yield azure_cloud(stack, tmp_path)


def cloud_config(project: Path, cloud: Cloud, **service: Any) -> Path:
    data = base_config(
        policy={"ready_timeout": "3s", "providers": ["alpha", cloud.name, "beta"]}, **service
    )
    data["providers"] = [
        {"name": "alpha", "type": "local"},
        cloud.entry(),
        {"name": "beta", "type": "local"},
    ]
    return write_config(project, data)


def assert_clean_output(proc: subprocess.CompletedProcess[str]) -> None:
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "internal error" not in text, text


# One fault kind per cloud keeps the file fast; together they cover the three shapes.
E2E_KIND = {"aws": "reset", "gcp": "503", "azure": "garbage"}


def test_failover_gives_up_on_a_failing_api_and_the_next_provider_takes_over(
    project: Path, cloud: Cloud
) -> None:
    kind = E2E_KIND[cloud.name]
    config = cloud_config(project, cloud)
    failover("deploy", config=config, check=True)
    assert failover_json("status", config=config)["services"][0]["active"]["provider"] == "alpha"
    cloud.proxy.add(**cloud.create_match, **fault(cloud, kind), times=None)
    kill_active(config)
    check = failover("check", config=config)
    assert_clean_output(check)
    assert check.returncode == 1, check.stdout + check.stderr
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["provider"] == "beta"
    # The cloud was tried first, a bounded number of times, and failed with its own words.
    creates = cloud.proxy.count(**cloud.create_match)
    if kind == "garbage":
        assert 1 <= creates <= ATTEMPTS
    else:
        assert creates == ATTEMPTS
    event = failover_json("history", config=config)["events"][0]
    assert event["kind"] == "failover" and event["status"] == "succeeded"
    select = next(s for s in event["steps"] if s["name"] == "select")
    assert select["detail"].startswith(f"candidates: {cloud.name}, beta")
    # The provider's message made it to the journal (a provision step failed with it).
    assert f"{cloud.name}: " in json.dumps(event), event
    # Nothing half-made is left at the cloud, nothing on the local side but beta's host.
    cloud.proxy.clear()
    assert cloud.alive() == []
    assert [h["provider"] for h in live_hosts(config)] == ["beta"]
    cleanup(config)


def test_watch_survives_garbage_from_every_aws_api(project: Path, moto: Any) -> None:
    with ExitStack() as stack:
        cloud = aws_cloud(stack, project, moto)
        # From the very start: doctor/select/provision/cleanup all get garbage.
        cloud.proxy.add(**fault(cloud, "garbage"), times=None)
        config = cloud_config(project, cloud, health={"fall": 1})
        try:
            failover("deploy", config=config, check=True)
            doctor = failover_json("doctor", config=config)
            aws = next(p for p in doctor["providers"] if p["name"] == "aws")
            assert aws["state"] == "unknown" and "not an AWS answer" in json.dumps(aws)
            kill_active(config)
            watch = failover("watch", "--rounds", "3", config=config)
            assert_clean_output(watch)
            assert watch.returncode == 0, watch.stderr
            assert "moved from alpha to beta" in watch.stdout
            status = failover_json("status", config=config)["services"][0]
            assert status["active"]["provider"] == "beta"
            assert cloud.proxy.count(body="Action=RunInstances") <= ATTEMPTS
        finally:
            cleanup(config)


def test_watch_survives_garbage_from_route53(project: Path, moto: Any) -> None:
    import boto3

    moto.set_auth(False)
    moto.reset()
    r53 = boto3.client("route53", endpoint_url=moto.url, region_name="us-east-1")
    zone = r53.create_hosted_zone(Name="example.test", CallerReference=str(uuid.uuid4()))
    zone_id = str(zone["HostedZone"]["Id"]).split("/")[-1]

    def route53_values() -> list[str]:
        sets = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        return [
            r["Value"]
            for s in sets
            if s["Name"] == "www.example.test." and s["Type"] == "A"
            for r in s["ResourceRecords"]
        ]

    with FaultProxy(moto.url) as proxy:
        data = base_config(health={"fall": 1})
        data["dns"] = {
            "type": "route53",
            "zone": "example.test",
            "ttl": 30,
            "endpoint": proxy.url,
            "retry_attempts": ATTEMPTS,
            "retry_max_time": "10s",
            "change_timeout": "5s",
        }
        config = write_config(project, data)
        try:
            failover("deploy", config=config, check=True)
            before = failover_json("status", config=config)["services"][0]
            assert route53_values() == [before["active"]["address"]]
            proxy.add(path="/2013-04-01/", **fault_garbage_xml(), times=None)
            kill_active(config)
            watch = failover("watch", "--rounds", "2", config=config)
            assert_clean_output(watch)
            assert watch.returncode == 0, watch.stderr
            assert "failover failed" in watch.stdout and "dns:route53" in watch.stdout
            # Nothing moved: same generation, same record, no candidate left running.
            after = failover_json("status", config=config)["services"][0]
            assert after["generation"] == 1 and after["active"] == before["active"]
            assert route53_values() == [before["active"]["address"]]
            assert live_hosts(config) == []
            events = failover_json("history", config=config)["events"]
            assert not [e for e in events if e["status"] == "in_progress"]
            # Route 53 answers again: the next check moves the service.
            proxy.clear()
            check = failover("check", config=config)
            assert check.returncode == 1, check.stdout + check.stderr
            moved = failover_json("status", config=config)["services"][0]
            assert moved["active"]["provider"] == "beta"
            assert route53_values() == [moved["active"]["address"]]
        finally:
            cleanup(config)


def fault_garbage_xml() -> dict[str, Any]:
    return {"status": 200, "response_body": GARBAGE, "content_type": "text/xml"}


def test_watch_survives_a_garbage_local_zone_with_a_dns_probe(project: Path) -> None:
    config = write_config(
        project, base_config(health={"fall": 2, "http": {"path": "/"}, "dns": {}})
    )
    try:
        failover("deploy", config=config, check=True)
        zone = state_dir(config) / "dns" / "example.test.json"
        good = zone.read_bytes()
        zone.write_bytes(b"\x00garbage{")
        watch = failover("watch", "--rounds", "2", config=config)
        assert_clean_output(watch)
        assert watch.returncode == 0, watch.stderr
        assert "DNS backend" in watch.stdout and "unreadable" in watch.stdout
        zone.write_bytes(good)
        assert failover("check", config=config).returncode == 0
        assert failover_json("status", config=config)["services"][0]["generation"] == 1
    finally:
        cleanup(config)


def test_watch_with_a_hung_api_stops_cleanly_on_sigterm(project: Path, moto: Any) -> None:
    """A watcher stuck in a provider's retries still ends on SIGTERM (within its bounds)."""
    with ExitStack() as stack:
        cloud = aws_cloud(stack, project, moto)
        config = cloud_config(project, cloud, health={"fall": 1})
        try:
            failover("deploy", config=config, check=True)
            cloud.proxy.add(action="hang", hang=1.5, times=None)
            kill_active(config)
            seen = cloud.proxy.count()  # deploy asked AWS already (account check)
            proc = subprocess.Popen(
                [FAILOVER, "watch", "-c", str(config)],
                env=env_for(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            wait_for(lambda: cloud.proxy.count() > seen, what="the watcher to call AWS")
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert "Traceback" not in out + err and "SIGTERM received" in out
            events = failover_json("history", config=config)["events"]
            # Left for the next command to finish, or finished: never half-written.
            assert all(e["status"] in ("succeeded", "failed", "in_progress") for e in events)
            cloud.proxy.clear()
            for _ in range(3):
                failover("check", config=config)
            events = failover_json("history", config=config)["events"]
            assert not [e for e in events if e["status"] == "in_progress"]
            status = failover_json("status", config=config)["services"][0]
            assert status["active"]["provider"] == "beta"
            assert [h["id"] for h in live_hosts(config)] == [status["active"]["host_id"]]
            assert cloud.alive() == []
        finally:
            cleanup(config)
