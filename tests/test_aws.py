"""The AWS provider and the Route 53 backend against moto in server mode (real HTTP).

moto runs once per session on 127.0.0.1 (tests/doubles/moto_server.py). The errors moto
cannot produce (UnauthorizedOperation, capacity, quota, throttling, 5xx, resets, hung
connections, lost answers) come from tests/doubles/faultproxy.py placed between boto3 and
moto. Instances live in a subnet 127.79.x.0/24 with no public addresses, so the only
address moto hands out is on loopback where nothing listens.
"""

from __future__ import annotations

import base64
import ipaddress
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pytest

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
from tests.conftest import ROOT
from tests.doubles.faultproxy import FaultProxy
from tests.doubles.faultproxy import aws_error
from tests.doubles.faultproxy import ec2_error
from tests.doubles.moto_server import MotoServer
from tests.doubles.moto_server import free_port
from tests.doubles.moto_server import require_moto
from tests.doubles.moto_server import seed_ec2
from tests.doubles.moto_server import use_test_credentials

pytestmark = pytest.mark.timeout(120)

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
NET_A = ipaddress.ip_network("127.79.0.0/24")
NET_B = ipaddress.ip_network("127.79.1.0/24")
ZONE_A, ZONE_B = "us-east-1a", "us-east-1b"
RUN = "Action=RunInstances"
DESCRIBE = "Action=DescribeInstances"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def moto() -> MotoServer:
    return require_moto()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_credentials(monkeypatch)


@dataclass
class World:
    moto: MotoServer
    ec2: Any
    image: str
    vpc: str
    subnet_a: str
    subnet_b: str
    tmp: Path
    logs: list[str] = field(default_factory=list)

    def provider(self, endpoint: str | None = None, **overrides: Any) -> Any:
        from providers.aws import AwsProvider
        from providers.aws import AwsSettings

        values: dict[str, Any] = {
            "name": "aws",
            "type": "aws",
            "region": "us-east-1",
            "image": self.image,
            "instance_type": "t3.micro",
            "subnet": self.subnet_a,
            "endpoint": endpoint or self.moto.url,
            "retry_attempts": 3,
            "retry_max_time": 20,
            "request_timeout": 5,
        }
        values.update(overrides)
        return AwsProvider(AwsSettings(**values), ProviderContext(self.tmp, self.logs.append))

    def instances(self, name: str, states: list[str] | None = None) -> list[dict[str, Any]]:
        flt = [{"Name": "tag:Name", "Values": [name]}]
        if states:
            flt.append({"Name": "instance-state-name", "Values": states})
        resp = self.ec2.describe_instances(Filters=flt)
        return [i for r in resp["Reservations"] for i in r["Instances"]]

    def alive(self, name: str) -> list[dict[str, Any]]:
        return self.instances(name, ["pending", "running", "stopping", "stopped"])


@pytest.fixture
def world(moto: MotoServer, tmp_path: Path) -> World:
    import boto3

    moto.set_auth(False)
    moto.reset()
    seeded = seed_ec2(moto)
    ec2 = boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1")
    return World(
        moto, ec2, seeded["image"], seeded["vpc"], seeded["subnet_a"], seeded["subnet_b"], tmp_path
    )


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto.url) as p:
        yield p


def spec(service: str = "web", generation: int = 1, purpose: str = "serve") -> HostSpec:
    return HostSpec(
        name=f"{service}-g{generation}-aws",
        service=service,
        generation=generation,
        port=8080,
        run=RunSpec(command="python3 -m http.server {port} --bind {address}"),
        user_data=f"#cloud-config\n# {service} generation {generation}\nruncmd: [[true]]\n",
        purpose=purpose,
    )


def on_loopback(address: str | None, net: ipaddress.IPv4Network = NET_A) -> bool:
    assert address is not None
    ip = ipaddress.ip_address(address)
    return ip in LOOPBACK and ip in net


# --------------------------------------------------------------------------- registry, settings


