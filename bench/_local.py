"""What the benches that drive local providers share."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import yaml

# The sample app every bench serves.
APP = "{python} -m failover.demo_app --port {port} --bind {address}"


def kill_all(state: Path) -> None:
    """Kill every local host under the state directory ``state`` (a bench's teardown)."""
    for meta in state.glob("local/*/hosts/*/host.json"):
        pid = yaml.safe_load(meta.read_text()).get("pid")
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)
