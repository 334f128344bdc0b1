"""Several watchers, one decision (contract section 7).

Each watcher has a name and a location (``FAILOVER_WATCHER``, ``FAILOVER_LOCATION``) and
an etcd lease. Every round it writes, under that lease, what it saw of each service (its
*vote*), so the votes of a watcher that dies vanish when its lease does, and those of a
cron ``check`` stay for ``lease_ttl`` and add up with the next machine's. Votes count
per distinct location: three watchers in one data centre are one vantage point.

One watcher acts: the holder of the leader key, created only if absent and bound to its
lease. A watcher whose own view disagrees with a quorum of locations (it sees down what
a quorum sees up, or the other way round, or it cannot tell) does not campaign and gives
the key up. The leader commits a failover in one transaction that checks its leader
key, the votes it counted (unchanged since it read them) and the service's generation;
the run that follows is fenced by its lock's revision as every run is.

With SQLite there is one watcher, and :class:`Solo` answers every question the way a
single watcher always has.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import socket
import threading
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any

from failover.state import SqliteStore
from failover.state import StateError
from failover.state import now_iso
from failover.state.gateway import KV
from failover.state.gateway import created_at
from failover.state.gateway import delete
from failover.state.gateway import get_op
from failover.state.gateway import modified_at
from failover.state.gateway import put
from failover.state.gateway import range_kvs

if TYPE_CHECKING:
    from failover.config import Config
    from failover.engine.health import ProviderWord
    from failover.probes import ProbeResult
    from failover.state import ServiceRow
    from failover.state import Store
    from failover.state.etcd import EtcdStore


@dataclass(frozen=True)
class Identity:
    name: str
    location: str


def identity() -> Identity:
    name = os.environ.get("FAILOVER_WATCHER") or socket.gethostname()
    return Identity(name, os.environ.get("FAILOVER_LOCATION") or name)


def own_view(probes: list[ProbeResult], word: ProviderWord | None, healthy_elsewhere: bool) -> str:
    """What this watcher saw of a service this round: ``up`` when the host answers
    (a wrong DNS record is not the host's fault), ``down`` when it does not and the
    watcher can see (another service answers, or the provider's API does), else
    ``unknown`` (also when the round's budget left a probe unrun)."""
    if any(not p.ran for p in probes):
        return "unknown"
    if all(p.ok or p.kind == "dns" for p in probes) and any(p.ok for p in probes):
        return "up"
    if all(p.ok for p in probes):
        return "up"
    if healthy_elsewhere or (word is not None and word.word != "silent"):
        return "down"
    return "unknown"


class Solo:
    """One watcher (SQLite): it counts as a quorum and always leads."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def observe(
        self,
        rows: dict[str, ServiceRow],
        probes: dict[str, list[ProbeResult]],
        words: dict[str, ProviderWord],
    ) -> None:
        return None

    def settle_due(self, services: list[str]) -> list[str]:
        """The services with a run to finish or a host left over, in one read: a quiet
        round settles nothing, however many services there are (issue 28)."""
        due = self.store.unsettled()
        return [name for name in services if name in due]

    def quorum(self, service: str, row: ServiceRow, proof: bool) -> tuple[bool, str]:
        return True, ""

    def decide(self, service: str, row: ServiceRow, *, proof: bool = False) -> tuple[bool, str]:
        return True, ""

    def hand_over(self, service: str, host_id: str) -> str | None:
        return None

    def recovered(self, service: str, generation: int) -> str | None:
        return None

    def held(self, service: str) -> str | None:
        return None

    def failed(self, service: str, signature: list[str] | None) -> None:
        return None

    def resign(self, *, hold: bool = False) -> None:
        return None

    def document(self) -> list[dict[str, Any]] | None:
        return None

    def warnings(self) -> list[str]:
        return []

    def close(self) -> None:
        return None


@dataclass
class Snapshot:
    """The ``watch/`` keys as one range read them (and this watcher's own writes)."""

    members: dict[str, KV] = field(default_factory=dict)  # live (lease-bound)
    roster: dict[str, dict[str, Any]] = field(default_factory=dict)  # every one seen
    votes: dict[str, dict[str, KV]] = field(default_factory=dict)  # service -> watcher
    # What each watcher sees of the candidate host an open run is bringing up.
    cands: dict[str, dict[str, KV]] = field(default_factory=dict)  # service -> watcher
    leader: KV | None = None
    holds: set[str] = field(default_factory=set)  # watchers that stand aside a while


class EtcdWatchers:
    """This process's watcher, as the other watchers see it through etcd."""

    def __init__(self, config: Config, store: EtcdStore, me: Identity | None = None) -> None:
        self.config, self.store, self.gw = config, store, store.gw
        self.me = me or identity()
        self.ttl = config.state.lease_ttl
        self.lease = 0
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()
        self.snap: Snapshot | None = None
        self.round_revision = 0
        self.eligible = True
        self._differed = False  # last round's view differed from the quorum's
        # service -> (host id, address) of the candidate an open run is bringing up, as
        # the last settle_due read them: every watcher probes it and votes on it.
        self.candidates: dict[str, tuple[str, str]] = {}

    def _k(self, *parts: str) -> str:
        return self.store.k("watch", *parts)

    def read(self) -> Snapshot:
        """Every member, vote and the leader, in one range."""
        return self._parse(self.gw.range(self._k(""), prefix=True))

    def _parse(self, kvs: list[KV]) -> Snapshot:
        snap = Snapshot()
        base = self._k("")
        for kv in kvs:
            parts = kv.key[len(base) :].split("/")
            if parts[0] == "member" and len(parts) == 2:
                snap.members[parts[1]] = kv
            elif parts[0] == "roster" and len(parts) == 2:
                snap.roster[parts[1]] = kv.json() or {}
            elif parts[0] == "vote" and len(parts) == 3:
                snap.votes.setdefault(parts[1], {})[parts[2]] = kv
            elif parts[0] == "cand" and len(parts) == 3:
                snap.cands.setdefault(parts[1], {})[parts[2]] = kv
            elif parts == ["leader"]:
                snap.leader = kv
            elif parts[0] == "hold" and len(parts) == 2:
                snap.holds.add(parts[1])
        return snap

    def _ensure_lease(self, snap: Snapshot) -> None:
        """Keep this watcher's lease alive, or take up the one an earlier run with the
        same name left (cron: the votes of one machine stay one voice), or get one."""
        if not self.lease and self.me.name in snap.members:
            self.lease = snap.members[self.me.name].lease
        if not (self.lease and self.gw.keepalive(self.lease) > 0):
            self.lease = self.gw.grant(self.ttl)
        if self._beat is None:
            self._beat = threading.Thread(target=self._keep, daemon=True, name="failover-votes")
            self._beat.start()

    def _keep(self) -> None:
        """Renew the lease while a long run (provisioning) holds up the rounds, so the
        leader does not lose its lead and its votes in the middle of its own move. A
        process that dies takes this thread with it: then the lease lapses."""
        gw = copy.copy(self.gw)  # its own request count: the rounds' stays theirs
        while not self._stop.wait(self.ttl / 3):
            with contextlib.suppress(StateError):
                gw.keepalive(self.lease)

    def close(self) -> None:
        self._stop.set()

    def resign(self, *, hold: bool = False) -> None:
        """A round that failed gives the lead up: the beat renews the lease whatever the
        rounds do, so a leader whose every round raises would keep the lead, and nothing
        would move while it does (the fault lab, seed 1021). Its next good round may
        campaign again, unless ``hold``: then it stands aside for one ``lease_ttl`` (a
        key on a lease of its own, so a cron `check` holds too). A leader that DNS
        refused for its own clock was else the first to campaign again, its failover
        having taken the round's time, and won the lead back every time (seed 17 under
        load). Best effort: a store out of reach lapses the lease anyway."""
        with contextlib.suppress(StateError):
            snap = self.read()
            ops = [put(self._k("hold", self.me.name), {"at": now_iso()}, self.gw.grant(self.ttl))]
            ops = ops if hold else []
            if self.leads(snap):
                self.gw.txn(self._lead_compare(snap), [delete(self._k("leader")), *ops])
                snap.leader = None
            elif ops:
                self.gw.txn([], ops)
            snap.holds |= {self.me.name} if hold else set()
            self.snap = snap

    def _leader_value(self) -> str:
        return json.dumps({"name": self.me.name, "location": self.me.location, "lease": self.lease})

    def leads(self, snap: Snapshot | None = None) -> bool:
        """Does the leader key name this watcher? By name, not by lease: another process
        of the same watcher (a cron ``check`` before this one) is the same voice, and
        its lead is this process's to use (issue 21: model seed 9001)."""
        snap = snap or self.snap
        return bool(snap and snap.leader and (snap.leader.json() or {}).get("name") == self.me.name)

    def _lead_compare(self, snap: Snapshot) -> list[dict[str, Any]]:
        """The leader key is still the one read (and it names this watcher)."""
        assert snap.leader is not None
        return [modified_at(snap.leader.key, snap.leader.mod_revision)]

    # ----------------------------------------------------------------- a round

    def observe(
        self,
        rows: dict[str, ServiceRow],
        probes: dict[str, list[ProbeResult]],
        words: dict[str, ProviderWord],
    ) -> None:
        """Write this round's votes, and campaign for the lead or give it up, in one
        transaction (plus one read and one lease renewal: three round trips a round,
        however many services)."""
        snap = self.read()
        self._ensure_lease(snap)
        elsewhere = any(all(p.ok for p in res) for res in probes.values())
        ops, mine = [], {}
        for name, row in rows.items():
            if name not in probes:
                continue
            sees = own_view(probes[name], words.get(name), elsewhere)
            fall = self.config.services[name].health.fall
            before = snap.votes.get(name, {}).get(self.me.name)
            prev = (before.json() or {}) if before else {}
            running = prev.get("generation") == row.generation and prev.get("sees") == sees
            # Capped at fall, so a steady vote is not rewritten and the leader's
            # decision (which checks the votes it counted did not change) can hold.
            failures = 0
            if sees == "down":
                failures = min(fall, int(prev.get("failures", 0)) + 1) if running else 1
            vote = {
                "location": self.me.location,
                "sees": sees,
                "failures": failures,
                "generation": row.generation,
            }
            mine[name] = vote
            if prev != vote or before is None or before.lease != self.lease:
                ops.append(put(self._k("vote", name, self.me.name), vote, self.lease))
        cands = self._candidate_votes(snap, rows, ops)
        member = {"location": self.me.location, "last_seen": now_iso(), "pid": os.getpid()}
        ops.append(put(self._k("member", self.me.name), member, self.lease))
        ops.append(put(self._k("roster", self.me.name), {**member, "sees": _sees(mine)}))
        self._campaign(snap, mine, ops, member, cands)

    def _candidate_votes(
        self, snap: Snapshot, rows: dict[str, ServiceRow], ops: list[dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Probe the candidates of open runs and vote on them: votes on a candidate are
        votes too, so a leader that cannot see its own candidate hands the run over
        instead of destroying a healthy host (issue 21)."""
        due = {n: c for n, c in self.candidates.items() if n in rows}
        seen = candidate_views(self.config, due)
        mine: dict[str, dict[str, Any]] = {}
        for name, (host_id, _) in due.items():
            vote = {"location": self.me.location, "host_id": host_id, "sees": seen[name]}
            mine[name] = vote
            before = snap.cands.get(name, {}).get(self.me.name)
            if before is None or before.json() != vote or before.lease != self.lease:
                ops.append(put(self._k("cand", name, self.me.name), vote, self.lease))
        for name, votes in snap.cands.items():
            if name not in mine and self.me.name in votes:
                ops.append(delete(self._k("cand", name, self.me.name)))
                votes.pop(self.me.name)
        for name, vote in mine.items():
            key = self._k("cand", name, self.me.name)
            snap.cands.setdefault(name, {})[self.me.name] = KV(
                key, json.dumps(vote), 0, 0, self.lease
            )
        return mine

    def _campaign(
        self,
        snap: Snapshot,
        mine: dict[str, dict[str, Any]],
        ops: list[dict[str, Any]],
        member: dict[str, Any],
        cands: dict[str, dict[str, Any]],
    ) -> None:
        leader = self._k("leader")
        dissent = self._minority(snap, mine, cands)
        # A definite view against the quorum's costs the lead only two rounds running:
        # the watcher that sees a failure first is early, not wrong (the others see it
        # on their next probe), and a leader that lost the lead for being first would
        # hand every real failover to another watcher (CI: the blind-candidate test).
        minority = bool(dissent) and (dissent != "differs" or self._differed)
        self._differed = dissent == "differs"
        minority = minority or self.me.name in snap.holds
        self.eligible = not minority
        if minority and self.leads(snap):
            compare = self._lead_compare(snap)
            ok, responses, revision = self.gw.txn(compare, [*ops, delete(leader)], ops)
            snap.leader = None if ok else snap.leader
        elif minority:
            _, responses, revision = self.gw.txn([], ops)
        else:
            ok, responses, revision = self.gw.txn(
                [created_at(leader, 0)],
                [*ops, put(leader, json.loads(self._leader_value()), self.lease)],
                [*ops, get_op(leader)],
            )
            if ok:
                snap.leader = KV(leader, self._leader_value(), revision, revision, self.lease)
            else:
                held = range_kvs(responses[-1])
                snap.leader = held[0] if held else None
                revision = self._rebind(snap, revision)
        self.round_revision = revision
        self._merge(snap, mine, member, revision)
        self.snap = snap

    def _rebind(self, snap: Snapshot, revision: int) -> int:
        """An earlier process of this watcher left the lead on its own lease: bind it to
        this one's, so it lives as long as this process does."""
        if not (self.leads(snap) and snap.leader and snap.leader.lease != self.lease):
            return revision
        value = json.loads(self._leader_value())
        key = self._k("leader")
        ok, _, rebound = self.gw.txn(self._lead_compare(snap), [put(key, value, self.lease)])
        if ok:
            snap.leader = KV(key, self._leader_value(), snap.leader.create_revision, rebound,
                             self.lease)  # fmt: skip
            return rebound
        return revision

    def _merge(
        self,
        snap: Snapshot,
        mine: dict[str, dict[str, Any]],
        member: dict[str, Any],
        revision: int,
    ) -> None:
        """Fold this watcher's own writes into the snapshot (as etcd now holds them)."""
        for name, vote in mine.items():
            votes = snap.votes.setdefault(name, {})
            old = votes.get(self.me.name)
            value = json.dumps(vote)
            if old is None or old.json() != vote or old.lease != self.lease:
                key = self._k("vote", name, self.me.name)
                votes[self.me.name] = KV(key, value, revision, revision, self.lease)
        key = self._k("member", self.me.name)
        snap.members[self.me.name] = KV(key, json.dumps(member), revision, revision, self.lease)

    # ----------------------------------------------------------------- counting

    def _views(
        self, snap: Snapshot, service: str, generation: int | None = None
    ) -> dict[str, set[str]]:
        """The locations that see ``service`` up, down (``fall`` rounds running) or
        cannot tell; a vote about an older generation's host counts as unknown."""
        fall = self.config.services[service].health.fall
        out: dict[str, set[str]] = {"up": set(), "down": set(), "failing": set(), "unknown": set()}
        for name, kv in snap.votes.get(service, {}).items():
            if name not in snap.members:
                continue
            vote = kv.json() or {}
            sees = vote.get("sees", "unknown")
            if generation is not None and vote.get("generation") != generation:
                sees = "unknown"
            elif sees == "down" and int(vote.get("failures", 0)) < fall:
                sees = "failing"
            if sees in out:
                out[sees].add(str(vote.get("location")))
        return out

    def counts(self, snap: Snapshot, service: str) -> dict[str, int]:
        """How many live locations see ``service`` each way (the metrics)."""
        views = self._views(snap, service)
        return {view: len(locations) for view, locations in views.items()}

    def needed(self, snap: Snapshot | None = None) -> int:
        """``watchers.quorum``, or a majority of the live watchers' locations."""
        snap = snap or self.snap or Snapshot()
        if self.config.watchers.quorum:
            return self.config.watchers.quorum
        return len(self.locations(snap)) // 2 + 1

    def locations(self, snap: Snapshot) -> set[str]:
        """The distinct locations of the live watchers (this one included)."""
        found = {self.me.location}
        for kv in snap.members.values():
            location = (kv.json() or {}).get("location")
            if location:
                found.add(str(location))
        return found

    def _minority(
        self,
        snap: Snapshot,
        mine: dict[str, dict[str, Any]],
        cands: dict[str, dict[str, Any]] | None = None,
    ) -> str:
        """Does this watcher's own view (of a service, or of the candidate an open run
        brings up) differ from what a quorum of other locations agree on? Then it may
        not lead: that includes "cannot tell" against a quorum that can, and a watcher
        that could probe nothing at all ("blind"). A definite view against the quorum's
        is "differs"; "" when it agrees."""
        need = self.needed(snap)
        differs = ""
        for name, vote in mine.items():
            others = Snapshot(snap.members, snap.roster, {name: dict(snap.votes.get(name, {}))})
            others.votes[name].pop(self.me.name, None)
            views = self._views(others, name, vote["generation"])
            for view in ("up", "down"):
                if vote["sees"] != view and len(views[view] - {self.me.location}) >= need:
                    if vote["sees"] == "unknown":
                        return "blind"
                    differs = "differs"
        for name, vote in (cands or {}).items():
            agree = self._candidate_seen(snap, name, str(vote["host_id"]), "up")
            if vote["sees"] != "up" and len(agree) >= need:
                return "blind"
        if bool(mine) and all(v["sees"] == "unknown" for v in mine.values()):
            return "blind"
        return differs

    def _candidate_seen(self, snap: Snapshot, service: str, host_id: str, view: str) -> set[str]:
        """The other live locations whose vote on candidate ``host_id`` is ``view``."""
        found = set()
        for name, kv in snap.cands.get(service, {}).items():
            vote = kv.json() or {}
            if name in snap.members and vote.get("host_id") == host_id and vote["sees"] == view:
                found.add(str(vote.get("location")))
        return found - {self.me.location}

    def _eligible(self, snap: Snapshot) -> bool:
        """May this watcher act, judged by the votes it wrote last round?"""
        mine = {s: v[self.me.name].json() or {} for s, v in snap.votes.items()
                if self.me.name in v and self.me.name in snap.members}  # fmt: skip
        cands = {s: v[self.me.name].json() or {} for s, v in snap.cands.items()
                 if self.me.name in v and self.me.name in snap.members}  # fmt: skip
        return self.me.name not in snap.holds and not self._minority(snap, mine, cands)

    def quorum(self, service: str, row: ServiceRow, proof: bool) -> tuple[bool, str]:
        """Do enough locations see ``service`` down? The provider's word is proof
        enough."""
        snap = self.snap or self.read()
        views = self._views(snap, service, row.generation)
        need = self.needed(snap)
        down = sorted(views["down"])
        says = f"{len(down)} of {len(self.locations(snap))} locations see it down (quorum {need}"
        says += f": {', '.join(down)})" if down else ")"
        return proof or len(down) >= need, says

    def decide(self, service: str, row: ServiceRow, *, proof: bool = False) -> tuple[bool, str]:
        """Commit the decision to fail ``service`` over, in one transaction that checks
        the leader key is ours, the votes counted are unchanged (unless the provider's
        word, ``proof``, decided: it needs no votes) and the generation is the one
        probed. False (and who acts instead) when any of them moved."""
        snap = self.snap or self.read()
        if not self.leads(snap):
            who = (snap.leader.json() or {}) if snap.leader else {}
            if who:
                return False, f"watcher {who.get('name')} ({who.get('location')}) acts"
            return False, "no watcher leads yet (the next round elects one)"
        counted = snap.votes.get(service, {})
        compare = self._lead_compare(snap)
        if not proof:
            compare += [modified_at(kv.key, kv.mod_revision) for kv in counted.values()]
        compare.append(self.store.generation_compare(service, row.generation))
        decision = {
            "leader": self.me.name,
            "generation": row.generation,
            "votes": {n: kv.json() for n, kv in counted.items()},
            "proof": proof,
            "at": now_iso(),
        }
        ok, _, revision = self.gw.txn(compare, [put(self._k("decision", service), decision)])
        if ok:
            return True, f"decided by {self.me.name} at revision {revision}"
        self.snap = None  # read again next time
        return False, "the votes, the lead or the generation changed; the next round decides"

    def settle_due(self, services: list[str]) -> list[str]:
        """The services with a run to finish or a host left over, when this watcher may
        see to them (as the leader, or when nobody leads): one transaction of three
        reads, so a quiet round costs the same however many services there are."""
        _, responses, _ = self.gw.txn(
            [],
            [
                get_op(self._k(""), prefix=True),
                get_op(self.store.k("open", ""), prefix=True),
                get_op(self.store.k("host", ""), prefix=True),
            ],
        )
        snap = self._parse(range_kvs(responses[0]))
        self.snap = self.snap or snap
        hosts = [kv.json() or {} for kv in range_kvs(responses[2])]
        self.candidates = {
            str(h["service"]): (str(h["host_id"]), str(h["address"]))
            for h in hosts
            if h.get("role") == "candidate" and h.get("address")
        }
        # Nobody leads (a leader handed a run over, or died): only a watcher that can
        # see what the others see picks the run up, never the one that handed it over.
        if not (self.leads(snap) or (snap.leader is None and self._eligible(snap))):
            return []
        due = {kv.key.split("/")[-2] for kv in range_kvs(responses[1])}
        leftover = ("fence", "candidate", "drill")
        due.update(str(h.get("service")) for h in hosts if h.get("role") in leftover)
        return [name for name in services if name in due]

    def recovered(self, service: str, generation: int) -> str | None:
        """Why a failover of ``service`` left open should not be finished: a quorum of
        locations sees its host at ``generation`` up again, and the failover was not
        decided on the provider's word (which the votes cannot overrule). None: finish."""
        snap = self.read()
        kv = self.gw.get(self._k("decision", service))
        made = (kv.json() or {}) if kv else {}
        if made.get("generation") == generation and made.get("proof"):
            return None
        up = sorted(self._views(snap, service, generation)["up"])
        need = self.needed(snap)
        if len(up) < need:
            return None
        total = len(self.locations(snap))
        where = ", ".join(up)
        return f"{len(up)} of {total} locations see the old host up again (quorum {need}: {where})"

    def hand_over(self, service: str, host_id: str) -> str | None:
        """The candidate ``host_id`` did not get ready as this watcher sees it: when a
        quorum of other locations sees it healthy, the fault is this watcher's. It then
        votes "cannot tell" on the candidate and gives up the lead in one transaction,
        and the run is left for a watcher that can see (None: it is the candidate's
        fault after all, destroy it)."""
        snap = self.read()
        healthy = self._candidate_seen(snap, service, host_id, "up")
        need = self.needed(snap)
        if len(healthy) < need:
            return None
        vote = {"location": self.me.location, "host_id": host_id, "sees": "unknown"}
        mine = snap.members.get(self.me.name)
        lease = self.lease or (mine.lease if mine else 0)  # a run's sibling engine has none
        ops = [put(self._k("cand", service, self.me.name), vote, lease)]
        compare = []
        if snap.leader is not None and (snap.leader.json() or {}).get("name") == self.me.name:
            compare = [modified_at(snap.leader.key, snap.leader.mod_revision)]
            ops.append(delete(snap.leader.key))
        self.gw.txn(compare, ops)
        self.snap = None
        return (
            f"{len(healthy)} other location(s) see the candidate {host_id} healthy "
            f"(quorum {need}: {', '.join(sorted(healthy))}) while this watcher cannot: it "
            "gives up the lead and leaves the run to a watcher that can see"
        )

    # ----------------------------------------------------------------- repeats

    def _others(self, snap: Snapshot, service: str) -> list[list[str]]:
        """What the other live watchers see of ``service`` and of its candidate."""
        found = set()
        for kind, votes in (("service", snap.votes), ("candidate", snap.cands)):
            for name, kv in votes.get(service, {}).items():
                if name != self.me.name and name in snap.members:
                    vote = kv.json() or {}
                    found.add((kind, str(vote.get("location")), str(vote.get("sees"))))
        return [list(x) for x in sorted(found)]

    def failed(self, service: str, signature: list[str] | None) -> None:
        """Remember how a failover of ``service`` failed (its candidates and the steps
        they failed at) and what the others saw meanwhile; None: it succeeded."""
        key = self._k("failed", service)
        if signature is None:
            self.gw.txn([], [delete(key)])
            return
        view = self._others(self.read(), service)
        if not view:  # alone: no other view to wait for a change in, as with one watcher
            self.gw.txn([], [delete(key)])
            return
        kv = self.gw.get(key)
        before = (kv.json() or {}) if kv else {}
        same = before.get("signature") == signature and before.get("view") == view
        count = int(before.get("count", 0)) + 1 if same else 1
        record = {"signature": signature, "view": view, "count": count, "at": now_iso()}
        self.gw.txn([], [put(key, record)])

    def held(self, service: str) -> str | None:
        """A failover that failed the same way on the same candidates twice, while the
        other watchers' view did not change, is not tried a third time: whatever made
        it fail is still there, and each try costs a ``ready_timeout`` of outage."""
        kv = self.gw.get(self._k("failed", service))
        record = (kv.json() or {}) if kv else {}
        if int(record.get("count", 0)) < 2:
            return None
        if record.get("view") != self._others(self.snap or self.read(), service):
            return None
        return (
            f"the failover failed twice the same way ({', '.join(record['signature'])}) "
            "while the other watchers' view stayed the same; not tried again until it "
            f"changes (or move it by hand: `failover move {service} --to PROVIDER`)"
        )

    # ----------------------------------------------------------------- documents

    def document(self) -> list[dict[str, Any]]:
        from failover.watcher_report import document

        return document(self)

    def warnings(self) -> list[str]:
        from failover.watcher_report import warnings

        return warnings(self)


def candidate_views(config: Config, due: dict[str, tuple[str, str]]) -> dict[str, str]:
    """``up``, ``down`` or ``unknown`` for each candidate host (service -> (id, address)),
    probed as ``verify`` probes it: out of DNS, so without the dns probe."""
    from failover.config import TcpProbe
    from failover.probes import Target
    from failover.probes import probe_round

    if not due:
        return {}
    targets = []
    for name, (_, address) in due.items():
        svc = config.services[name]
        health = svc.health.model_copy(update={"dns": None})
        if not (health.http or health.tcp or health.tls):
            health = health.model_copy(update={"tcp": TcpProbe()})
        targets.append(Target(name, address, svc.port, svc.domain, health))
    budget = min(t.health.interval for t in targets)
    found = asyncio.run(probe_round(targets, budget=budget))
    return {name: own_view(res, None, True) for name, res in zip(due, found, strict=True)}


def _sees(mine: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: str(vote["sees"]) for name, vote in mine.items()}


def watchers_for(config: Config, store: Store) -> Solo | EtcdWatchers:
    from failover.state.etcd import EtcdStore

    if isinstance(store, EtcdStore):
        return EtcdWatchers(config, store)
    assert isinstance(store, SqliteStore)
    return Solo(store)