def test_registry_settings_and_lazy_import() -> None:
    from providers.aws import AwsProvider
    from providers.aws import AwsSettings
    from providers.dns.route53 import Route53Dns
    from providers.dns.route53 import Route53Settings

    assert provider_class("aws") is AwsProvider
    assert dns_class("route53") is Route53Dns
    assert AwsProvider.vendor == "aws" and Route53Dns.vendor == "aws"
    schema = AwsSettings.model_json_schema()
    for key in (
        "region",
        "zones",
        "instance_type",
        "image",
        "subnet",
        "security_groups",
        "key_name",
        "profile",
        "endpoint",
        "retry_attempts",
        "retry_max_time",
    ):
        assert key in schema["properties"], key
    with pytest.raises(ValueError):
        AwsSettings(name="a", type="aws", region="r", image="ami-1", bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        AwsSettings(name="a", type="gcp", region="r", image="ami-1")  # type: ignore[arg-type]
    r53 = Route53Settings(type="route53", zone="example.test", change_timeout="2m")
    assert r53.change_timeout == 120.0
    # Importing the provider modules must not import boto3.
    code = (
        "import sys, providers.aws, providers.dns.route53;"
        "bad=[m for m in ('boto3','botocore') if m in sys.modules];"
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# --------------------------------------------------------------------------- lifecycle


def test_create_get_list_stop_destroy_and_tags(world: World) -> None:
    provider = world.provider()
    s = spec()
    host = provider.create_host(s)
    assert host.id.startswith("i-")
    assert host.provider == "aws" and host.name == s.name and host.service == "web"
    assert host.generation == 1 and host.zone == ZONE_A
    assert host.state in (HostState.PENDING, HostState.RUNNING)
    # The only address is the private one, inside the test's loopback subnet.
    assert on_loopback(host.address) and host.address == host.private_address

    inst = world.ec2.describe_instances(InstanceIds=[host.id])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags == {
        "failover:service": "web",
        "failover:generation": "1",
        "failover:purpose": "serve",
        "Name": s.name,
    }
    assert "PublicIpAddress" not in inst
    assert inst["ImageId"] == world.image and inst["InstanceType"] == "t3.micro"
    assert inst["SubnetId"] == world.subnet_a
    assert all(m["Ebs"]["DeleteOnTermination"] for m in inst["BlockDeviceMappings"])
    user_data = world.ec2.describe_instance_attribute(InstanceId=host.id, Attribute="userData")
    assert base64.b64decode(user_data["UserData"]["Value"]).decode() == s.user_data

    got = provider.get_host(host.id)
    assert got is not None and got.id == host.id and got.state is HostState.RUNNING
    other = provider.create_host(spec("api", 4, purpose="drill"))
    assert [h.id for h in provider.list_hosts("web")] == [host.id]
    listed = provider.list_hosts("api")
    assert [h.id for h in listed] == [other.id] and listed[0].purpose == "drill"
    assert listed[0].generation == 4
    assert provider.list_hosts("nothing") == []

    provider.stop_host(host.id)
    stopped = provider.get_host(host.id)
    assert stopped is not None and stopped.state is HostState.STOPPED

    provider.destroy_host(host.id)
    gone = provider.get_host(host.id)
    assert gone is not None and gone.state is HostState.TERMINATED
    assert provider.list_hosts("web") == []
    provider.destroy_host(host.id)  # again: fine
    # Nothing billable left: the root volume went with the instance.
    volumes = world.ec2.describe_volumes(Filters=[{"Name": "tag:Name", "Values": [s.name]}])[
        "Volumes"
    ]
    assert [v for v in volumes if v["State"] != "deleted"] == []
    provider.close()


def test_security_groups_and_key_name(world: World) -> None:
    sg = world.ec2.create_security_group(GroupName="web", Description="web", VpcId=world.vpc)
    other = world.ec2.create_security_group(GroupName="ssh", Description="ssh", VpcId=world.vpc)
    world.ec2.create_key_pair(KeyName="ops")
    provider = world.provider(security_groups=["web", other["GroupId"]], key_name="ops")
    host = provider.create_host(spec())
    inst = world.ec2.describe_instances(InstanceIds=[host.id])["Reservations"][0]["Instances"][0]
    assert {g["GroupId"] for g in inst["SecurityGroups"]} == {sg["GroupId"], other["GroupId"]}
    assert inst["KeyName"] == "ops"
    with pytest.raises(ProviderError) as err:
        world.provider(security_groups=["nope"]).create_host(spec("api"))
    assert "nope" in str(err.value) and world.alive(spec("api").name) == []


def test_get_hosts_answers_many_ids_in_one_call_and_a_missing_one_too(world: World) -> None:
    provider = world.provider()
    web, api = provider.create_host(spec()), provider.create_host(spec("api", 2))
    missing = "i-0123456789abcdef0"
    found = provider.get_hosts([web.id, api.id, missing])
    assert provider.batches_lookups
    assert set(found) == {web.id, api.id, missing} and found[missing] is None
    got_web, got_api = found[web.id], found[api.id]
    assert got_web is not None and got_web.service == "web" and got_web.id == web.id
    assert got_api is not None and got_api.service == "api" and got_api.generation == 2
    provider.close()


def test_missing_host(world: World) -> None:
    provider = world.provider()
    missing = "i-0123456789abcdef0"
    assert provider.get_host(missing) is None
    provider.destroy_host(missing)  # a missing host is not an error
    with pytest.raises(NotFound) as err:
        provider.stop_host(missing)
    assert err.value.code == "InvalidInstanceID.NotFound"
    assert err.value.provider == "aws" and "InvalidInstanceID.NotFound" in str(err.value)


def test_just_launched_instance_not_yet_visible(world: World, proxy: FaultProxy) -> None:
    # EC2 is eventually consistent: right after RunInstances, DescribeInstances and even
    # TerminateInstances may answer InvalidInstanceID.NotFound for the new instance.
    provider = world.provider(endpoint=proxy.url)
    host = provider.create_host(spec())
    not_found = ec2_error(
        "InvalidInstanceID.NotFound", f"The instance ID '{host.id}' does not exist"
    )
    proxy.add(body=DESCRIBE, status=400, response_body=not_found)
    got = provider.get_host(host.id)
    assert got is not None and got.id == host.id and got.state is HostState.PENDING
    proxy.add(body=DESCRIBE, status=400, response_body=not_found)
    proxy.add(body="Action=TerminateInstances", status=400, response_body=not_found)
    provider.destroy_host(host.id)
    assert proxy.count(body="Action=TerminateInstances") == 2
    assert world.alive(spec().name) == []
    # A host this provider did not just launch is simply gone.
    assert world.provider().get_host("i-0123456789abcdef0") is None
    # Stopping a terminated host is not an error either.
    provider.stop_host(host.id)


def test_create_is_idempotent_on_name(world: World) -> None:
    provider = world.provider()
    first = provider.create_host(spec())
    again = world.provider().create_host(spec())  # a fresh provider: no memory of the first
    assert again.id == first.id
    assert len(world.alive(spec().name)) == 1
    # A stopped host of that name is started again rather than duplicated.
    provider.stop_host(first.id)
    third = provider.create_host(spec())
    assert third.id == first.id and len(world.alive(spec().name)) == 1
    # Once destroyed, the same name gets a new instance (with a new client token).
    provider.destroy_host(first.id)
    fresh = provider.create_host(spec())
    assert fresh.id != first.id and len(world.alive(spec().name)) == 1


def test_create_retried_after_a_lost_answer_makes_one_instance(
    world: World, proxy: FaultProxy
) -> None:
    # moto launches the instance, but boto3 gets a 503: the retry must find it, not relaunch.
    proxy.add(
        body=RUN, status=503, after_forward=True, response_body=ec2_error("ServiceUnavailable")
    )
    host = world.provider(endpoint=proxy.url).create_host(spec())
    assert proxy.count(body=RUN) == 1
    alive = world.alive(spec().name)
    assert [i["InstanceId"] for i in alive] == [host.id]
    assert alive[0]["ClientToken"].startswith("fo-")


# --------------------------------------------------------------------------- error mapping


BLOCKED = [
    "AuthFailure",
    "UnauthorizedOperation",
    "OptInRequired",
    "Blocked",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccountSuspended",
]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        *[(c, 403, AccountBlocked) for c in BLOCKED],
        ("InsufficientInstanceCapacity", 500, CapacityError),
        ("Unsupported", 400, CapacityError),
        ("InstanceLimitExceeded", 400, QuotaError),
        ("VcpuLimitExceeded", 400, QuotaError),
        ("InvalidInstanceID.NotFound", 400, NotFound),
        ("RequestLimitExceeded", 503, TransientError),
        ("Throttling", 400, TransientError),
        ("ServiceUnavailable", 503, TransientError),
        ("InternalError", 500, TransientError),
        ("SomethingElse", 502, TransientError),
        ("InvalidParameterValue", 400, ProviderError),
    ],
)
def test_error_mapping(
    world: World, proxy: FaultProxy, code: str, status: int, expected: type[ProviderError]
) -> None:
    proxy.add(
        body=DESCRIBE,
        status=status,
        response_body=ec2_error(code, f"{code} from test"),
        times=None,
        retry_after=0,
    )
    provider = world.provider(endpoint=proxy.url, retry_attempts=2, retry_max_time=5)
    with pytest.raises(ProviderError) as err:
        provider.list_hosts("web")
    assert type(err.value) is expected
    assert err.value.code == code and code in str(err.value) and err.value.provider == "aws"
    assert err.value.hint or expected is ProviderError
    retried = expected is TransientError
    assert proxy.count(body=DESCRIBE) == (2 if retried else 1)


