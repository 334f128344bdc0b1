"""An ``azureblob`` store behind a private authority: Azurite over HTTPS with a CA made
by the test. With ``ca_file`` the watcher's store client verifies the endpoint against
it (as an ``s3`` store's does); without it the endpoint is refused, never trusted."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from failover.data.settings import AzureBlobStoreSettings
from failover.data.stores import open_store
from providers.base import ProviderError
from tests.test_pgbackrest_azure import azure_config
from tests.test_pgbackrest_azure import tls_azurite  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(300)


def settings(
    root: Path, url: str, ca: Path, container: str, *, verify: bool
) -> AzureBlobStoreSettings:
    """The pgBackRest test's Azurite store (its container made), with or without ca_file."""
    doc = azure_config(root, url, ca, container)["stores"][1] | {"retry_attempts": 1}
    return AzureBlobStoreSettings.model_validate(doc | ({"ca_file": str(ca)} if verify else {}))


def test_an_azure_store_behind_a_private_ca_is_verified_with_ca_file(
    tls_azurite: tuple[str, Path],  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Nothing in the environment may make the CA trusted behind the setting's back.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    url, ca = tls_azurite
    container = f"ca-{uuid.uuid4().hex[:8]}"
    store = open_store(settings(tmp_path, url, ca, container, verify=True))
    try:
        store.put("web/1/manifest.json", b"{}")
        assert store.list("web/") == ["web/1/manifest.json"]
        assert store.get("web/1/manifest.json") == b"{}"
    finally:
        store.close()
    unverified = open_store(settings(tmp_path, url, ca, f"{container}-2", verify=False))
    try:
        with pytest.raises(ProviderError) as caught:
            unverified.get("web/1/manifest.json")
    finally:
        unverified.close()
    assert "certificate" in str(caught.value).lower() or "ssl" in str(caught.value).lower()
