"""Clouds behind the fault-injecting proxy, shared by tests/test_faults*.py.

Each builder starts a cloud's endpoint (moto in server mode, the GCE double, the ARM
double), puts a :class:`~tests.doubles.faultproxy.FaultProxy` in front of it and returns
a :class:`Cloud`: how to build the real provider against the proxy, what its requests
look like to the proxy, its error bodies, and the config entry the CLI uses. A cloud
whose SDK is missing is skipped with the reason (and fails under ``CI=true``).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from providers.base import HostSpec
from providers.base import HostState
from providers.base import ProviderContext
from providers.base import RunSpec
from tests.conftest import need
from tests.doubles.faultproxy import FaultProxy
from tests.doubles.faultproxy import ec2_error
from tests.doubles.faultproxy import json_error

ATTEMPTS = 3
GARBAGE = "\x00\x01<<<garbage>>> {{{ not-an-api-answer ]]"


def have(*modules: str) -> bool:
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except ModuleNotFoundError:
            return False
    return True


# --------------------------------------------------------------------------- clouds


@dataclass
class Cloud:
    """One cloud behind the proxy: how to build its provider, and how its requests look."""

    name: str
    proxy: FaultProxy
    make: Callable[..., Any]  # (**overrides) -> provider
    get_match: Callable[[str], dict[str, Any]]  # host name -> proxy match of get_host
    create_match: dict[str, Any]  # proxy match of the create request
    error_body: Callable[[int, str], str]
    content_type: str
    entry: Callable[[], dict[str, Any]]  # the config's providers: entry (endpoint = proxy)
    alive: Callable[[], list[str]]  # names of hosts still alive at the provider
    extra: dict[str, Any] = field(default_factory=dict)


def spec(name: str) -> HostSpec:
    # Not "web": the end-to-end tests count the hosts of service "web" at the cloud.
    return HostSpec(
        name=name,
        service="sdk",
        generation=1,
        port=8080,
        run=RunSpec(command="python3 -m http.server {port}"),
        user_data="#cloud-config\nruncmd: [[true]]\n",
    )


def aws_cloud(stack: ExitStack, tmp: Path, moto: Any) -> Cloud:
    import boto3

    from providers.aws import AwsProvider
    from providers.aws import AwsSettings
    from tests.doubles.moto_server import seed_ec2

    moto.set_auth(False)
    moto.reset()
    seeded = seed_ec2(moto)
    proxy = stack.enter_context(FaultProxy(moto.url))
    ec2 = boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1")

    def entry() -> dict[str, Any]:
        return {
            "name": "aws",
            "type": "aws",
            "region": "us-east-1",
            "zones": ["us-east-1a"],
            "instance_type": "t3.micro",
            "image": seeded["image"],
            "subnet": seeded["subnet_a"],
            "endpoint": proxy.url,
            "retry_attempts": ATTEMPTS,
            "retry_max_time": "20s",
            "request_timeout": "500ms",
        }

    def make(**overrides: Any) -> Any:
        return AwsProvider(AwsSettings(**{**entry(), **overrides}), ProviderContext(state_dir=tmp))

    def alive() -> list[str]:
        resp = ec2.describe_instances(
            Filters=[
                {"Name": "tag:failover:service", "Values": ["web"]},
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
            ]
        )
        return [i["InstanceId"] for r in resp["Reservations"] for i in r["Instances"]]

    return Cloud(
        "aws",
        proxy,
        make,
        lambda name: {"body": "Action=DescribeInstances"},
        {"body": "Action=RunInstances"},
        lambda status, msg: ec2_error(
            {503: "ServiceUnavailable", 500: "InternalError", 429: "RequestLimitExceeded"}.get(
                status, "Unavailable"
            ),
            msg,
        ),
        "text/xml",
        entry,
        alive,
    )


def gcp_cloud(stack: ExitStack, tmp: Path) -> Cloud:
    need(have("google.cloud.compute_v1"), "Google SDKs missing (pip install -e '.[gcp]')")
    from providers.gcp import GcpProvider
    from providers.gcp import GcpSettings
    from tests.doubles.gce import GceDouble

    gce = stack.enter_context(GceDouble())
    proxy = stack.enter_context(FaultProxy(gce.endpoint))

    def entry() -> dict[str, Any]:
        return {
            "name": "gcp",
            "type": "gcp",
            "project": "test-project",
            "zones": ["us-central1-a"],
            "endpoint": proxy.url,
            "retry_attempts": ATTEMPTS,
            "retry_max_time": "20s",
            "operation_timeout": "10s",
            "request_timeout": "500ms",
        }

    def make(**overrides: Any) -> Any:
        return GcpProvider(
            GcpSettings.model_validate({**entry(), **overrides}), ProviderContext(state_dir=tmp)
        )

    def alive() -> list[str]:
        direct = make(endpoint=gce.endpoint)  # around the proxy
        return [h.name for h in direct.list_hosts("web") if not h.state.gone]

    return Cloud(
        "gcp",
        proxy,
        make,
        lambda name: {"method": "GET", "path": f"re:/instances/{name}(\\?|$)"},
        {"method": "POST", "path": "re:/zones/[^/]+/instances(\\?|$)"},
        lambda status, msg: json_error(
            status,
            msg,
            {503: "backendError", 500: "internalError", 429: "rateLimitExceeded"}.get(
                status, "backendError"
            ),
        ),
        "application/json",
        entry,
        alive,
        {"double": gce},
    )


def azure_cloud(stack: ExitStack, tmp: Path) -> Cloud:
    need(
        have("azure.mgmt.compute", "azure.mgmt.network", "azure.identity"),
        "Azure SDKs missing (pip install -e '.[azure]')",
    )
    from providers.azure import AzureProvider
    from providers.azure import AzureSettings
    from tests.doubles.azure import AzureDouble

    az = stack.enter_context(AzureDouble())
    proxy = stack.enter_context(FaultProxy(az.url))
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFailoverTestKeyOnlyNotARealKeyxxxxxxxxxxx test"

    def entry() -> dict[str, Any]:
        return {
            "name": "azure",
            "type": "azure",
            "subscription_id": az.subscription,
            "resource_group": az.resource_group,
            "location": az.location,
            "zones": ["1"],
            "subnet_id": az.subnet_id(),
            "ssh_public_key": key,
            "endpoint": proxy.url,
            "retry_attempts": ATTEMPTS,
            "retry_max_time": "20s",
            "operation_timeout": "10s",
        }

    def make(**overrides: Any) -> Any:
        return AzureProvider(
            AzureSettings(**{**entry(), **overrides}), ProviderContext(state_dir=tmp)
        )

    def alive() -> list[str]:
        direct = make(endpoint=az.url)  # around the proxy
        return [h.name for h in direct.list_hosts("web") if not h.state.gone]

    return Cloud(
        "azure",
        proxy,
        make,
        lambda name: {"method": "GET", "path": f"re:/virtualMachines/{name}(\\?|$)"},
        {"method": "PUT", "path": "re:/virtualMachines/[^/?]+(\\?|$)"},
        lambda status, msg: json_error(
            status,
            msg,
            code={
                503: "ServiceUnavailable",
                500: "InternalServerError",
                429: "TooManyRequests",
            }.get(status, "ServiceUnavailable"),
        ),
        "application/json",
        entry,
        alive,
        {"double": az},
    )


def made_host(cloud: Cloud, provider: Any) -> Any:
    host = provider.create_host(spec(f"web-g1-{cloud.name}"))
    deadline = time.monotonic() + 10
    while True:
        got = provider.get_host(host.id)
        if got is not None and got.state in (HostState.RUNNING, HostState.PENDING):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{host.id} never came up: {got}")
        time.sleep(0.05)


def fault(cloud: Cloud, kind: str) -> dict[str, Any]:
    if kind in ("503", "500", "429"):
        status = int(kind)
        out: dict[str, Any] = {
            "status": status,
            "response_body": cloud.error_body(status, f"injected {kind}"),
            "content_type": cloud.content_type,
        }
        if status == 429:
            out["retry_after"] = 0
        return out
    if kind == "reset":
        return {"action": "reset"}
    if kind == "hang":
        # Longer than request_timeout where the provider has one (aws, gcp: 500ms); the
        # ARM clients read for 60s, so for azure the proxy's own close ends the attempt.
        return {"action": "hang", "hang": 1.5 if cloud.name != "azure" else 1}
    if kind == "garbage":
        return {"status": 200, "response_body": GARBAGE, "content_type": cloud.content_type}
    raise AssertionError(kind)


TRANSIENT = ["503", "500", "429", "reset", "hang"]

CLOUDS = ["aws", "gcp", "azure"]