def test_auth_failure_from_moto_blocks_the_provider(world: World) -> None:
    provider = world.provider()
    with world.moto.auth():
        with pytest.raises(AccountBlocked) as err:
            provider.create_host(spec())
        assert err.value.code == "AuthFailure"
        assert "testing" not in str(err.value)  # no credential in the message
        report = provider.check_account()
    assert report.state == "blocked"
    assert report.checks[0].name == "identity" and not report.checks[0].ok
    assert "InvalidClientTokenId" in (report.reason or "")
    assert world.alive(spec().name) == []


def test_unauthorized_operation_is_blocked_and_leaves_nothing(
    world: World, proxy: FaultProxy
) -> None:
    proxy.add(
        body=RUN,
        status=403,
        response_body=ec2_error(
            "UnauthorizedOperation", "You are not authorized to perform this operation."
        ),
    )
    with pytest.raises(AccountBlocked) as err:
        world.provider(endpoint=proxy.url, zones=[ZONE_A, ZONE_B]).create_host(spec())
    assert err.value.code == "UnauthorizedOperation"
    assert proxy.count(body=RUN) == 1  # the whole provider is blocked: no second zone
    assert world.alive(spec().name) == []


def test_capacity_error_moves_to_the_next_zone(world: World, proxy: FaultProxy) -> None:
    proxy.add(
        body=RUN,
        status=500,
        response_body=ec2_error(
            "InsufficientInstanceCapacity", "We currently do not have sufficient t3.micro capacity"
        ),
    )
    provider = world.provider(endpoint=proxy.url, zones=[ZONE_A, ZONE_B])
    host = provider.create_host(spec())
    assert host.zone == ZONE_B and on_loopback(host.address, NET_B)
    assert proxy.count(body=RUN) == 2
    assert any("InsufficientInstanceCapacity in us-east-1a" in line for line in world.logs)


