"""Where backups live: one small interface, four kinds of place.

A store holds objects under keys (``web/20261201T190636Z-1a2b/chunk-00000003``). A
backup is many bounded chunks and one manifest, so no call ever holds more than one
chunk in memory and every store needs only plain put/get/list/delete, which every
object store and emulator implements the same way. Errors are the providers' vocabulary
(``NotFound``, ``TransientError``, ``AccountBlocked``, ``ProviderError``) with the
store's name as ``provider``, so the engine's retries and messages apply unchanged.
"""

from __future__ import annotations

import builtins
import contextlib
import os
from abc import ABC
from abc import abstractmethod
from pathlib import Path
from typing import Any
from typing import ClassVar

from failover.data.settings import DirStoreSettings
from failover.data.settings import StoreBase
from failover.data.settings import store_vendor
from providers.base import NotFound
from providers.base import ProviderError
from providers.base import TransientError
from providers.retry import call_with_retries
from providers.util import private_dir
from providers.util import write_private


class Store(ABC):
    """One configured store. Subclasses fill in the four ``_`` methods; the public ones
    add the bounded retries every store shares."""

    type: ClassVar[str] = ""

    def __init__(self, settings: StoreBase) -> None:
        self.settings = settings
        self.name = settings.name
        self.vendor = store_vendor(settings)

    def _retry(self, fn: Any) -> Any:
        return call_with_retries(
            fn,
            attempts=self.settings.retry_attempts,
            max_time=self.settings.retry_max_time,
        )

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        self._retry(lambda: self._put(key, data))

    def put_object(self, key: str, data: bytes, content_type: str) -> None:
        """``put`` of a file a web server serves as it is (the status page): typed, public."""
        self._retry(lambda: self._put_object(key, data, content_type))

    def _put_object(self, key: str, data: bytes, content_type: str) -> None:
        self._put(key, data)

    def get(self, key: str) -> bytes:
        """The object at ``key``; ``NotFound`` when there is none."""
        result: bytes = self._retry(lambda: self._get(key))
        return result

    def list(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, sorted."""
        result: list[str] = self._retry(lambda: self._list(prefix))
        return sorted(result)

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is fine."""
        with contextlib.suppress(NotFound):
            self._retry(lambda: self._delete(key))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""

    @abstractmethod
    def _put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> bytes: ...

    @abstractmethod
    def _list(self, prefix: str) -> builtins.list[str]: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    def error(
        self, message: str, kind: builtins.type[ProviderError] = ProviderError
    ) -> ProviderError:
        return kind(message, provider=self.name)


class DirStore(Store):
    """A directory: a disk, an NFS mount, a machine you own (mounted). Every object is
    written to a temporary file and renamed, so a reader never sees half of one."""

    type = "dir"

    def __init__(self, settings: StoreBase, base: Path | None = None) -> None:
        super().__init__(settings)
        assert isinstance(settings, DirStoreSettings)
        root = Path(settings.path).expanduser()
        # Relative to the config file's folder, as every path in it: cron runs elsewhere.
        self.root = (base / root) if base is not None and not root.is_absolute() else root

    def _root_missing(self) -> ProviderError | None:
        if self.root.is_dir():
            return None
        if self.root.exists():
            return self.error(f"{self.root} is not a directory")
        # A mount that is not there is a failing store, not an empty one; and never
        # made here: an unmounted share would silently fill the local disk.
        return self.error(f"{self.root} does not exist (not mounted?)", TransientError)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise self.error(f"{key!r} is not a valid object key")
        return self.root.joinpath(*parts)

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if (missing := self._root_missing()) is not None:
            raise missing
        try:
            # A backup is the service's data: readable by the owner only, whatever the umask.
            private_dir(path.parent)
            write_private(path, data, durable=True)
        except OSError as exc:
            raise self.error(f"cannot write {path}: {exc.strerror or exc}") from None

    def _put_object(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.tmp")
        try:  # readable by the web server that serves it, renamed into place whole
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.chmod(0o644)
            tmp.replace(path)
        except OSError as exc:
            raise self.error(f"cannot write {path}: {exc.strerror or exc}") from None

    def _get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise self.error(f"no object {key}", NotFound) from None
        except OSError as exc:
            raise self.error(f"cannot read {path}: {exc.strerror or exc}") from None

    def _list(self, prefix: str) -> list[str]:
        if (missing := self._root_missing()) is not None:
            raise missing
        out: list[str] = []
        try:
            for dirpath, _dirs, files in os.walk(self.root):
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for name in files:
                    if name.startswith("."):
                        continue
                    key = name if rel == "." else f"{rel}/{name}"
                    if key.startswith(prefix):
                        out.append(key)
        except OSError as exc:
            raise self.error(f"cannot list {self.root}: {exc.strerror or exc}") from None
        return out

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self.error(f"cannot delete {path}: {exc.strerror or exc}") from None
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty: the backup's folder goes with its last file


def open_store(settings: StoreBase, base: Path | None = None) -> Store:
    """The store ``settings`` describe (a relative ``dir`` path is taken from ``base``,
    the config file's folder). The cloud SDK is imported only here, when used."""
    kind = getattr(settings, "type", "")
    if kind == "dir":
        return DirStore(settings, base)
    if kind == "s3":
        from failover.data.cloud import S3Store

        return S3Store(settings)
    if kind == "gcs":
        from failover.data.cloud import GcsStore

        return GcsStore(settings)
    if kind == "azureblob":
        from failover.data.cloud import AzureBlobStore

        return AzureBlobStore(settings)
    raise ProviderError(f"unknown store type {kind!r}", provider=settings.name)
