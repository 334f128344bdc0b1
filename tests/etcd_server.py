"""A real three-member etcd cluster on loopback ports, for the tests of several watchers.

Debian's ``etcd-server`` (``/usr/bin/etcd``, which ``.ci/run`` installs) is started
unprivileged from a temp directory, once per test session (``etcd_cluster``). Tests keep
apart by giving each its own key prefix. A test that stops members starts them again
before it ends (``EtcdCluster.start``), so the next test finds three.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_binary
from tests.servers import free_port

NAMES = ("m1", "m2", "m3")


class EtcdCluster:
    def __init__(self, binary: str, base: Path) -> None:
        self.binary, self.base = binary, base
        self.client = {n: free_port() for n in NAMES}
        self.peer = {n: free_port() for n in NAMES}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{self.client[n]}" for n in NAMES]

    def start(self, name: str) -> None:
        if name in self.procs and self.procs[name].poll() is None:
            return
        cluster = ",".join(f"{n}=http://127.0.0.1:{self.peer[n]}" for n in NAMES)
        data = self.base / name
        log = (self.base / f"{name}.log").open("ab")
        client = f"http://127.0.0.1:{self.client[name]}"
        self.procs[name] = subprocess.Popen(
            [
                self.binary,
                "--name", name,
                "--data-dir", str(data),
                "--listen-client-urls", client,
                "--advertise-client-urls", client,
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer[name]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer[name]}",
                "--initial-cluster", cluster,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", "failover-tests",
                "--heartbeat-interval", "50",
                "--election-timeout", "500",
                "--log-level", "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()

    def stop(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def healthy(self, name: str) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.client[name]}/health", timeout=1
            ) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def wait_healthy(self, names: tuple[str, ...] = NAMES, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.healthy(n) for n in names):
                return
            time.sleep(0.1)
        logs = {n: (self.base / f"{n}.log").read_text(errors="replace")[-1500:] for n in NAMES}
        raise RuntimeError(f"etcd did not become healthy: {logs}")

    def restore(self) -> None:
        for name in NAMES:
            self.start(name)
        self.wait_healthy()

    def close(self) -> None:
        for name in NAMES:
            self.stop(name)


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    binary = need_binary("etcd", "/usr/bin")
    cluster = EtcdCluster(binary, tmp_path_factory.mktemp("etcd"))
    try:
        for name in NAMES:
            cluster.start(name)
        cluster.wait_healthy()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def etcd(etcd_cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    """The session's cluster, with all three members up, for one test."""
    etcd_cluster.restore()
    yield etcd_cluster
    etcd_cluster.restore()


def etcd_state(cluster: EtcdCluster, **extra: object) -> dict[str, object]:
    """A ``state:`` section on the cluster under a prefix of this test's own."""
    return {
        "backend": "etcd",
        "endpoints": cluster.endpoints,
        "prefix": f"/failover-test-{uuid.uuid4().hex[:8]}/",
        "lease_ttl": "10s",  # long: a loaded machine must not let a live lease lapse
        "timeout": "1s",
        **extra,
    }