def test_capacity_half_made_in_one_zone_is_cleaned_up(world: World, proxy: FaultProxy) -> None:
    # The first zone launches an instance but answers with a capacity error.
    proxy.add(
        body=RUN,
        status=500,
        after_forward=True,
        response_body=ec2_error("InsufficientInstanceCapacity"),
    )
    host = world.provider(endpoint=proxy.url, zones=[ZONE_A, ZONE_B]).create_host(spec())
    assert host.zone == ZONE_B
    alive = world.alive(spec().name)
    assert [i["InstanceId"] for i in alive] == [host.id]
    all_named = world.instances(spec().name)
    assert len(all_named) == 2  # the zone-a leftover exists only as terminated


def test_capacity_everywhere_fails_cleanly(world: World, proxy: FaultProxy) -> None:
    proxy.add(
        body=RUN, status=500, times=None, response_body=ec2_error("InsufficientInstanceCapacity")
    )
    with pytest.raises(CapacityError) as err:
        world.provider(endpoint=proxy.url, zones=[ZONE_A, ZONE_B]).create_host(spec())
    assert err.value.code == "InsufficientInstanceCapacity"
    assert ZONE_A in str(err.value) and ZONE_B in str(err.value)
    assert proxy.count(body=RUN) == 2
    assert world.alive(spec().name) == []


