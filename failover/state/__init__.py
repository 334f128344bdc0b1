"""Journal, health counters and lock. SQLite is the default backend; etcd serves several
watchers (contract section 7). :class:`Store` is what both promise; :func:`open_store`
picks the one ``state.backend`` names."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

from failover.state.deliveries import RUN_KINDS
from failover.state.rows import RoundRecord
from failover.state.rows import ServiceRow
from failover.state.rows import counters_after
from failover.state.rows import now_iso
from failover.state.rows import row_after
from failover.state.sqlite import Lease
from failover.state.sqlite import LeaseLost
from failover.state.sqlite import SqliteStore
from failover.state.sqlite import StateError

if TYPE_CHECKING:
    from failover.config import Config


class Store(Protocol):
    """The state every backend keeps, and the compare-and-set duty of each write.

    "Guarded by ``lease``" means: the write happens only if the lock ``lease`` names is
    still held by that lease (same token), atomically with the write, else
    :class:`LeaseLost` and nothing is written. ``lease=None`` writes unguarded (drills,
    which never touch the live service). Reads may be a moment stale; writes never are."""

    def close(self) -> None: ...

    def acquire(self, name: str, ttl: float) -> Lease | dict[str, Any]:
        """Create the lock ``name`` only if nobody holds it (or its holder's process on
        this machine is gone); the lease with a token greater than every earlier
        holder's, or who holds it (``owner``, ``pid``, ``host``, ``expires_in``)."""
        ...

    def renew(self, lease: Lease) -> None:
        """Extend the lock by its ttl; :class:`LeaseLost` if it is no longer ours."""
        ...

    def release(self, lease: Lease) -> None:
        """Drop the lock if it is still ours (never another holder's)."""
        ...

    def service(self, name: str) -> ServiceRow: ...

    def services(self, names: list[str]) -> dict[str, ServiceRow]:
        """Several rows in one read."""
        ...

    def record_round(
        self,
        name: str,
        generation: int,
        ok: bool | None,
        latency: float | None,
        fall: int,
        rise: int,
        *,
        down_now: bool = False,
    ) -> ServiceRow:
        """One service's round; see :meth:`record_rounds`."""
        ...

    def record_rounds(self, records: list[RoundRecord]) -> dict[str, ServiceRow]:
        """Add a round to each service's counters (:func:`counters_after`) in one
        transaction, each only if the service is still at the generation the round
        probed (compared with the counters it read, atomically)."""
        ...

    def cutover(
        self,
        name: str,
        expected_generation: int,
        active: dict[str, Any],
        lease: Lease | None,
        generation: int | None = None,
    ) -> int:
        """Point the service at ``active``, guarded by ``lease`` and only if it is still
        at ``expected_generation`` (else :class:`LeaseLost`); repeating a cutover that
        is already done returns its generation."""
        ...

    def start_event(
        self,
        service: str,
        kind: str,
        reason: str,
        origin: dict[str, Any] | None,
        data: dict[str, Any],
        lease: Lease | None,
    ) -> int:
        """A new ``in_progress`` event, guarded by ``lease``; ids only grow."""
        ...

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
        """Change an event, guarded by ``lease``, without losing a concurrent change."""
        ...

    def step(
        self,
        event_id: int,
        seq: int,
        name: str,
        status: str,
        detail: str | None,
        lease: Lease | None,
    ) -> None:
        """Journal a step's start or end, guarded by ``lease``."""
        ...

    def reset_steps(self, event_id: int, names: tuple[str, ...], lease: Lease | None) -> None:
        """Mark steps pending again, guarded by ``lease``."""
        ...

    def open_event(self, service: str) -> dict[str, Any] | None:
        """The oldest ``in_progress`` event of ``service`` that is not a drill."""
        ...

    def event(self, event_id: int) -> dict[str, Any] | None: ...

    def events(
        self, service: str | None = None, limit: int = 20, kinds: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        """The journal, newest first."""
        ...

    def moves_since(self, service: str, since: float) -> int: ...

    def set_provider_state(self, name: str, state: str, reason: str | None) -> None: ...

    def provider_states(self) -> dict[str, dict[str, Any]]: ...

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
        """Remember a host the toolkit made; its first service and generation stay, a
        known address is never overwritten by an unknown one."""
        ...

    def hosts(
        self, service: str | None = None, role: str | None = None
    ) -> list[dict[str, Any]]: ...

    # The data plane's document per service (failover.data.plane): last backup, stores.
    def set_data_state(self, service: str, doc: dict[str, Any]) -> None:
        """Replace ``service``'s data document (unguarded: only the watcher that backs
        up writes it, and a lost write is redone by the next round)."""
        ...

    def data_state(self, service: str) -> dict[str, Any] | None: ...

    def forget_service(self, name: str) -> None:
        """Remove the service's record (generation, active host, counters); the journal
        and the hosts table are kept (``failover destroy``)."""
        ...

    # The notification journal (failover.delivery), one record per (event key, target).
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
        """Atomically claim sending ``key`` to ``target``: insert it as ``sending``
        (``rounds`` 1), or move a ``failed`` one with ``rounds <= retry_rounds`` back to
        ``sending`` (``rounds`` + 1); the record, or None (sent, in flight, given up)."""
        ...

    def finish_delivery(self, key: str, target: str, status: str, detail: str) -> None:
        """Set the record's ``status`` (sent | failed | gave_up | open | resolved)."""
        ...

    def requeue_delivery(self, key: str, target: str, sender: str, retry_rounds: int) -> bool:
        """A record ``sending`` by ``sender`` (its ``detail``, a process that ended):
        ``failed`` again, or ``gave_up`` past ``retry_rounds``; False if it moved on."""
        ...

    def prune_deliveries(self, now: float | None = None) -> int:
        """Drop the records finished long ago (failover.state.delivery_prune); how many."""
        ...

    # The kinds of run (failover, move) whose end queues an ``outbox`` record in the
    # transaction that journals it; empty without `notify:` targets (open_store).
    outbox_kinds: tuple[str, ...]

    def deliveries(
        self,
        *,
        service: str | None = None,
        status: str | None = None,
        event: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Records (key, target, event, service, incident, body as a dict, status,
        rounds, detail, created_at, updated_at), newest first."""
        ...


def open_store(config: Config) -> Store:
    """The store ``config.state`` names: the SQLite file in the state directory, or etcd."""
    store: Store
    if config.state.backend == "etcd":
        from failover.state.etcd import etcd_store

        store = etcd_store(config.state)
    else:
        assert config.state_dir is not None
        store = SqliteStore(config.state_dir)
    store.outbox_kinds = RUN_KINDS if config.notify else ()
    return store


__all__ = [
    "Lease",
    "LeaseLost",
    "RoundRecord",
    "ServiceRow",
    "SqliteStore",
    "StateError",
    "Store",
    "counters_after",
    "now_iso",
    "open_store",
    "row_after",
]
