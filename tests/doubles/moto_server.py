"""moto in server mode, once per test process, on 127.0.0.1 (a real HTTP endpoint).

``shared_moto()`` starts ``python -m moto.server`` in a subprocess the first time it is
called (a free port, ``MOTO_EC2_LOAD_DEFAULT_AMIS=false`` so the first ``DescribeImages``
is fast) and stops it at exit; every test module that imports it shares the one server.
It runs as a separate process so that moto's settings (auth switched on through
``/moto-api/reset-auth``) never leak into the test process.

Use it through a fixture, which skips (or fails with ``CI=true``) when moto is missing::

    @pytest.fixture(scope="session")
    def moto():
        return require_moto()
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

# Environment for boto3 clients pointed at moto: fake credentials, no real config files,
# no instance-metadata lookups.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_PROFILE": "",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """One ``python -m moto.server`` subprocess."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = Path(tempfile.mkstemp(prefix="moto-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoServer:
        env = dict(os.environ)
        env.update({k: v for k, v in AWS_TEST_ENV.items() if v})
        env["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
        for attempt in range(3):
            self.port = free_port()
            with self.logfile.open("ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break  # port taken in between, most likely: try another
                try:
                    with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1):
                        return self
                except OSError:
                    time.sleep(0.1)
            self.stop()
            if attempt == 2:
                break
        tail = self.logfile.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"moto server did not start:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def close(self) -> None:
        """Stop the server and remove its log."""
        self.stop()
        self.logfile.unlink(missing_ok=True)

    def _post(self, path: str, data: bytes = b"") -> None:
        req = urllib.request.Request(
            f"{self.url}{path}", data=data, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def reset(self) -> None:
        """Forget every resource (all services, all regions)."""
        self._post("/moto-api/reset")

    def set_auth(self, enabled: bool) -> None:
        """Switch moto's IAM authentication on (unknown keys get AuthFailure) or off."""
        self._post("/moto-api/reset-auth", b"0" if enabled else b"inf")

    @contextlib.contextmanager
    def auth(self) -> Iterator[None]:
        self.set_auth(True)
        try:
            yield
        finally:
            self.set_auth(False)


def seed_ec2(server: MotoServer, region: str = "us-east-1") -> dict[str, str]:
    """A VPC 127.79.0.0/16 with subnets 127.79.0.0/24 (zone a) and 127.79.1.0/24 (zone b),
    no public IP mapping, and an AMI: instances launched there get a loopback address only,
    where nothing listens. Returns ``{"vpc", "subnet_a", "subnet_b", "image"}``."""
    import boto3

    ec2 = boto3.client(
        "ec2",
        endpoint_url=server.url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    vpc = ec2.create_vpc(CidrBlock="127.79.0.0/16")["Vpc"]["VpcId"]
    out = {"vpc": vpc}
    for key, cidr, zone in (
        ("subnet_a", "127.79.0.0/24", f"{region}a"),
        ("subnet_b", "127.79.1.0/24", f"{region}b"),
    ):
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]
        if subnet.get("MapPublicIpOnLaunch"):
            raise RuntimeError("moto maps public IPs on launch in the test subnet")
        out[key] = subnet["SubnetId"]
    out["image"] = ec2.register_image(Name="failover-test-image", RootDeviceName="/dev/sda1")[
        "ImageId"
    ]
    return out


_shared: MotoServer | None = None


def moto_available() -> bool:
    return (
        importlib.util.find_spec("moto") is not None
        and importlib.util.find_spec("flask") is not None
    )


def shared_moto() -> MotoServer:
    global _shared
    if _shared is None:
        server = MotoServer().start()
        atexit.register(server.close)
        _shared = server
    return _shared


def require_moto() -> MotoServer:
    from tests.conftest import need

    need(moto_available(), "moto[server] is not installed (pip install 'moto[server]')")
    return shared_moto()


def use_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials for boto3, and none of the machine's (the CLI runs copy this
    environment)."""
    for key, value in AWS_TEST_ENV.items():
        if value:
            monkeypatch.setenv(key, value)
        else:
            monkeypatch.delenv(key, raising=False)
