"""Data engines: how a service's data follows it (DESIGN "Data engines").

Every engine answers the same five things: configure the host (its part of the new
host's restore phase), take backups on schedule, check the stores each round, restore
onto a new host, and report the recovery point. ``commands`` (the default) is
:mod:`failover.data.plane`/:mod:`failover.data.recover` streaming ``data.backup`` into
the stores; ``pgbackrest`` is :mod:`failover.data.engines.pgconf` (the host's part) and
:mod:`failover.data.engines.pgbackrest` (the watcher's), reached from the same calls
(``take_backup``, ``data_round``, ``restore``, ``status``) by ``data.engine``.
"""
