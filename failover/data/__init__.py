"""Data follows the service: backups of each service's data in stores at several
companies, replicated by the watcher and restored into every new host.

:mod:`.settings` the config models, :mod:`.stores` the store interface and the ``dir``
store, :mod:`.cloud` S3, GCS and Azure Blob, :mod:`.backup` the stored format (chunks,
AES-256-GCM, manifest last), :mod:`.chunks` chunks cut by content, compressed and named
by a keyed hash, :mod:`.pool` the store's shared chunks (index, markers, collection),
:mod:`.manifest` the manifest and its proof (an HMAC from ``encryption_key``),
:mod:`.plane` what the engine does with them (backups, rounds, documents),
:mod:`.recover` the restore step and a move's final backup, :mod:`.report` ``failover
backup``'s document.
"""