def test_quota_error(world: World, proxy: FaultProxy) -> None:
    proxy.add(
        body=RUN,
        status=400,
        times=None,
        response_body=ec2_error(
            "VcpuLimitExceeded", "You have requested more vCPU capacity than your current limit"
        ),
    )
    with pytest.raises(QuotaError) as err:
        world.provider(endpoint=proxy.url, zones=[ZONE_A, ZONE_B]).create_host(spec())
    assert err.value.code == "VcpuLimitExceeded" and "quota" in (err.value.hint or "")
    assert proxy.count(body=RUN) == 2
    assert world.alive(spec().name) == []


def test_throttling_is_retried_then_succeeds(world: World, proxy: FaultProxy) -> None:
    proxy.add(
        body=RUN,
        status=503,
        times=2,
        retry_after=0,
        response_body=ec2_error("RequestLimitExceeded", "Request limit exceeded."),
    )
    host = world.provider(endpoint=proxy.url).create_host(spec())
    assert proxy.count(body=RUN) == 3
    assert [i["InstanceId"] for i in world.alive(spec().name)] == [host.id]


def test_throttling_exhaustion_fails_cleanly(world: World, proxy: FaultProxy) -> None:
    proxy.add(
        body=RUN,
        status=503,
        times=None,
        response_body=ec2_error("RequestLimitExceeded", "Request limit exceeded."),
    )
    with pytest.raises(TransientError) as err:
        world.provider(endpoint=proxy.url, retry_attempts=3).create_host(spec())
    assert err.value.code == "RequestLimitExceeded"
    # Bounded by attempts (counted at the proxy), not judged by the clock.
    assert proxy.count(body=RUN) == 3
    assert world.alive(spec().name) == []


def test_connection_reset_and_hung_connection_are_retried(world: World, proxy: FaultProxy) -> None:
    provider = world.provider(endpoint=proxy.url, request_timeout=0.5)
    host = provider.create_host(spec())
    proxy.add(body=DESCRIBE, action="reset")
    assert provider.get_host(host.id) is not None
    proxy.add(body=DESCRIBE, action="hang", hang=5)
    got = provider.get_host(host.id)
    assert got is not None and got.id == host.id
    assert [e["status"] for e in proxy.log if e["fault"]] == ["reset", "hang"]


def test_unreachable_endpoint(world: World) -> None:
    provider = world.provider(endpoint=f"http://127.0.0.1:{free_port()}", retry_attempts=2)
    with pytest.raises(TransientError):
        provider.list_hosts("web")
    report = provider.check_account()
    assert report.state == "unknown" and not report.checks[0].ok


# --------------------------------------------------------------------------- doctor


