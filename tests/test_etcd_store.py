"""The etcd store against a real three-member etcd: the same semantics as SQLite (the
same calls give the same journal), the lock and its fencing, the members it tries in
turn, what happens when none answers, and `failover state migrate --to etcd`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from failover.state import Lease
from failover.state import LeaseLost
from failover.state import RoundRecord
from failover.state import SqliteStore
from failover.state import Store
from failover.state.etcd import EtcdStore
from failover.state.gateway import Gateway
from failover.state.gateway import StoreUnreachable
from tests.etcd_server import EtcdCluster
from tests.etcd_server import etcd_state
from tests.helpers import ROOT
from tests.helpers import base_config
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import kill_active
from tests.helpers import wait_for
from tests.helpers import write_config
from tests.servers import free_port

ACTIVE = {"provider": "alpha", "host_id": "h-1", "address": "127.77.0.1", "name": "web-g1"}


def store(cluster: EtcdCluster, endpoints: list[str] | None = None) -> EtcdStore:
    prefix = f"/store-test-{uuid.uuid4().hex[:8]}/"
    return EtcdStore(Gateway(endpoints or cluster.endpoints, timeout=1.0), prefix)


def same_prefix(a: EtcdStore) -> EtcdStore:
    return EtcdStore(Gateway(a.gw.endpoints, timeout=1.0), a.prefix)


def journey(s: Store) -> list[Any]:
    """The same calls on any store; what it answers, without the clock."""
    out: list[Any] = []
    lease = s.acquire("service:web", ttl=30)
    assert isinstance(lease, Lease)
    event = s.start_event("web", "deploy", "first deploy", None, {"to": "alpha"}, lease)
    for seq, name in enumerate(("lock", "select", "provision")):
        s.step(event, seq, name, "in_progress", None, lease)
        s.step(event, seq, name, "succeeded", f"{name} done", lease)
    s.reset_steps(event, ("provision",), lease)
    out.append(s.open_event("web"))
    out.append(s.cutover("web", 0, ACTIVE, lease))
    out.append(s.cutover("web", 0, ACTIVE, lease))  # a resumed run repeats it: fine
    s.update_event(event, lease, target=ACTIVE, status="succeeded", data={"x": 1})
    out.append(s.open_event("web"))
    drill = s.start_event("web", "drill", "drill", ACTIVE, {}, None)
    out.append(s.open_event("web"))  # a drill is never "the" open event
    s.update_event(drill, None, status="succeeded")
    rec = [RoundRecord("web", 1, False, 0.2, 2, 1), RoundRecord("other", 1, True, 0.1, 2, 1)]
    out.append(s.record_rounds(rec))
    out.append(s.record_round("web", 0, True, 0.1, 2, 1))  # stale generation: dropped
    s.set_host("alpha", "h-1", service="web", generation=1, role="active", address="1.2.3.4")
    s.set_host("alpha", "h-1", service="web", generation=7, role="fence", note="stop it")
    out.append(s.hosts("web"))
    out.append(s.hosts(role="active"))
    s.set_provider_state("alpha", "blocked", "account suspended")
    out.append(s.provider_states())
    out.append(s.events("web", limit=10))
    out.append(s.events(kinds=("drill",)))
    out.append(s.moves_since("web", 0))
    s.release(lease)
    return out


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        clock = ("_at", "duration_s", "active_since", "last_check", "updated_at")
        return {k: scrub(v) for k, v in value.items() if not k.endswith(clock)}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return scrub(dict(value.__dict__))
    return value


def test_the_same_calls_give_the_same_answers_as_sqlite(
    etcd_cluster: EtcdCluster, tmp_path: Path
) -> None:
    sqlite = SqliteStore(tmp_path)
    etcd = store(etcd_cluster)
    assert scrub(journey(etcd)) == scrub(journey(sqlite))


def test_the_lock_is_exclusive_and_fences_a_holder_that_lost_it(
    etcd_cluster: EtcdCluster,
) -> None:
    a = store(etcd_cluster)
    b = same_prefix(a)
    lease = a.acquire("service:web", ttl=30)
    assert isinstance(lease, Lease)
    held = b.acquire("service:web", ttl=30)
    assert isinstance(held, dict) and held["pid"] == os.getpid() and held["expires_in"] > 0
    # The lease ends as if the holder had been paused past its ttl.
    a.gw.revoke(a.gw.get(a.k("lock", "service:web")).lease)  # type: ignore[union-attr]
    taken = b.acquire("service:web", ttl=30)
    assert isinstance(taken, Lease) and taken.token > lease.token
    for write in (
        lambda: a.renew(lease),
        lambda: a.start_event("web", "failover", "x", None, {}, lease),
        lambda: a.cutover("web", 0, ACTIVE, lease),
    ):
        with pytest.raises(LeaseLost):
            write()
    assert b.events("web") == []
    b.release(taken)


def test_a_stale_cutover_is_refused(etcd_cluster: EtcdCluster) -> None:
    s = store(etcd_cluster)
    lease = s.acquire("service:web", ttl=30)
    assert isinstance(lease, Lease)
    assert s.cutover("web", 0, ACTIVE, lease) == 1
    with pytest.raises(LeaseLost, match="a newer move won"):
        s.cutover("web", 0, {**ACTIVE, "host_id": "h-2"}, lease)
    assert s.service("web").active == ACTIVE


def test_the_lock_of_a_dead_process_is_taken_at_once(etcd_cluster: EtcdCluster) -> None:
    s = store(etcd_cluster)
    code = (
        "import sys; from failover.state.etcd import EtcdStore\n"
        "from failover.state.gateway import Gateway\n"
        f"EtcdStore(Gateway({s.gw.endpoints!r}), {s.prefix!r}).acquire('service:web', 600)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert isinstance(s.acquire("service:web", ttl=30), Lease)


def test_members_are_tried_in_turn(etcd: EtcdCluster) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    s = store(etcd, [dead, *etcd.endpoints])
    etcd.stop("m1")
    assert s.cutover("web", 0, ACTIVE, None) == 1
    assert s.service("web").generation == 1
    assert len(s.members()) == 3


def test_no_member_answers_is_unreachable_never_down(etcd_cluster: EtcdCluster) -> None:
    s = store(etcd_cluster, [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"])
    with pytest.raises(StoreUnreachable, match="state store unreachable: no etcd member answered"):
        s.service("web")


def test_check_exits_3_when_the_store_is_unreachable(project: Path) -> None:
    data = base_config()
    data["state"] = {"backend": "etcd", "endpoints": [f"http://127.0.0.1:{free_port()}"]}
    config = write_config(project, data)
    proc = failover("check", config=config)
    assert proc.returncode == 3
    assert proc.stdout.startswith("FAILOVER UNKNOWN - state store unreachable"), proc.stdout


def test_migrate_moves_the_sqlite_state_to_etcd_losing_nothing(
    project: Path, etcd_cluster: EtcdCluster
) -> None:
    data = base_config()
    config = write_config(project, data)
    failover("deploy", "web", config=config, check=True)
    kill_active(config)
    wait_for(lambda: failover("check", config=config).returncode in (0, 1), what="failover")
    before = failover_json("history", config=config)["events"]
    assert [e["kind"] for e in before][:2] == ["failover", "deploy"]
    generation = failover_json("status", config=config)["services"][0]["generation"]

    data["state"] = etcd_state(etcd_cluster)
    write_config(project, data)
    proc = failover("state", "migrate", "--to", "etcd", config=config)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(before)} events" in proc.stdout
    assert failover_json("history", config=config)["events"] == before
    after = failover_json("status", config=config)["services"][0]
    assert after["generation"] == generation
    assert failover("check", config=config).returncode == 0
    # A second migration would merge two histories: refused, nothing written.
    again = failover("state", "migrate", "--to", "etcd", config=config)
    assert again.returncode == 1 and "already holds state" in again.stderr
    assert failover_json("history", config=config)["events"][: len(before)] == before


def test_migrate_needs_etcd_in_the_config(project: Path) -> None:
    config = write_config(project, base_config())
    proc = failover("state", "migrate", "--to", "etcd", config=config)
    assert proc.returncode == 2 and "state.backend: set it to etcd" in proc.stderr


# --------------------------------------------------------------------------- votes


def watchers_on(cluster: EtcdCluster, *who: tuple[str, str]) -> list[Any]:
    import yaml

    from failover.config import parse
    from failover.watchers import EtcdWatchers
    from failover.watchers import Identity

    data = base_config(health={"fall": 2})
    data["state"] = etcd_state(cluster)
    config = parse(yaml.safe_dump(data))
    return [
        EtcdWatchers(
            config, EtcdStore(Gateway(cluster.endpoints), data["state"]["prefix"]), Identity(n, loc)
        )  # type: ignore[index]
        for n, loc in who
    ]


def round_of(w: Any, ok: bool) -> None:
    from failover.engine.health import ProviderWord
    from failover.probes import ProbeResult
    from failover.state import ServiceRow

    row = ServiceRow("web", 1, dict(ACTIVE), None, "up", 0, 0, None, None)
    probe = ProbeResult("http", ok, 0.01, None if ok else "connection refused")
    w.observe({"web": row}, {"web": [probe]}, {"web": ProviderWord("alive", "running")})


def test_votes_count_per_location_and_the_default_quorum_is_a_majority(
    etcd_cluster: EtcdCluster,
) -> None:
    from failover.state import ServiceRow

    row = ServiceRow("web", 1, dict(ACTIVE), None, "up", 0, 0, None, None)
    a1, a2, b, c = watchers_on(
        etcd_cluster, ("a1", "fsn"), ("a2", "fsn"), ("b", "nbg"), ("c", "hel")
    )
    assert a1.store.cutover("web", 0, ACTIVE, None) == 1
    for w in (a1, a2, b, c):
        round_of(w, True)
    assert a1.needed(a1.read()) == 2  # three locations (its last round saw only itself)
    for _ in range(2):  # fall rounds
        round_of(a1, False)
        round_of(a2, False)
    agreed, says = a2.quorum("web", row, proof=False)
    assert not agreed and "1 of 3 locations see it down (quorum 2: fsn)" in says
    # a1 and a2 are one vantage point, outvoted by nbg and hel: neither leads.
    assert not a1.leads() and not a2.leads()
    for _ in range(2):
        round_of(b, False)
    for w in (a1, a2, b, c):
        round_of(w, w is c)  # c alone sees it up
    round_of(c, True)  # two rounds running: one alone could be c's being first
    agreed, says = b.quorum("web", row, proof=False)
    assert agreed and "2 of 3 locations see it down (quorum 2: fsn, nbg)" in says
    # c sees it up against a quorum: it gives the lead up; one of the others leads.
    assert not c.leads()
    leaders = [w for w in (a1, a2, b) if w.leads(w.read())]
    assert len(leaders) == 1
    round_of(leaders[0], False)  # a steady vote is not rewritten: the count stands
    decided, why = leaders[0].decide("web", row)
    assert decided, why
    round_of(c, False)  # a vote the leader counted changed: its decision would not commit
    assert not leaders[0].decide("web", row)[0]
    round_of(leaders[0], False)
    others = [w for w in (a1, a2, b, c) if w is not leaders[0]]
    assert all(not w.decide("web", row)[0] for w in others)
    assert "acts" in others[0].decide("web", row)[1]
    # A decision about a generation that is no longer current does not commit.
    stale = ServiceRow("web", 0, dict(ACTIVE), None, "up", 0, 0, None, None)
    assert not leaders[0].decide("web", stale)[0]


def test_the_first_to_see_a_failure_keeps_the_lead_and_a_lasting_dissent_loses_it(
    etcd_cluster: EtcdCluster,
) -> None:
    a, b, c = watchers_on(etcd_cluster, ("a", "fsn"), ("b", "nbg"), ("c", "hel"))
    assert a.store.cutover("web", 0, ACTIVE, None) == 1
    for w in (a, b, c):
        round_of(w, True)
    assert a.leads(a.read())
    # a sees the failure first; b and c have not probed since: a is early, not wrong.
    round_of(a, False)
    assert a.leads(a.read())
    round_of(b, False)
    round_of(c, False)
    round_of(a, False)
    assert a.leads(a.read())
    # b and c see it up again while a still sees it down: a round later, a lets go.
    round_of(b, True)
    round_of(c, True)
    round_of(a, False)
    assert a.leads(a.read())
    round_of(a, False)
    assert not a.leads(a.read())


def test_no_secret_reaches_etcd(etcd_cluster: EtcdCluster) -> None:
    from failover import redact

    secret = 'etcd-"quoted"-sécret-7731'
    redact.register_secret(secret)
    try:
        s = store(etcd_cluster)
        lease = s.acquire("service:web", ttl=30)
        assert isinstance(lease, Lease)
        event = s.start_event("web", "deploy", f"why {secret}", None, {"k": secret}, lease)
        s.step(event, 0, "lock", "failed", f"detail {secret}", lease)
        s.update_event(event, lease, reason=f"again {secret}", data={secret: 1})
        s.set_host("alpha", "h-1", service="web", generation=1, role="fence", note=secret)
        s.set_provider_state("alpha", "blocked", f"refused: {secret}")
        s.set_data_state("web", {"last": secret})
        raw = [kv.value for kv in s.gw.range(s.prefix, prefix=True)]
        assert raw and not any(secret in v or "sécret" in v for v in raw)
        assert not any(json.dumps(secret)[1:-1] in v for v in raw)  # nor escaped
    finally:
        redact._SECRETS.discard(secret)


def test_a_run_interrupted_on_sqlite_finishes_on_etcd(
    project: Path, etcd_cluster: EtcdCluster
) -> None:
    data = base_config()
    config = write_config(project, data)
    failover("deploy", "web", config=config, check=True)
    crash = failover(
        "move", "web", "--to", "beta", "--yes", config=config,
        env={"FAILOVER_FAILPOINT": "after:provision"},
    )  # fmt: skip
    assert crash.returncode == 137, crash.stderr
    data["state"] = etcd_state(etcd_cluster)
    write_config(project, data)
    assert failover("state", "migrate", "--to", "etcd", config=config).returncode == 0
    events = failover_json("history", config=config)["events"]
    assert events[0]["kind"] == "move" and events[0]["status"] == "in_progress"
    failover("check", config=config)  # settles: finishes the move from the journal
    events = failover_json("history", config=config)["events"]
    assert [(e["kind"], e["status"]) for e in events] == [
        ("move", "succeeded"),
        ("deploy", "succeeded"),
    ]
    assert failover_json("status", config=config)["services"][0]["active"]["provider"] == "beta"


def test_a_store_silent_after_the_dns_write_undoes_nothing_and_the_run_resumes(
    project: Path, etcd: EtcdCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from failover import config as cfg
    from failover.engine import Engine
    from tests.helpers import dns_values
    from tests.helpers import live_hosts

    data = base_config()
    data["state"] = etcd_state(etcd)
    config = write_config(project, data)
    failover("deploy", "web", config=config, check=True)
    real = EtcdStore.cutover

    def silent_once(store: EtcdStore, *args: Any, **kwargs: Any) -> int:
        etcd.stop("m1")
        etcd.stop("m2")  # no quorum: the generation write gets no answer
        try:
            return real(store, *args, **kwargs)
        finally:
            etcd.restore()  # and then the cluster answers again, as in the lab

    # A wrapper, not a replacement: the DNS write before it is real, the write itself
    # meets a real cluster without a quorum, and the journal after it a healthy one. No
    # other hook reaches the moment between the two writes of the cutover step (the
    # fault lab's seed 258 hit it by chance).
    monkeypatch.setattr(EtcdStore, "cutover", silent_once)
    engine = Engine(cfg.load(config))
    try:
        with pytest.raises(StoreUnreachable):
            engine.run("web", "move", reason="test", to="beta")
    finally:
        monkeypatch.undo()
    # DNS names the new host, and it was left running: nothing undone on a guess.
    (new,) = [h for h in live_hosts(config) if h["address"] == dns_values(config)[0]]

    def resumed() -> bool:  # the lock is ours until its lease lapses (10 s)
        failover("check", config=config)
        events = failover_json("history", config=config)["events"]
        return (events[0]["kind"], events[0]["status"]) == ("move", "succeeded")

    wait_for(resumed, timeout=120, what="the next check to finish the move")
    engine.close()
    active = failover_json("status", config=config)["services"][0]["active"]
    assert (active["provider"], active["host_id"]) == ("beta", new["id"])
    assert [h["id"] for h in live_hosts(config)] == [new["id"]]
    assert dns_values(config) == [active["address"]]
