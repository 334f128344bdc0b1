"""The etcd store's notification journal: one record per event key and target, as
:mod:`failover.state.deliveries` keeps it in SQLite. Mixed into
:class:`failover.state.etcd.EtcdStore`.

Keys: ``dlv/<key>/<target>`` (both base64url, since notice keys may hold any character).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from failover.redact import redact
from failover.redact import redact_doc
from failover.state.deliveries import claimer
from failover.state.deliveries import interrupted
from failover.state.deliveries import outbox_row
from failover.state.delivery_prune import prunable
from failover.state.gateway import KV
from failover.state.gateway import Gateway
from failover.state.gateway import delete
from failover.state.gateway import modified_at
from failover.state.gateway import put
from failover.state.rows import now_iso
from failover.state.sqlite import Lease

_BATCH = 50  # compares and deletes per transaction (etcd allows 128 operations)


def _part(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


class EtcdSide:
    gw: Gateway
    k: Callable[..., str]
    _update: Callable[..., Any]
    _commit: Callable[[Lease | None, list[dict[str, Any]], list[dict[str, Any]]], bool]
    outbox_kinds: tuple[str, ...] = ()  # set by open_store when `notify:` has targets

    def outbox_ops(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The writes that queue the notice of a run that ends (``event``, as journaled),
        to go in the transaction that ends it."""
        if event.get("kind") not in self.outbox_kinds:
            return []
        now = now_iso()
        raw = {
            **outbox_row(int(event["id"]), str(event["service"])),
            "created_at": now,
            "updated_at": now,
            "seq": time.time(),
        }
        return [put(self.k("dlv", _part(raw["key"]), _part("-")), raw)]

    def claim_delivery(
        self,
        key: str,
        target: str,
        *,
        event: str,
        service: str,
        body: dict[str, Any],
        incident: str | None,
        retry_rounds: int,
    ) -> dict[str, Any] | None:
        """As :meth:`SqliteDeliveries.claim_delivery`: a compare-and-set on the record,
        so two watchers never both claim one notice."""
        now = now_iso()
        claimed: list[dict[str, Any]] = []

        def change(raw: Any) -> tuple[Any, list[dict[str, Any]]]:
            claimed.clear()
            if raw is None:
                raw = {
                    "key": key,
                    "target": target,
                    "event": event,
                    "service": service,
                    "incident": incident,
                    "body": redact_doc(body),
                    "status": "sending",
                    "rounds": 1,
                    "detail": claimer(),
                    "created_at": now,
                    "updated_at": now,
                    "seq": time.time(),
                }
            elif raw["status"] == "failed" and int(raw["rounds"]) <= retry_rounds:
                raw.update(
                    status="sending",
                    rounds=int(raw["rounds"]) + 1,
                    detail=claimer(),
                    updated_at=now,
                )
            else:
                return None, []
            claimed.append(raw)
            return raw, []

        self._update(self.k("dlv", _part(key), _part(target)), change, None)
        return _shown(claimed[0]) if claimed else None

    def finish_delivery(self, key: str, target: str, status: str, detail: str) -> None:
        def change(raw: Any) -> tuple[Any, list[dict[str, Any]]]:
            if raw is None:
                return None, []
            raw.update(status=status, detail=redact(detail)[:2000], updated_at=now_iso())
            return raw, []

        self._update(self.k("dlv", _part(key), _part(target)), change, None)

    def requeue_delivery(self, key: str, target: str, sender: str, retry_rounds: int) -> bool:
        """As :meth:`SqliteDeliveries.requeue_delivery`, a compare-and-set."""
        done: list[bool] = []

        def change(raw: Any) -> tuple[Any, list[dict[str, Any]]]:
            done.clear()
            if raw is None or raw["status"] != "sending" or raw.get("detail") != sender:
                return None, []
            status = "failed" if int(raw["rounds"]) <= retry_rounds else "gave_up"
            raw.update(status=status, detail=interrupted(sender), updated_at=now_iso())
            done.append(True)
            return raw, []

        self._update(self.k("dlv", _part(key), _part(target)), change, None)
        return bool(done)

    def prune_deliveries(self, now: float | None = None) -> int:
        """As :meth:`SqliteDeliveries.prune_deliveries`. A batch is deleted only if none
        of its records changed since they were read (the next prune takes it again)."""
        rows = {(r["key"], r["target"]): (kv, r) for kv in self._dlv() for r in [kv.json()]}
        gone = [rows[pair][0] for pair in prunable([r for _, r in rows.values()], now)]
        done = 0
        for start in range(0, len(gone), _BATCH):
            batch = gone[start : start + _BATCH]
            compares = [modified_at(kv.key, kv.mod_revision) for kv in batch]
            ok, _, _ = self.gw.txn(compares, [delete(kv.key) for kv in batch])
            done += len(batch) if ok else 0
        return done

    def _dlv(self) -> list[KV]:
        return self.gw.range(self.k("dlv", ""), prefix=True)

    def deliveries(
        self,
        *,
        service: str | None = None,
        status: str | None = None,
        event: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        rows = [kv.json() for kv in self._dlv()]
        given = {"service": service, "status": status, "event": event}
        rows = [r for r in rows if all(v is None or r.get(f) == v for f, v in given.items())]
        rows.sort(key=lambda r: (r["created_at"], r.get("seq", 0)), reverse=True)
        return [_shown(r) for r in rows[:limit]]


def _shown(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != "seq"}