def test_check_account(world: World) -> None:
    report = world.provider(zones=[ZONE_A, ZONE_B]).check_account()
    assert report.state == "available", report
    names = {c.name: c for c in report.checks}
    for name in ("identity", "region", "zones", "image", "instance_type", "quota", "subnet"):
        assert names[name].ok, names[name]
    assert "123456789012" in names["identity"].detail
    assert "max-instances" in names["quota"].detail or "vCPU" in names["quota"].detail

    bad = world.provider(image="ami-00000000000000000", instance_type="t9.nothing").check_account()
    assert bad.state == "unknown"
    failed = {c.name for c in bad.checks if not c.ok}
    assert {"image", "instance_type"} <= failed
    assert bad.reason and "ami-00000000000000000" in bad.reason


def test_bad_image_fails_create_clearly(world: World) -> None:
    with pytest.raises(ProviderError) as err:
        world.provider(image="ami-00000000000000000").create_host(spec())
    assert "ami-00000000000000000" in str(err.value)
    assert not isinstance(err.value, TransientError | AccountBlocked)


# --------------------------------------------------------------------------- Route 53


@pytest.fixture
def zone(world: World) -> str:
    import boto3

    r53 = boto3.client("route53", endpoint_url=world.moto.url, region_name="us-east-1")
    resp = r53.create_hosted_zone(Name="example.test", CallerReference=str(uuid.uuid4()))
    return str(resp["HostedZone"]["Id"]).split("/")[-1]


def route53(world: World, endpoint: str | None = None, **overrides: Any) -> Any:
    from providers.dns.route53 import Route53Dns
    from providers.dns.route53 import Route53Settings

    values: dict[str, Any] = {
        "type": "route53",
        "zone": "example.test",
        "endpoint": endpoint or world.moto.url,
        "retry_attempts": 3,
        "retry_max_time": 20,
        "change_timeout": 5,
    }
    values.update(overrides)
    return Route53Dns(Route53Settings(**values), ProviderContext(world.tmp))


def rrsets(world: World, zone_id: str) -> dict[tuple[str, str], tuple[list[str], int]]:
    import boto3

    r53 = boto3.client("route53", endpoint_url=world.moto.url, region_name="us-east-1")
    out = {}
    for rr in r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]:
        values = [r["Value"] for r in rr.get("ResourceRecords", [])]
        out[(rr["Name"], rr["Type"])] = (values, rr.get("TTL", 0))
    return out


def test_route53_upsert_seen_through_list_resource_record_sets(world: World, zone: str) -> None:
    dns = route53(world)
    assert dns.get_record("www.example.test") is None
    record = dns.set_record("www.example.test", "A", ["127.77.0.1"], 30)
    assert record.to_dict() == {
        "name": "www.example.test",
        "type": "A",
        "values": ["127.77.0.1"],
        "ttl": 30,
    }
    assert rrsets(world, zone)[("www.example.test.", "A")] == (["127.77.0.1"], 30)
    # The next cutover replaces the set in one UPSERT.
    record = dns.set_record("www", "A", ["127.77.0.2"], 60, expect=["127.77.0.1"])
    assert record.values == ["127.77.0.2"] and record.ttl == 60
    assert rrsets(world, zone)[("www.example.test.", "A")] == (["127.77.0.2"], 60)
    got = dns.get_record("www.example.test.", "A")
    assert got is not None and got.values == ["127.77.0.2"]
    txt = dns.set_record("_failover.example.test", "TXT", ['generation "2"'], 30)
    assert txt.values == ['generation "2"']
    dns.close()


def test_route53_expect_conflict(world: World, zone: str, moto: MotoServer) -> None:
    dns = route53(world)
    with FaultProxy(moto.url) as proxy:
        guarded = route53(world, endpoint=proxy.url)
        guarded.set_record("www", "A", ["127.77.0.1"], 30, expect=[])  # absent -> created
        with pytest.raises(ConflictError) as err:
            guarded.set_record("www", "A", ["127.77.0.3"], 30, expect=["127.77.0.9"])
        assert "127.77.0.1" in str(err.value) and err.value.provider == "dns:route53"
        with pytest.raises(ConflictError):
            guarded.set_record("www", "A", ["127.77.0.3"], 30, expect=[])
        assert dns.get_record("www").values == ["127.77.0.1"]  # type: ignore[union-attr]
        changes = proxy.count(method="POST", path="/rrset")
        assert changes == 1
        # A cutover that already happened (a resumed run) is not an error and not a write.
        again = guarded.set_record("www", "A", ["127.77.0.1"], 30, expect=["127.77.0.7"])
        assert again.values == ["127.77.0.1"]
        assert proxy.count(method="POST", path="/rrset") == changes


