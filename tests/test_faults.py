"""Provider API faults at the SDK level: the real SDKs through the fault-injecting proxy.

tests/doubles/faultproxy.py sits between each real SDK and moto (AWS, server mode), the
GCE double and the ARM double, and answers the provider's ``get_host`` request with
500/503, 429 with ``Retry-After``, a connection reset, a hung connection, added latency,
or a 200 full of garbage. Asserted on the attempts the proxy saw and on the errors,
never on wall-clock:

- a transient fault that goes away is survived with exactly one retry;
- one that stays is retried exactly ``retry_attempts`` times, then fails with the
  provider's own error, in the taxonomy (never an SDK exception), naming the provider;
- latency alone is not retried; garbage is a clear taxonomy error and ``check_account``
  still never raises;
- a ``Retry-After`` never makes a call outlast ``retry_max_time``.

The same faults during a failover, and under ``failover watch``: tests/test_faults_e2e.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from providers.base import ProviderError
from providers.base import TransientError
from tests.conftest import need
from tests.doubles.moto_server import require_moto
from tests.doubles.moto_server import use_test_credentials
from tests.fault_clouds import ATTEMPTS
from tests.fault_clouds import CLOUDS
from tests.fault_clouds import Cloud
from tests.fault_clouds import aws_cloud
from tests.fault_clouds import azure_cloud
from tests.fault_clouds import fault
from tests.fault_clouds import gcp_cloud
from tests.fault_clouds import have
from tests.fault_clouds import made_host

pytestmark = pytest.mark.timeout(120)

TRANSIENT = ["503", "500", "429", "reset", "hang"]


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


@pytest.mark.parametrize("kind", ["503", "429", "reset", "hang"])
def test_transient_fault_that_goes_away_is_retried(cloud: Cloud, kind: str) -> None:
    provider = cloud.make()
    host = made_host(cloud, provider)
    match = cloud.get_match(host.name)
    before = cloud.proxy.count(**match)
    cloud.proxy.add(**match, **fault(cloud, kind), times=1)
    got = provider.get_host(host.id)
    assert got is not None and got.id == host.id
    assert cloud.proxy.count(**match) - before == 2  # the fault, then the retry
    provider.close()


@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_fault_that_stays_exhausts_a_bounded_number_of_attempts(
    cloud: Cloud, kind: str
) -> None:
    provider = cloud.make()
    host = made_host(cloud, provider)
    match = cloud.get_match(host.name)
    before = cloud.proxy.count(**match)
    cloud.proxy.add(**match, **fault(cloud, kind), times=None)
    with pytest.raises(TransientError) as caught:
        provider.get_host(host.id)
    assert cloud.proxy.count(**match) - before == ATTEMPTS
    error = caught.value
    assert error.provider == cloud.name and str(error).startswith(f"{cloud.name}: ")
    assert error.code, error  # the platform's code (or the transport error's name)
    if kind in ("503", "500", "429"):
        assert f"injected {kind}" in str(error), str(error)  # the platform's own words
    provider.close()


def test_latency_alone_is_not_retried(cloud: Cloud) -> None:
    provider = cloud.make()
    host = made_host(cloud, provider)
    match = cloud.get_match(host.name)
    before = cloud.proxy.count(**match)
    cloud.proxy.add(**match, action="delay", delay=0.3, times=None)
    assert provider.get_host(host.id) is not None
    assert cloud.proxy.count(**match) - before == 1
    provider.close()


def test_garbage_answer_is_a_clear_provider_error(cloud: Cloud) -> None:
    provider = cloud.make()
    host = made_host(cloud, provider)
    match = cloud.get_match(host.name)
    before = cloud.proxy.count(**match)
    cloud.proxy.add(**match, **fault(cloud, "garbage"), times=None)
    with pytest.raises(ProviderError) as caught:
        provider.get_host(host.id)
    # In the taxonomy, naming the provider, bounded, and not a dump of the garbage.
    assert caught.value.provider == cloud.name
    assert 1 <= cloud.proxy.count(**match) - before <= ATTEMPTS
    assert "garbage" not in str(caught.value)
    report = provider.check_account()  # never raises, even on garbage
    assert report.state in ("available", "unknown", "blocked")
    provider.close()


def test_retry_after_never_waits_past_retry_max_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto: Any
) -> None:
    """What the retry loop *asks* to sleep is recorded: no wall-clock assertion. time.sleep
    is wrapped (and still sleeps, up to 1.5 s) because tenacity's requested waits cannot be
    observed any other way."""
    with ExitStack() as stack:
        cloud = aws_cloud(stack, tmp_path, moto)
        provider = cloud.make(retry_max_time="1s")
        host = made_host(cloud, provider)
        requested: list[float] = []
        real_sleep = time.sleep

        def sleep(seconds: float) -> None:
            requested.append(seconds)
            real_sleep(min(seconds, 1.5))

        cloud.proxy.add(**cloud.get_match(host.name), **fault(cloud, "429"), times=None)
        cloud.proxy.faults[-1].retry_after = 3600
        monkeypatch.setattr(time, "sleep", sleep)
        with pytest.raises(TransientError):
            provider.get_host(host.id)
        monkeypatch.undo()
        assert requested, "no retry happened"
        assert sum(requested) <= 1.0 + 0.01, requested
