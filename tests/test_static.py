"""``type: static``: a machine where the service already runs is adopted, DNS moves there,
and nothing is started or stopped on it. The "machine" is the demo app started by the
test on its own loopback address."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.base import CapacityError
from providers.base import HostSpec
from providers.base import HostState
from providers.base import ProviderContext
from providers.base import RunSpec
from providers.base import Unsupported
from providers.static import StaticProvider
from providers.static import StaticSettings
from tests.helpers import base_config
from tests.helpers import dns_values
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import kill_active
from tests.helpers import live_hosts
from tests.helpers import wait_for
from tests.helpers import write_config

NET = f"127.83.{random.randint(1, 250)}"


def serve(address: str, port: int = 8080) -> subprocess.Popen[bytes]:
    """The service, running on a "machine" by hand, as a static provider expects."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "failover.demo_app", "--port", str(port), "--bind", address],
        env=env_for({"FAILOVER_PROVIDER": "by-hand"}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from providers.util import answers

    wait_for(lambda: answers(address, port), what=f"the service on {address}")
    return proc


@pytest.fixture
def standby() -> Iterator[subprocess.Popen[bytes]]:
    proc = serve(f"{NET}.2")
    yield proc
    proc.kill()
    proc.wait()


def provider(tmp_path: Path, *addresses: str) -> StaticProvider:
    settings = StaticSettings.model_validate(
        {"name": "own", "type": "static", "machines": [{"address": a} for a in addresses]}
    )
    return StaticProvider(settings, ProviderContext(tmp_path, ports={"web": 8080}))


def spec(name: str = "web-g2-own", generation: int = 2) -> HostSpec:
    return HostSpec(name, "web", generation, 8080, RunSpec("never run"))


def test_adopts_the_machine_that_answers(tmp_path: Path, standby: subprocess.Popen[bytes]) -> None:
    p = provider(tmp_path, f"{NET}.1", f"{NET}.2")
    assert p.check_account().state == "available"
    report = p.check_service("web", 8080)
    assert report.state == "available"
    assert [c.ok for c in report.checks] == [False, True]
    host = p.create_host(spec())
    assert host.address == f"{NET}.2" and host.state == HostState.RUNNING
    assert p.create_host(spec()).id == host.id  # idempotent on the name
    assert [h.id for h in p.list_hosts("web")] == [host.id]
    # Already a host of the service: not adopted twice.
    with pytest.raises(CapacityError, match="already a host of web"):
        p.create_host(spec("web-g3-own", 3))
    p.destroy_host(host.id)
    assert standby.poll() is None  # released, never stopped
    assert p.get_host(host.id).state == HostState.TERMINATED  # type: ignore[union-attr]
    assert p.list_hosts("web") == []


def test_no_machine_serving_is_a_capacity_error(tmp_path: Path) -> None:
    p = provider(tmp_path, f"{NET}.3")
    with pytest.raises(Unsupported):
        p.exec_on_host(f"{NET}.3/web/00000000", "true")  # nothing runs there by our hand
    assert p.check_service("web", 8080).state == "unknown"
    with pytest.raises(CapacityError, match=f"nothing answers on {NET}.3:8080"):
        p.create_host(spec())


def test_failover_to_a_static_machine(project: Path, standby: subprocess.Popen[bytes]) -> None:
    data = base_config(health={"fall": 1})
    data["providers"] = [
        {"name": "alpha", "type": "local"},
        {"name": "own", "type": "static", "machines": [{"address": f"{NET}.2"}]},
    ]
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    kill_active(config)
    check = failover("check", config=config)
    assert "moved from alpha to own" in check.stdout, check.stdout + check.stderr
    status = failover_json("status", config=config)["services"][0]
    assert status["active"]["provider"] == "own"
    assert dns_values(config) == [f"{NET}.2"]
    assert live_hosts(config) == []  # nothing local left, nothing new started
    assert standby.poll() is None
    assert failover("check", config=config).returncode == 0
    # Moving away releases the machine: DNS leaves it, the service there keeps running.
    moved = failover("move", "web", "--to", "alpha", "--yes", config=config)
    assert moved.returncode in (0, 1), moved.stdout + moved.stderr
    assert dns_values(config) != [f"{NET}.2"]
    assert standby.poll() is None