def test_route53_missing_zone_is_refused(world: World) -> None:
    dns = route53(world, zone="nowhere.test")
    with pytest.raises(ProviderError) as err:
        dns.set_record("www", "A", ["127.77.0.1"], 30)
    assert err.value.code == "NoSuchHostedZone" and "nowhere.test" in str(err.value)
    report = dns.check()
    assert report.state == "unknown"
    assert not {c.name: c for c in report.checks}["zone"].ok
    assert report.reason and "nowhere.test" in report.reason


def test_route53_throttling_and_prior_request_are_retried(
    world: World, zone: str, proxy: FaultProxy
) -> None:
    proxy.add(
        method="POST",
        path="/rrset",
        status=400,
        retry_after=0,
        response_body=aws_error("Throttling", "Rate exceeded"),
    )
    proxy.add(
        method="POST",
        path="/rrset",
        status=400,
        response_body=aws_error(
            "PriorRequestNotComplete",
            "The request was rejected because Route 53 was still processing a prior request.",
        ),
    )
    record = route53(world, endpoint=proxy.url).set_record("www", "A", ["127.77.0.5"], 30)
    assert record.values == ["127.77.0.5"]
    assert proxy.count(method="POST", path="/rrset") == 3
    assert rrsets(world, zone)[("www.example.test.", "A")] == (["127.77.0.5"], 30)


PENDING_CHANGE = (
    '<?xml version="1.0"?>\n<{tag} xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
    "<ChangeInfo><Id>/change/CFAILOVER</Id><Status>PENDING</Status>"
    "<SubmittedAt>2026-11-28T10:00:00Z</SubmittedAt></ChangeInfo></{tag}>"
)


def test_route53_waits_for_insync_bounded(world: World, zone: str, proxy: FaultProxy) -> None:
    # The change is made, but reported PENDING; GetChange says PENDING once, then INSYNC.
    proxy.add(
        method="POST",
        path="/rrset",
        status=200,
        after_forward=True,
        response_body=PENDING_CHANGE.format(tag="ChangeResourceRecordSetsResponse"),
    )
    proxy.add(
        method="GET",
        path="/change/",
        status=200,
        response_body=PENDING_CHANGE.format(tag="GetChangeResponse"),
    )
    record = route53(world, endpoint=proxy.url).set_record("www", "A", ["127.77.0.6"], 30)
    assert record.values == ["127.77.0.6"]
    assert proxy.count(method="GET", path="/change/CFAILOVER") == 2

    proxy.add(
        method="POST",
        path="/rrset",
        status=200,
        after_forward=True,
        response_body=PENDING_CHANGE.format(tag="ChangeResourceRecordSetsResponse"),
    )
    proxy.add(
        method="GET",
        path="/change/",
        status=200,
        times=None,
        response_body=PENDING_CHANGE.format(tag="GetChangeResponse"),
    )
    # The change never leaves PENDING: only the change_timeout bound ends the wait.
    with pytest.raises(ProviderError) as err:
        route53(world, endpoint=proxy.url, change_timeout=0.6).set_record(
            "www", "A", ["127.77.0.7"], 30
        )
    assert err.value.code == "ChangeNotInSync"


def test_route53_check(world: World, zone: str) -> None:
    report = route53(world).check()
    assert report.state == "available", report
    assert any(c.name == "zone" and c.ok and zone in c.detail for c in report.checks)
    with world.moto.auth():
        blocked = route53(world).check()
    assert blocked.state == "blocked", blocked
