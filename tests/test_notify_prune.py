"""The notification journal is pruned: a watcher or a cron ``check`` every minute must
not grow it for ever. Finished rows go after KEEP_DAYS or past the newest
KEEP_PER_TARGET of their target; a row still in flight and the rows of an open
incident stay. Both backends (SQLite and a real etcd cluster), through the Notifier's
own round (``retry``), as a watcher runs it."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from failover import config as cfg
from failover.engine import Engine
from failover.state import delivery_prune
from failover.state.etcd import EtcdStore
from failover.state.etcd_side import _part
from failover.state.gateway import put
from failover.state.rows import now_iso
from tests.helpers import base_config
from tests.helpers import write_config
from tests.receivers import http_receiver

OLD = "2020-01-01T00:00:00Z"


def _set(store: Any, key: str, target: str, **fields: Any) -> None:
    """Rewrite a journal row in place: its age is what the prune looks at, and no
    clock can be turned back 40 days under a running test."""
    if isinstance(store, EtcdStore):
        name = store.k("dlv", _part(key), _part(target))
        kv = store.gw.get(name)
        assert kv is not None
        store.gw.txn([], [put(name, {**kv.json(), **fields})])
        return
    sets = ", ".join(f"{f}=?" for f in fields)
    with store.tx() as db:
        db.execute(
            f"UPDATE deliveries SET {sets} WHERE key=? AND target=?",
            (*fields.values(), key, target),
        )


def _row(store: Any, key: str, target: str, status: str, **more: Any) -> None:
    base = {"event": "dns_drift", "service": "web", "body": {}, "incident": None}
    store.claim_delivery(key, target, **{**base, **more}, retry_rounds=3)
    store.finish_delivery(key, target, status, "")


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
def test_finished_deliveries_are_pruned_and_live_ones_kept(
    project: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setattr(delivery_prune, "KEEP_PER_TARGET", 3)
    with http_receiver() as hook:
        data = base_config()
        data["notify"] = [{"type": "webhook", "url": hook.url, "name": "hook"}]
        if backend == "etcd":
            from tests.etcd_server import etcd_state

            data["state"] = etcd_state(request.getfixturevalue("etcd_cluster"))
        engine = Engine(cfg.load(write_config(project, data)))
        store = engine.store
        try:
            for key, status in [("old-sent", "sent"), ("old-gave-up", "gave_up")]:
                _row(store, key, "hook", status)
                _set(store, key, "hook", updated_at=OLD)
            # Claimed 40 days ago by this very process, which is alive: in flight.
            _row(store, "old-sending", "hook", "sending")
            sender = f"sending: {socket.gethostname()}:{os.getpid()}"
            _set(store, "old-sending", "hook", updated_at=OLD, detail=sender)
            # An outage still open after 40 days: its sent page keeps it from repeating.
            _row(store, "inc-1", "-", "open", event="incident", incident="inc-1")
            _row(store, "page", "hook", "sent", event="quorum_lost", incident="inc-1")
            _set(store, "page", "hook", updated_at=OLD)
            for n in range(5):  # fresh, but more than the target keeps
                _row(store, f"fresh-{n}", "hook", "sent")
                _set(store, f"fresh-{n}", "hook", updated_at=now_iso(1_900_000_000 + n))
            engine.notifier.retry()
            assert engine.notifier.drain(60)
            engine.notifier.retry()  # within the hour: not pruned again
            assert engine.notifier.drain(60)
            kept = {(r["key"], r["status"]) for r in store.deliveries()}
        finally:
            engine.close()
    assert kept == {
        ("old-sending", "sending"),
        ("inc-1", "open"),
        ("page", "sent"),
        ("fresh-2", "sent"),
        ("fresh-3", "sent"),
        ("fresh-4", "sent"),
    }
    assert hook.requests == []


def test_a_resolved_incident_and_its_rows_go_once_old() -> None:
    rows = [
        {"key": "i", "target": "-", "event": "incident", "status": "resolved",
         "incident": "i", "updated_at": OLD},
        {"key": "p", "target": "hook", "event": "quorum_lost", "status": "sent",
         "incident": "i", "updated_at": OLD},
        {"key": "q", "target": "-", "event": "outbox", "status": "queued",
         "incident": None, "updated_at": OLD},
        {"key": "f", "target": "hook", "event": "dns_drift", "status": "failed",
         "incident": None, "updated_at": OLD},
    ]  # fmt: skip
    assert sorted(delivery_prune.prunable(rows)) == [("i", "-"), ("p", "hook")]
