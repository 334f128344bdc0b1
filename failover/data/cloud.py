"""The object-store kinds of :mod:`failover.data.stores`: S3 (and every S3-compatible
store), Google Cloud Storage and Azure Blob, each through its official SDK and the SDK's
own credential chain. The SDKs are imported in the constructors, so only a config that
names such a store pays for them; errors go through the providers' mappings, so a store
and a provider of the same company speak the same words."""

from __future__ import annotations

from typing import Any

from failover.data.settings import AzureBlobStoreSettings
from failover.data.settings import GcsStoreSettings
from failover.data.settings import S3StoreSettings
from failover.data.settings import StoreBase
from failover.data.stores import Store
from providers.base import NotFound
from providers.base import ProviderError

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound", "BlobNotFound"})
_FRESH = "max-age=30"  # a status page read during an outage must not be cached for long


def _key(prefix: str, key: str) -> str:
    return f"{prefix.strip('/')}/{key}" if prefix.strip("/") else key


class S3Store(Store):
    type = "s3"

    def __init__(self, settings: StoreBase) -> None:
        super().__init__(settings)
        assert isinstance(settings, S3StoreSettings)
        from providers._aws import client_config
        from providers._aws import make_session

        self.s = settings
        session = make_session(None, settings.region)
        self.client = session.client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region or "us-east-1",
            config=client_config(settings.timeout),
            verify=settings.ca_file,
        )

    def _call(self, fn: Any, key: str = "") -> Any:
        from providers._aws import map_error

        try:
            return fn()
        except ProviderError:
            raise
        except Exception as exc:
            error = map_error(exc, self.name)
            if error.code in _NOT_FOUND:
                raise NotFound(f"no object {key}", provider=self.name, code=error.code) from None
            raise error from None

    def _put(self, key: str, data: bytes) -> None:
        full = _key(self.s.prefix, key)
        self._call(lambda: self.client.put_object(Bucket=self.s.bucket, Key=full, Body=data), key)

    def _put_object(self, key: str, data: bytes, content_type: str) -> None:
        put = self.client.put_object
        args = {"Bucket": self.s.bucket, "Key": _key(self.s.prefix, key), "Body": data}
        self._call(lambda: put(**args, ContentType=content_type, CacheControl=_FRESH), key)

    def _get(self, key: str) -> bytes:
        full = _key(self.s.prefix, key)
        answer = self._call(lambda: self.client.get_object(Bucket=self.s.bucket, Key=full), key)
        body: bytes = self._call(lambda: answer["Body"].read(), key)
        return body

    def _list(self, prefix: str) -> list[str]:
        base = _key(self.s.prefix, "")
        keys: list[str] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.s.bucket, "Prefix": base + prefix}
            if token:
                args["ContinuationToken"] = token
            page = self._call(lambda args=args: self.client.list_objects_v2(**args))
            keys.extend(item["Key"][len(base) :] for item in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not token:
                return keys

    def _delete(self, key: str) -> None:
        full = _key(self.s.prefix, key)
        self._call(lambda: self.client.delete_object(Bucket=self.s.bucket, Key=full), key)

    def close(self) -> None:
        self.client.close()


class GcsStore(Store):
    type = "gcs"

    def __init__(self, settings: StoreBase) -> None:
        super().__init__(settings)
        assert isinstance(settings, GcsStoreSettings)
        from google.cloud import storage

        from providers._gcp import load_credentials

        self.s = settings
        endpoint = settings.endpoint.rstrip("/") if settings.endpoint else None
        credentials = load_credentials(None, endpoint, settings.name)
        options = {"api_endpoint": endpoint} if endpoint else None
        self.client = storage.Client(
            project=settings.project or "failover",
            credentials=credentials,
            client_options=options,
        )
        self.bucket = self.client.bucket(settings.bucket)

    def _call(self, fn: Any, key: str = "") -> Any:
        from google.api_core import exceptions as core

        from providers._gcp import map_error

        try:
            return fn()
        except ProviderError:
            raise
        except core.NotFound:
            raise NotFound(f"no object {key}", provider=self.name, code="404") from None
        except Exception as exc:
            raise map_error(exc, provider=self.name, what=key) from None

    def _put(self, key: str, data: bytes) -> None:
        blob = self.bucket.blob(_key(self.s.prefix, key))
        self._call(
            lambda: blob.upload_from_string(
                data, content_type="application/octet-stream", timeout=self.s.timeout, retry=None
            ),
            key,
        )

    def _put_object(self, key: str, data: bytes, content_type: str) -> None:
        blob = self.bucket.blob(_key(self.s.prefix, key))
        blob.cache_control = _FRESH
        up = blob.upload_from_string
        self._call(
            lambda: up(data, content_type=content_type, timeout=self.s.timeout, retry=None), key
        )

    def _get(self, key: str) -> bytes:
        blob = self.bucket.blob(_key(self.s.prefix, key))
        data: bytes = self._call(
            lambda: blob.download_as_bytes(timeout=self.s.timeout, retry=None), key
        )
        return data

    def _list(self, prefix: str) -> list[str]:
        base = _key(self.s.prefix, "")

        def names() -> list[str]:
            blobs = self.client.list_blobs(
                self.bucket, prefix=base + prefix, timeout=self.s.timeout, retry=None
            )
            return [b.name[len(base) :] for b in blobs]

        result: list[str] = self._call(names)
        return result

    def _delete(self, key: str) -> None:
        blob = self.bucket.blob(_key(self.s.prefix, key))
        self._call(lambda: blob.delete(timeout=self.s.timeout, retry=None), key)

    def close(self) -> None:
        self.client.close()


class AzureBlobStore(Store):
    type = "azureblob"

    def __init__(self, settings: StoreBase) -> None:
        super().__init__(settings)
        assert isinstance(settings, AzureBlobStoreSettings)
        from azure.storage.blob import BlobServiceClient

        self.s = settings
        # The SDK's own retries off: ours are bounded by retry_attempts/retry_max_time.
        kwargs: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": settings.timeout,
            "read_timeout": settings.timeout,
        }
        if settings.ca_file:
            kwargs["connection_verify"] = settings.ca_file
        if settings.connection_string:
            service = BlobServiceClient.from_connection_string(settings.connection_string, **kwargs)
        else:
            from azure.identity import DefaultAzureCredential

            url = settings.endpoint or settings.account_url
            service = BlobServiceClient(url, credential=DefaultAzureCredential(), **kwargs)
        self.service = service
        self.container = service.get_container_client(settings.container)

    def _call(self, fn: Any, key: str = "") -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        from providers._azure import map_error

        try:
            return fn()
        except ProviderError:
            raise
        except ResourceNotFoundError as exc:
            code = getattr(exc, "error_code", None) or "BlobNotFound"
            if code == "ContainerNotFound":
                raise ProviderError(
                    f"container {self.s.container} does not exist",
                    provider=self.name,
                    code=code,
                    hint="create it (az storage container create) or fix `container`",
                ) from None
            raise NotFound(f"no object {key}", provider=self.name, code=code) from None
        except Exception as exc:
            raise map_error(exc, provider=self.name, action=key or "list") from None

    def _put(self, key: str, data: bytes) -> None:
        name = _key(self.s.prefix, key)
        self._call(lambda: self.container.upload_blob(name, data, overwrite=True), key)

    def _put_object(self, key: str, data: bytes, content_type: str) -> None:
        from azure.storage.blob import ContentSettings

        typed = ContentSettings(content_type=content_type, cache_control=_FRESH)
        name = _key(self.s.prefix, key)
        up = self.container.upload_blob
        self._call(lambda: up(name, data, overwrite=True, content_settings=typed), key)

    def _get(self, key: str) -> bytes:
        name = _key(self.s.prefix, key)
        data: bytes = self._call(lambda: self.container.download_blob(name).readall(), key)
        return data

    def _list(self, prefix: str) -> list[str]:
        base = _key(self.s.prefix, "")

        def names() -> list[str]:
            return [
                b.name[len(base) :]
                for b in self.container.list_blobs(name_starts_with=base + prefix)
            ]

        result: list[str] = self._call(names)
        return result

    def _delete(self, key: str) -> None:
        name = _key(self.s.prefix, key)
        self._call(lambda: self.container.delete_blob(name), key)

    def close(self) -> None:
        self.service.close()
