"""Journal, health counters and lock. SQLite is the default backend."""

from failover.state.sqlite import Lease, LeaseLost, ServiceRow, SqliteStore, StateError, now_iso

Store = SqliteStore

__all__ = ["Lease", "LeaseLost", "ServiceRow", "SqliteStore", "StateError", "Store", "now_iso"]
