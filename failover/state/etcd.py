"""The state of several watchers: etcd, through its v3 HTTP/JSON gateway.

The same journal, counters, lock and hosts as :class:`SqliteStore`, with the same
semantics; what SQLite gets from ``BEGIN IMMEDIATE`` this store gets from compare-and-set
transactions. Every write reads the key it changes, then commits only if the key is
still at the revision it read and, for a run's writes, if the run's lock key is still the
one it created (its ``create_revision`` is the lease token: an etcd revision, so it grows
with every holder and serves as the fencing token of DESIGN.md). A lost race is read
again and retried; a lost lock raises :class:`LeaseLost`.

Keys, under ``state.prefix``::

    meta/schema              svc/<service>            lock/<name>   (lease-bound)
    counter/event            ev/<service>/<id>        evid/<id> -> service
    open/<service>/<id>      prov/<provider>          host/<provider>/<host id>
    watch/...                (failover.watchers: members, votes, leader, decisions)
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from failover.redact import redact
from failover.redact import redact_doc
from failover.redact import register_secret
from failover.redact import url_secrets
from failover.state.etcd_side import EtcdSide
from failover.state.gateway import KV
from failover.state.gateway import TLS
from failover.state.gateway import Gateway
from failover.state.gateway import StoreUnreachable
from failover.state.gateway import b64
from failover.state.gateway import created_at
from failover.state.gateway import delete
from failover.state.gateway import get_op
from failover.state.gateway import modified_at
from failover.state.gateway import put
from failover.state.gateway import range_kvs
from failover.state.rows import RoundRecord
from failover.state.rows import RoundsOfOne
from failover.state.rows import ServiceRow
from failover.state.rows import counters_after
from failover.state.rows import now_iso
from failover.state.sqlite import SCHEMA_VERSION
from failover.state.sqlite import Lease
from failover.state.sqlite import LeaseLost
from failover.state.sqlite import StateError
from failover.state.sqlite import place
from providers.util import pid_alive

_RETRIES = 50  # compare-and-set rounds before giving up on a key others keep writing


class EtcdStore(EtcdSide, RoundsOfOne):
    """The Store of ``state.backend: etcd`` (see :class:`failover.state.Store`)."""

    def __init__(self, gateway: Gateway, prefix: str = "/failover/") -> None:
        self.gw = gateway
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._services: dict[int, str] = {}  # event id -> service (never changes)
        self._schema_checked = False

    def k(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def close(self) -> None:
        self.gw.close()

    def _schema(self) -> None:
        """Refuse a store a newer failover wrote; once per process, on first use."""
        if self._schema_checked:
            return
        key, mark = self.k("meta", "schema"), self.k("meta", "migration")
        ok, responses, _ = self.gw.txn(
            [created_at(key, 0)],
            [put(key, SCHEMA_VERSION), get_op(mark)],
            [get_op(key), get_op(mark)],
        )
        if range_kvs(responses[-1]):
            # failover.state.migrate: half a history is never acted on.
            raise StateError(
                f"etcd under {self.prefix} holds a migration that did not finish: nothing "
                "acts on it until `failover state migrate --to etcd --force` replaces it"
            )
        if not ok:
            found = range_kvs(responses[0])
            version = int(found[0].json()) if found else SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"the etcd state under {self.prefix} was written by a newer failover "
                    f"(schema {version}); upgrade failover to read it"
                )
        self._schema_checked = True

    # ----------------------------------------------------------------- compare-and-set

    def _lock_compare(self, lease: Lease | None) -> list[dict[str, Any]]:
        return [] if lease is None else [created_at(self.k("lock", lease.name), lease.token)]

    def _lost(self, lease: Lease) -> LeaseLost:
        return LeaseLost(
            f"the lock on {lease.name} was taken over by another watcher; "
            "this run stops without writing"
        )

    def _commit(
        self,
        lease: Lease | None,
        compares: list[dict[str, Any]],
        ops: list[dict[str, Any]],
    ) -> bool:
        """One transaction guarded by ``lease`` and ``compares``. False when a compared
        key moved (read again and retry); :class:`LeaseLost` when the lock did."""
        failure = [get_op(self.k("lock", lease.name))] if lease is not None else []
        ok, responses, _ = self.gw.txn([*self._lock_compare(lease), *compares], ops, failure)
        if ok:
            return True
        if lease is not None:
            held = range_kvs(responses[0])
            if not held or held[0].create_revision != lease.token:
                raise self._lost(lease)
        return False

    def _update(
        self,
        key: str,
        change: Callable[[Any], tuple[Any, list[dict[str, Any]]]],
        lease: Lease | None,
    ) -> Any:
        """Read ``key``, let ``change`` make its new value (and any other ops), commit if
        nobody wrote it meanwhile; retried until it holds. Returns the new value."""
        self._schema()
        for _ in range(_RETRIES):
            kv = self.gw.get(key)
            value, extra = change(kv.json() if kv else None)
            ops = [put(key, value), *extra] if value is not None else extra
            if self._commit(lease, [modified_at(key, kv.mod_revision if kv else 0)], ops):
                return value
        raise StateError(f"etcd: {key} kept changing under this write; try again")

    # ----------------------------------------------------------------- lease (lock)

    def acquire(self, name: str, ttl: float) -> Lease | dict[str, Any]:
        """Take the lock (a key bound to an etcd lease), or return who holds it. A holder
        on this machine whose process is gone is taken over at once, as with SQLite."""
        self._schema()
        host, pid = socket.gethostname(), os.getpid()
        owner = f"{host}:{pid}:{uuid.uuid4().hex[:8]}"
        key = self.k("lock", name)
        lease_id = self.gw.grant(ttl)
        value = {"owner": owner, "host": host, "pid": pid, "lease": lease_id}
        for _ in range(3):
            ok, responses, revision = self.gw.txn(
                [created_at(key, 0)], [put(key, value, lease_id)], [get_op(key)]
            )
            if ok:
                return Lease(name, owner, revision, ttl)
            held = range_kvs(responses[0])
            if not held:
                continue  # expired between the compare and the read
            holder = held[0].json() or {}
            if holder.get("host") == host and not pid_alive(int(holder.get("pid", 0))):
                self._commit(None, [created_at(key, held[0].create_revision)], [delete(key)])
                continue
            self.gw.revoke(lease_id)
            return {
                "owner": holder.get("owner"),
                "pid": holder.get("pid"),
                "host": holder.get("host"),
                "expires_in": float(self.gw.time_to_live(held[0].lease)),
            }
        self.gw.revoke(lease_id)
        raise StateError(f"etcd: the lock {name} kept changing hands; try again")

    def _held(self, lease: Lease) -> KV:
        kv = self.gw.get(self.k("lock", lease.name))
        if kv is None or kv.create_revision != lease.token:
            raise self._lost(lease)
        return kv

    def renew(self, lease: Lease) -> None:
        if self.gw.keepalive(self._held(lease).lease) <= 0:
            raise self._lost(lease)

    def release(self, lease: Lease) -> None:
        kv = self.gw.get(self.k("lock", lease.name))
        if kv is not None and kv.create_revision == lease.token:
            self.gw.revoke(kv.lease)  # the key goes with its lease

    # ----------------------------------------------------------------- services

    def _row(self, name: str, raw: dict[str, Any] | None) -> ServiceRow:
        if raw is None:
            return ServiceRow(name, 0, None, None, "unknown", 0, 0, None, None)
        return ServiceRow(
            service=name,
            generation=int(raw["generation"]),
            active=raw.get("active"),
            active_since=raw.get("active_since"),
            health_state=raw.get("health_state", "unknown"),
            failures=int(raw.get("failures", 0)),
            successes=int(raw.get("successes", 0)),
            last_check=raw.get("last_check"),
            latency=raw.get("latency"),
        )

    def service(self, name: str) -> ServiceRow:
        kv = self.gw.get(self.k("svc", name))
        return self._row(name, kv.json() if kv else None)

    def services(self, names: list[str]) -> dict[str, ServiceRow]:
        """Several rows in one read (the whole ``svc/`` range)."""
        found = {
            kv.key.rsplit("/", 1)[1]: kv.json()
            for kv in self.gw.range(self.k("svc", ""), prefix=True)
        }
        return {name: self._row(name, found.get(name)) for name in names}

    def record_rounds(self, records: list[RoundRecord]) -> dict[str, ServiceRow]:
        """A whole round's counters in one transaction, each only if its service is
        still at the generation the round probed."""
        self._schema()
        names = [rec.service for rec in records]
        for _ in range(_RETRIES):
            kvs = {kv.key: kv for kv in self.gw.range(self.k("svc", ""), prefix=True)}
            compares, ops, rows = [], [], {}
            for rec in records:
                kv = kvs.get(self.k("svc", rec.service))
                raw = kv.json() if kv else None
                if kv is None or raw is None or int(raw["generation"]) != rec.generation:
                    rows[rec.service] = self._row(rec.service, raw)
                    continue
                failures, successes, state = counters_after(
                    int(raw["failures"]), int(raw["successes"]), raw["health_state"], rec
                )
                raw = {
                    **raw,
                    "failures": failures,
                    "successes": successes,
                    "health_state": state,
                    "last_check": now_iso(),
                    "latency": rec.latency,
                }
                compares.append(modified_at(kv.key, kv.mod_revision))
                ops.append(put(kv.key, raw))
                rows[rec.service] = self._row(rec.service, raw)
            if not ops or self._commit(None, compares, ops):
                return {name: rows[name] for name in names}
        raise StateError("etcd: the health counters kept changing under this round; try again")

    def forget_service(self, name: str) -> None:
        """Drop the service's record (``failover destroy``); its journal is kept."""
        self._commit(None, [], [delete(self.k("svc", name)), delete(self.k("gen", name))])

    def cutover(
        self,
        name: str,
        expected_generation: int,
        active: dict[str, Any],
        lease: Lease | None,
        generation: int | None = None,
    ) -> int:
        """As :meth:`SqliteStore.cutover`: refused unless the service is still at
        ``expected_generation`` and the lock is still ours."""
        new = generation if generation is not None else expected_generation + 1

        def change(raw: dict[str, Any] | None) -> tuple[Any, list[dict[str, Any]]]:
            current = int(raw["generation"]) if raw else 0
            done = (raw or {}).get("active") or {}
            if current == new and done.get("host_id") == active.get("host_id"):
                return None, []  # already done: a resumed run repeats this step
            if current != expected_generation or new <= current:
                raise LeaseLost(
                    f"{name} is at generation {current}, this run expected "
                    f"{expected_generation}: a newer move won; nothing written"
                )
            row = {
                "generation": new,
                "active": active,
                "active_since": now_iso(),
                "health_state": "up",
                "failures": 0,
                "successes": 0,
                "last_check": (raw or {}).get("last_check"),
                "latency": (raw or {}).get("latency"),
            }
            return row, [put(self.k("gen", name), new)]

        self._update(self.k("svc", name), change, lease)
        return new

    def generation_compare(self, service: str, generation: int) -> dict[str, Any]:
        """A transaction compare that holds while ``service`` is at ``generation``."""
        key = self.k("gen", service)
        if generation == 0:
            return created_at(key, 0)
        return {"key": b64(key), "target": "VALUE", "result": "EQUAL",
                "value": b64(json.dumps(generation))}  # fmt: skip

    # ----------------------------------------------------------------- journal

    def start_event(
        self,
        service: str,
        kind: str,
        reason: str,
        origin: dict[str, Any] | None,
        data: dict[str, Any],
        lease: Lease | None,
    ) -> int:
        self._schema()
        now = time.time()
        counter = self.k("counter", "event")
        for _ in range(_RETRIES):
            kv = self.gw.get(counter)
            event_id = (int(kv.json()) if kv else 0) + 1
            event = {
                "id": event_id,
                "service": service,
                "kind": kind,
                "status": "in_progress",
                "reason": redact(reason),
                "origin": origin,
                "target": None,
                "data": _redacted(data),
                "started_at": now_iso(now),
                "finished_at": None,
                "started": now,
                "finished": None,
                "steps": [],
            }
            ops = [
                put(counter, event_id),
                put(self._event_key(service, event_id), event),
                put(self.k("evid", f"{event_id:012d}"), service),
            ]
            if kind != "drill":
                ops.append(put(self.k("open", service, f"{event_id:012d}"), event_id))
            if self._commit(lease, [modified_at(counter, kv.mod_revision if kv else 0)], ops):
                self._services[event_id] = service
                return event_id
        raise StateError("etcd: the journal kept changing under this write; try again")

    def _event_key(self, service: str, event_id: int) -> str:
        return self.k("ev", service, f"{event_id:012d}")

    def _service_of(self, event_id: int) -> str:
        if event_id not in self._services:
            kv = self.gw.get(self.k("evid", f"{event_id:012d}"))
            if kv is None:
                raise StateError(f"no event {event_id} in the journal")
            self._services[event_id] = str(kv.json())
        return self._services[event_id]

    def _change_event(
        self,
        event_id: int,
        lease: Lease | None,
        change: Callable[[dict[str, Any]], None],
    ) -> None:
        service = self._service_of(event_id)

        def apply(raw: Any) -> tuple[Any, list[dict[str, Any]]]:
            if raw is None:
                raise StateError(f"no event {event_id} in the journal")
            was = raw["status"]
            change(raw)
            extra = []
            if raw["status"] != "in_progress":
                extra.append(delete(self.k("open", service, f"{event_id:012d}")))
                if was == "in_progress":
                    extra += self.outbox_ops(raw)  # its notice, in the same transaction
            return raw, extra

        self._update(self._event_key(service, event_id), apply, lease)

    def update_event(
        self,
        event_id: int,
        lease: Lease | None,
        *,
        data: dict[str, Any] | None = None,
        target: dict[str, Any] | None = None,
        status: str | None = None,
        reason: str | None = None,
    ) -> None:
        now = time.time()

        def change(raw: dict[str, Any]) -> None:
            if data is not None:
                raw["data"] = _redacted(data)
            if target is not None:
                raw["target"] = target
            if reason is not None:
                raw["reason"] = redact(reason)
            if status is not None:
                raw.update(status=status, finished_at=now_iso(now), finished=now)

        self._change_event(event_id, lease, change)

    def step(
        self,
        event_id: int,
        seq: int,
        name: str,
        status: str,
        detail: str | None,
        lease: Lease | None,
    ) -> None:
        """Journal a step's start (``in_progress``) or end, in one transaction."""
        now = time.time()

        def change(raw: dict[str, Any]) -> None:
            steps: list[dict[str, Any]] = raw["steps"]
            found = next((s for s in steps if s["name"] == name), None)
            if found is None:
                steps.append(
                    {
                        "seq": seq,
                        "name": name,
                        "status": status,
                        "detail": redact(detail or ""),
                        "started_at": now_iso(now),
                        "finished_at": None,
                        "started": now,
                        "finished": None,
                    }
                )
            elif status == "in_progress":
                found["status"] = status
                if detail:
                    found["detail"] = redact(detail)
            else:
                found.update(
                    status=status,
                    detail=redact(detail or ""),
                    finished_at=now_iso(now),
                    finished=now,
                )

        self._change_event(event_id, lease, change)

    def reset_steps(self, event_id: int, names: tuple[str, ...], lease: Lease | None) -> None:
        def change(raw: dict[str, Any]) -> None:
            for s in raw["steps"]:
                if s["name"] in names:
                    s["status"] = "pending"

        self._change_event(event_id, lease, change)

    def open_event(self, service: str) -> dict[str, Any] | None:
        marks = self.gw.range(self.k("open", service, ""), prefix=True, limit=1)
        return self.event(int(marks[0].json())) if marks else None

    def event(self, event_id: int) -> dict[str, Any] | None:
        try:
            service = self._service_of(event_id)
        except StateError:
            return None
        kv = self.gw.get(self._event_key(service, event_id))
        return _shown(kv.json()) if kv else None

    def _journal(self, service: str | None) -> list[dict[str, Any]]:
        prefix = self.k("ev", service, "") if service else self.k("ev", "")
        return [kv.json() for kv in self.gw.range(prefix, prefix=True)]

    def events(
        self, service: str | None = None, limit: int = 20, kinds: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        found = [e for e in self._journal(service) if not kinds or e["kind"] in kinds]
        found.sort(key=lambda e: int(e["id"]), reverse=True)
        return [_shown(e) for e in found[:limit]]

    def moves_since(self, service: str, since: float) -> int:
        return sum(
            1
            for e in self._journal(service)
            if e["kind"] == "failover"  # the circuit breaker counts failovers, not moves
            and e["status"] == "succeeded"
            and float(e["started"]) >= since
        )

    # ----------------------------------------------------------------- providers and hosts

    def set_provider_state(self, name: str, state: str, reason: str | None) -> None:
        value = {"state": state, "reason": redact(reason or "") or None, "updated_at": now_iso()}
        self._commit(None, [], [put(self.k("prov", name), value)])

    def provider_states(self) -> dict[str, dict[str, Any]]:
        return {
            kv.key.rsplit("/", 1)[1]: kv.json()
            for kv in self.gw.range(self.k("prov", ""), prefix=True)
        }

    def set_data_state(self, service: str, doc: dict[str, Any]) -> None:
        """As :meth:`SqliteStore.set_data_state` (unguarded; secrets redacted)."""
        self._commit(None, [], [put(self.k("data", service), redact_doc(doc))])

    def data_state(self, service: str) -> dict[str, Any] | None:
        kv = self.gw.get(self.k("data", service))
        return dict(kv.json()) if kv else None

    def set_host(
        self,
        provider: str,
        host_id: str,
        *,
        service: str,
        generation: int,
        role: str,
        address: str | None = None,
        note: str | None = None,
    ) -> None:
        """As :meth:`SqliteStore.set_host`: the first service and generation stay; an
        address once known is kept when a later write does not know it."""

        def change(raw: Any) -> tuple[Any, list[dict[str, Any]]]:
            row = raw or {
                "provider": provider,
                "host_id": host_id,
                "service": service,
                "generation": generation,
                "address": None,
            }
            row.update(role=str(role), note=redact(note or ""), updated_at=now_iso())
            if address is not None:
                row["address"] = address
            return row, []

        self._update(self.k("host", provider, host_id), change, None)

    def hosts(self, service: str | None = None, role: str | None = None) -> list[dict[str, Any]]:
        rows = [kv.json() for kv in self.gw.range(self.k("host", ""), prefix=True)]
        return [
            r
            for r in rows
            if (not service or r["service"] == service) and (not role or r["role"] == role)
        ]

    # ----------------------------------------------------------------- cluster

    def members(self) -> list[dict[str, Any]]:
        """etcd's members (``doctor`` warns below three)."""
        return self.gw.members()


def _redacted(data: dict[str, Any]) -> Any:
    return redact_doc(data)


def _shown(raw: dict[str, Any]) -> dict[str, Any]:
    """An event as :meth:`SqliteStore.event` shows it."""
    steps = sorted(raw.get("steps", []), key=lambda s: int(s["seq"]))
    return {
        "id": int(raw["id"]),
        "service": raw["service"],
        "kind": raw["kind"],
        "status": raw["status"],
        "reason": raw.get("reason"),
        "from": place(raw.get("origin")),
        "to": place(raw.get("target")),
        "started_at": raw["started_at"],
        "finished_at": raw.get("finished_at"),
        "duration_s": round(raw["finished"] - raw["started"], 3) if raw.get("finished") else None,
        "steps": [
            {
                "name": s["name"],
                "status": s["status"],
                "started_at": s["started_at"],
                "finished_at": s["finished_at"],
                "duration_s": round(s["finished"] - s["started"], 3)
                if s["finished"] and s["started"]
                else None,
                "detail": s["detail"],
            }
            for s in steps
        ],
        "data": raw.get("data") or {},
    }


def etcd_store(state: Any) -> EtcdStore:
    """The store ``state:`` (a :class:`failover.config.StateConfig`) describes."""
    for endpoint in state.endpoints:  # `user:password@` must not show in its messages
        for secret in url_secrets(endpoint):
            register_secret(secret)
    gateway = Gateway(
        state.endpoints,
        timeout=state.timeout,
        tls=TLS(state.ca_file, state.cert_file, state.key_file),
        username=state.username,
        password=state.password,
    )
    return EtcdStore(gateway, state.prefix)


__all__ = ["EtcdStore", "StoreUnreachable", "etcd_store"]
