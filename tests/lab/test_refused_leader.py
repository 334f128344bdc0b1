"""Found by the fault lab (seed 17: a watcher's clock stepped +864 s, then the service
killed): the stepped watcher led, and every cutover it tried was refused by BIND (TSIG
BADTIME: the signature's time was 864 s off), round after round, while the two watchers
whose clocks were right waited for it; the service stayed down until the lab gave up.
A leader whose cutover every DNS provider refused gives the lead up and stands aside
for a lease_ttl, even when its next round comes first: another watcher, with its own
clock (or network path), is let in.

Two cron-style ``failover check`` processes (as in tests/test_etcd_watchers.py) on a
real etcd and a real BIND; w1's clock is the lab's clock step (``clockshift``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.etcd_server import EtcdCluster
from tests.etcd_server import etcd_state
from tests.helpers import ROOT
from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import kill_active
from tests.helpers import write_config
from tests.lab.run import CLOCKSHIFT
from tests.servers import bind_server

pytestmark = pytest.mark.timeout(600)  # a handful of CLI calls, on a loaded machine


def me(n: int, **extra: str) -> dict[str, str]:
    return {"FAILOVER_WATCHER": f"w{n}", "FAILOVER_LOCATION": f"loc{n}", **extra}


def test_a_leader_whose_cutover_dns_refuses_gives_the_lead_up(
    project: Path, etcd: EtcdCluster
) -> None:
    with bind_server(project) as (host, port, key_name, secret, zone):
        data = base_config(
            domain=f"www.{zone}", policy={"ready_timeout": "30s", "max_moves_per_hour": 100}
        )
        data["dns"] = {
            "type": "rfc2136", "zone": zone, "ttl": 1, "server": f"{host}:{port}",
            "key_name": key_name, "key_secret": secret, "timeout": "1s",
            "propagation_timeout": "5s", "poll_interval": "0s",
        }  # fmt: skip
        # A long lease: each cron `check` leaves its vote (and its lead) for lease_ttl.
        data["state"] = etcd_state(etcd, lease_ttl="120s")
        data["watchers"] = {"quorum": 2}
        config = write_config(project, data)
        failover("deploy", "web", config=config, check=True)
        kill_active(config)
        clock = project / "clock"
        clock.write_text("+900\n")
        stepped = {"PYTHONPATH": f"{CLOCKSHIFT}:{ROOT}", "LAB_CLOCK_FILE": str(clock)}
        first = failover("check", config=config, env=me(1, **stepped))
        assert "rejected the signature's time" in first.stdout, first.stdout + first.stderr
        # Its next round may well come first (its failover took the round's time): it
        # stands aside for a lease_ttl instead of taking the lead back (seed 17 in CI).
        again = failover("check", config=config, env=me(1, **stepped))
        assert "rejected the signature's time" not in again.stdout, again.stdout + again.stderr
        second = failover("check", config=config, env=me(2))
        assert "moved from alpha" in second.stdout, second.stdout + second.stderr
