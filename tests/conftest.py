"""Shared fixtures.

Tests that need a system server (BIND, etcd, ...) call :func:`need`: on a developer's
machine a missing server skips the test with the reason; with ``CI=true`` it fails, so
CI never passes by silently skipping.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Session fixtures for real servers that several test modules share (sshd, etcd).
pytest_plugins = ["tests.sshd", "tests.etcd_server"]

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Safety belt: no probe from any test may leave the loopback range, even when a cloud
# double or moto hands out an address elsewhere.
os.environ.setdefault("FAILOVER_PROBE_NETWORKS", "127.0.0.0/8")


def need(condition: object, reason: str) -> None:
    """Skip (developer machine) or fail (CI=true) when a required server is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required for CI but missing: {reason}", pytrace=False)
    pytest.skip(reason)


def need_binary(name: str, *extra_dirs: str) -> str:
    path = shutil.which(name, path=os.pathsep.join([*extra_dirs, os.environ.get("PATH", "")]))
    need(path, f"{name} is not installed (apt-get install it, or run .ci/run as root)")
    assert path is not None
    return path


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A folder for a config and its state; every host started in it is killed after."""
    from tests.helpers import cleanup

    yield tmp_path
    for config in tmp_path.glob("*.yaml"):
        cleanup(config)
