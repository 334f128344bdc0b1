"""One provider instance serving many threads at once, as a round's parallel moves use
the instances of classes that set ``shared_across_threads`` (Engine.sibling borrows them).

Every provider is the real one against its usual double: AWS against moto in server mode,
GCP against tests/doubles/gce.py, Azure against tests/doubles/azure.py, local with real
process groups, static with a real listening socket. Sixteen threads start together (a
barrier) on a fresh instance; every answer must equal the one a single thread got,
nothing may raise, and exactly one session / credential / client set must have been
built.

How a missing lock is made visible: the functions that build a session, a credential or
a client are wrapped (``Counted``: the real function still runs) to count their calls
and to hold each caller 50 ms before building. Without the lock every thread that found
"nothing built yet" gets there within those 50 ms and the count exceeds one; with it the
count is one. This relies on 16 threads passing a barrier within 50 ms of each other,
which holds on a loaded 2-core machine by a wide margin, but it is a timing argument, not
a proof: a missing lock could in principle go unseen on a run where the threads happen
to pass one by one. (Checked by hand: with the locks replaced by no-ops, all seven AWS,
GCP and Azure tests below fail, 16 builds instead of 1; with ``write_private``'s
temporary file named per process again, its test fails on a vanished temporary; with
the static provider's flock taken out, its test loses records.)
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.base import HostSpec
from providers.base import HostState
from providers.base import ProviderContext
from providers.base import RunSpec
from providers.base import dns_class
from providers.base import provider_class
from providers.util import write_private
from tests.doubles.moto_server import MotoServer
from tests.doubles.moto_server import require_moto
from tests.doubles.moto_server import seed_ec2
from tests.doubles.moto_server import use_test_credentials
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(180)

THREADS = 16


class Counted:
    """A real function, counted, each call held ``hold`` seconds before it runs."""

    def __init__(self, fn: Callable[..., Any], hold: float = 0.05) -> None:
        self.fn = fn
        self.hold = hold
        self.args: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.args)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.args.append(args)
        time.sleep(self.hold)
        return self.fn(*args, **kwargs)


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call on its own thread, all released together; their results in order.
    Fails on the first exception any of them raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # reported below, with its thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread never finished"
    assert not errors, errors
    return results


def readers(provider: Any, ids: list[str], service: str) -> list[Callable[[], Any]]:
    """THREADS calls: get_host, get_hosts and list_hosts in turn."""
    kinds: list[Callable[[], Any]] = [
        lambda: provider.get_host(ids[0]),
        lambda: provider.get_hosts(ids),
        lambda: provider.list_hosts(service),
    ]
    return [kinds[i % len(kinds)] for i in range(THREADS)]


def check_answers(provider: Any, ids: list[str], service: str, results: list[Any]) -> None:
    expected = [
        provider.get_host(ids[0]),
        provider.get_hosts(ids),
        provider.list_hosts(service),
    ]
    assert expected[0] is not None and len(expected[2]) == len(ids)
    for i, got in enumerate(results):
        assert got == expected[i % len(expected)], i


def test_every_cloud_provider_and_backend_says_it_may_be_shared() -> None:
    # The classes this file proves safe; ssh, cloudflare and rfc2136 stay unflagged.
    for kind in ("aws", "gcp", "azure", "local", "static"):
        assert provider_class(kind).shared_across_threads, kind
    for kind in ("route53", "clouddns", "azuredns", "local"):
        assert dns_class(kind).shared_across_threads, kind
    assert not provider_class("ssh").shared_across_threads


def test_write_private_from_many_threads_at_once(tmp_path: Path) -> None:
    """Threads of one process replacing one file: each write lands whole (the temporary
    file is per thread, not per process), and none fails on a vanished temporary."""
    path = tmp_path / "host.json"
    bodies = [(str(i) * 200_000) for i in range(THREADS)]
    at_once([functools.partial(write_private, path, body) for body in bodies])
    assert path.read_text() in bodies
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host.json"]


# --------------------------------------------------------------------------- AWS


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    return require_moto()


@pytest.fixture
def aws(moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    use_test_credentials(monkeypatch)
    moto.set_auth(False)
    moto.reset()
    seeded = seed_ec2(moto)

    def make() -> Any:
        from providers.aws import AwsProvider
        from providers.aws import AwsSettings

        settings = AwsSettings(
            name="aws",
            type="aws",
            region="us-east-1",
            image=seeded["image"],
            instance_type="t3.micro",
            subnet=seeded["subnet_a"],
            endpoint=moto.url,
            retry_attempts=3,
            retry_max_time=20,
            request_timeout=10,
        )
        return AwsProvider(settings, ProviderContext(tmp_path))

    return make


def aws_spec(name: str, service: str = "web") -> HostSpec:
    return HostSpec(
        name=name,
        service=service,
        generation=1,
        port=8080,
        run=RunSpec(command="true"),
        user_data="#cloud-config\nruncmd: [[true]]\n",
    )


def count_aws_builds(monkeypatch: pytest.MonkeyPatch) -> tuple[Counted, Counted]:
    from providers import _aws

    sessions, clients = Counted(_aws.make_session), Counted(_aws.make_client)
    monkeypatch.setattr(_aws, "make_session", sessions)
    monkeypatch.setattr(_aws, "make_client", clients)
    return sessions, clients


def test_aws_lookups_from_16_threads_share_one_session_and_client(
    aws: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    maker = aws()
    ids = [maker.create_host(aws_spec(f"web-g{i}-aws")).id for i in (1, 2)]
    maker.close()

    sessions, clients = count_aws_builds(monkeypatch)
    provider = aws()
    results = at_once(readers(provider, ids, "web"))
    assert sessions.calls == 1 and clients.calls == 1
    session = provider._session
    assert session is not None and list(provider._clients) == ["ec2"]
    check_answers(provider, ids, "web", results)
    assert provider._session is session and clients.calls == 1  # nothing built afterwards
    provider.close()


def test_aws_creates_and_destroys_16_hosts_at_once(
    aws: Callable[[], Any], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    import boto3

    sessions, clients = count_aws_builds(monkeypatch)
    provider = aws()
    names = [f"svc{i}-g1-aws" for i in range(THREADS)]
    hosts = at_once(
        [functools.partial(provider.create_host, aws_spec(n, n.split("-")[0])) for n in names]
    )
    assert [h.name for h in hosts] == names
    assert len({h.id for h in hosts}) == THREADS
    assert sessions.calls == 1 and clients.calls == 1 and list(provider._clients) == ["ec2"]

    ec2 = boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1")
    tagged = [
        i
        for r in ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        )["Reservations"]
        for i in r["Instances"]
    ]
    # One instance per name: no create launched twice, none lost.
    assert sorted(
        next(t["Value"] for t in i["Tags"] if t["Key"] == "Name") for i in tagged
    ) == sorted(names)

    at_once([functools.partial(provider.destroy_host, h.id) for h in hosts])
    after = provider.get_hosts([h.id for h in hosts])
    assert all(h is None or h.state is HostState.TERMINATED for h in after.values())
    assert sessions.calls == 1 and clients.calls == 1
    provider.close()


def test_route53_client_is_built_once_for_16_threads(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    use_test_credentials(monkeypatch)
    moto.set_auth(False)
    moto.reset()
    zone = f"z{uuid.uuid4().hex[:6]}.test"
    boto3.client("route53", endpoint_url=moto.url, region_name="us-east-1").create_hosted_zone(
        Name=zone, CallerReference=zone
    )
    from providers.dns.route53 import Route53Dns
    from providers.dns.route53 import Route53Settings

    dns = Route53Dns(
        Route53Settings(type="route53", zone=zone, endpoint=moto.url), ProviderContext(tmp_path)
    )
    dns.set_record("www", "A", ["127.0.0.10"], 60)
    dns.close()
    sessions, clients = count_aws_builds(monkeypatch)
    results = at_once([lambda: dns.get_record("www", "A")] * THREADS)
    assert sessions.calls == 1 and clients.calls == 1
    assert all(r == results[0] for r in results) and results[0].values == ["127.0.0.10"]
    dns.close()


# --------------------------------------------------------------------------- GCP


@pytest.fixture
def gce() -> Iterator[Any]:
    pytest.importorskip("google.cloud.compute_v1", reason="google-cloud-compute missing")
    from tests.doubles.gce import GceDouble

    with GceDouble() as double:
        yield double


def make_gcp(gce: Any) -> Any:
    from providers.gcp import GcpProvider
    from providers.gcp import GcpSettings

    settings = GcpSettings.model_validate(
        {
            "name": "gcp",
            "type": "gcp",
            "project": "test-project",
            "zones": ["us-central1-a", "us-central1-b"],
            "endpoint": gce.endpoint,
            "retry_attempts": 3,
            "retry_max_time": 10,
            "operation_timeout": 10,
            "request_timeout": 10,
        }
    )
    return GcpProvider(settings, ProviderContext(state_dir=Path("/nonexistent")))


def settled(provider: Any, ids: list[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hosts = provider.get_hosts(ids)
        if all(h is not None and h.state is HostState.RUNNING for h in hosts.values()):
            return
        time.sleep(0.05)
    raise AssertionError(f"{ids} never all RUNNING")


def test_gcp_lookups_from_16_threads_share_one_credential_and_client(
    gce: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers import _gcp

    maker = make_gcp(gce)
    ids = [maker.create_host(aws_spec(f"web-g{i}-gcp")).id for i in (1, 2)]
    settled(maker, ids)
    maker.close()

    credentials = Counted(_gcp.load_credentials)
    monkeypatch.setattr(_gcp, "load_credentials", credentials)
    provider = make_gcp(gce)
    clients = Counted(provider._new_client)
    monkeypatch.setattr(provider, "_new_client", clients)
    results = at_once(readers(provider, ids, "web"))
    assert credentials.calls == 1
    assert clients.args == [("InstancesClient",)]
    assert list(provider._clients) == ["InstancesClient"]
    check_answers(provider, ids, "web", results)
    assert credentials.calls == 1 and clients.calls == 1
    provider.close()


def test_clouddns_client_is_built_once_for_16_threads(
    gce: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("google.cloud.dns", reason="google-cloud-dns missing")
    from providers import _gcp
    from providers.dns.clouddns import CloudDns
    from providers.dns.clouddns import CloudDnsSettings

    gce.add_dns_zone("example-test", "example.test.")
    dns = CloudDns(
        CloudDnsSettings(
            type="clouddns", zone="example.test", project="test-project", endpoint=gce.endpoint
        ),
        ProviderContext(state_dir=Path("/nonexistent")),
    )
    credentials = Counted(_gcp.load_credentials)
    monkeypatch.setattr(_gcp, "load_credentials", credentials)
    dns.set_record("www.example.test", "A", ["127.0.0.10"], 60)
    assert credentials.calls == 1
    fresh = CloudDns(dns.settings, dns.context)
    results = at_once([lambda: fresh.get_record("www.example.test", "A")] * THREADS)
    assert credentials.calls == 2  # one for `dns`, one for `fresh`
    assert all(r == results[0] for r in results) and results[0].values == ["127.0.0.10"]


# --------------------------------------------------------------------------- Azure


@pytest.fixture
def az() -> Iterator[Any]:
    pytest.importorskip("azure.mgmt.compute", reason="azure-mgmt-compute missing")
    pytest.importorskip("azure.mgmt.network", reason="azure-mgmt-network missing")
    from tests.doubles.azure import AzureDouble

    with AzureDouble() as double:
        yield double


def make_azure(az: Any, tmp_path: Path) -> Any:
    from providers.azure import AzureProvider
    from providers.azure import AzureSettings

    settings = AzureSettings(
        name="az",
        type="azure",
        subscription_id=az.subscription,
        resource_group=az.resource_group,
        location=az.location,
        subnet_id=az.subnet_id(),
        ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFailoverTestKeyOnly test",
        endpoint=az.url,
        retry_attempts=3,
        retry_max_time=10,
        operation_timeout=10,
    )
    return AzureProvider(settings, ProviderContext(state_dir=tmp_path))


def test_azure_lookups_from_16_threads_share_one_credential_and_client_pair(
    az: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers import _azure

    maker = make_azure(az, tmp_path)
    ids = [maker.create_host(aws_spec(f"web-g{i}-az")).id for i in (1, 2)]
    maker.close()

    credentials, opened = Counted(_azure.make_credential), Counted(_azure.opened)
    monkeypatch.setattr(_azure, "make_credential", credentials)
    monkeypatch.setattr(_azure, "opened", opened)
    provider = make_azure(az, tmp_path)
    results = at_once(readers(provider, ids, "web"))
    assert credentials.calls == 1
    assert opened.calls == 2  # the compute and the network client, once each
    pair = provider._pair
    assert pair is not None and all(client is not None for client in pair)
    check_answers(provider, ids, "web", results)
    assert provider._pair is pair and credentials.calls == 1
    provider.close()


def test_azuredns_client_is_built_once_for_16_threads(
    az: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("azure.mgmt.dns", reason="azure-mgmt-dns missing")
    from providers import _azure
    from providers.dns.azuredns import AzureDns
    from providers.dns.azuredns import AzureDnsSettings

    az.add_zone("example.test")
    settings = AzureDnsSettings(
        type="azuredns",
        zone="example.test",
        subscription_id=az.subscription,
        resource_group=az.resource_group,
        endpoint=az.url,
    )
    writer = AzureDns(settings, ProviderContext(tmp_path))
    writer.set_record("www.example.test", "A", ["127.0.0.10"], 60)
    writer.close()
    credentials, opened = Counted(_azure.make_credential), Counted(_azure.opened)
    monkeypatch.setattr(_azure, "make_credential", credentials)
    monkeypatch.setattr(_azure, "opened", opened)
    dns = AzureDns(settings, ProviderContext(tmp_path))
    results = at_once([lambda: dns.get_record("www.example.test", "A")] * THREADS)
    assert credentials.calls == 1 and opened.calls == 1
    assert all(r == results[0] for r in results) and results[0].values == ["127.0.0.10"]
    dns.close()


# --------------------------------------------------------------------------- local


def local_spec(name: str, service: str = "web") -> HostSpec:
    # A host that only sleeps: the processes are real, the test needs none to serve.
    return HostSpec(name=name, service=service, generation=1, port=18090, run=RunSpec("sleep 60"))


def test_local_lookups_creates_and_destroys_from_16_threads(tmp_path: Path) -> None:
    import json

    from providers.local import LocalProvider
    from providers.local import LocalSettings

    provider = LocalProvider(LocalSettings(name="alpha", type="local"), ProviderContext(tmp_path))
    made = [provider.create_host(local_spec(f"web-g{i}-alpha")) for i in (1, 2)]
    ids = [h.id for h in made]
    try:
        wait_for(
            lambda: all(
                h is not None and h.state is HostState.RUNNING
                for h in provider.get_hosts(ids).values()
            ),
            timeout=10,
            what="the hosts to start",
        )
        check_answers(provider, ids, "web", at_once(readers(provider, ids, "web")))

        names = [f"svc{i}-g1-alpha" for i in range(THREADS)]
        hosts = at_once(
            [functools.partial(provider.create_host, local_spec(n, n.split("-")[0])) for n in names]
        )
        made += hosts
        assert [h.name for h in hosts] == names
        addresses = {h.address for h in made}
        assert len(addresses) == len(made)  # every host its own loopback address
        table = json.loads((tmp_path / "local" / "addresses.json").read_text())
        assert set(table) == addresses
        for name in names:
            service = name.split("-")[0]
            assert [h.name for h in provider.list_hosts(service)] == [name]
        at_once([functools.partial(provider.destroy_host, h.id) for h in hosts])
        assert all(
            h is not None and h.state is HostState.TERMINATED
            for h in provider.get_hosts([h.id for h in hosts]).values()
        )
        table = json.loads((tmp_path / "local" / "addresses.json").read_text())
        assert set(table) == {h.address for h in made[:2]}
        assert not list((tmp_path / "local").rglob(".*.tmp*"))  # no write left half-done
    finally:
        for host in made:
            provider.destroy_host(host.id)


# --------------------------------------------------------------------------- static


def test_static_adopts_and_releases_for_16_services_at_once(tmp_path: Path) -> None:
    """Sixteen services adopting the one machine together: one record each, none lost
    to another adoption's write of the records file (each save rewrites the whole file,
    so without the flock a save made from a stale read drops the others' records)."""
    import socket

    from providers.static import StaticProvider
    from providers.static import StaticSettings

    with socket.create_server(("127.0.0.1", 0), backlog=128) as machine:
        port = machine.getsockname()[1]
        settings = StaticSettings.model_validate(
            {"name": "own", "type": "static", "machines": [{"address": "127.0.0.1"}]}
        )
        provider = StaticProvider(settings, ProviderContext(tmp_path))
        services = [f"svc{i}" for i in range(THREADS)]
        specs = [
            HostSpec(name=f"{s}-g1-own", service=s, generation=1, port=port, run=RunSpec("x"))
            for s in services
        ]
        hosts = at_once([functools.partial(provider.create_host, spec) for spec in specs])
        assert [h.service for h in hosts] == services
        for service, host in zip(services, hosts, strict=True):
            assert provider.list_hosts(service) == [host]
        at_once([functools.partial(provider.destroy_host, h.id) for h in hosts])
        assert all(provider.list_hosts(service) == [] for service in services)
