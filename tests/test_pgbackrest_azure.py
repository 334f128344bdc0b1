"""Engine pgbackrest with an Azure repository: Azurite over HTTPS (``--cert``/``--key``,
a CA made by the test) beside a ``dir`` store. pgBackRest 2.45 takes Azurite's
path-style URLs (``repo-azure-uri-style=path``, rendered for any endpoint that is not
``*.blob.core.windows.net``) with the account's shared key; WAL reaches both stores and,
with the ``dir`` store gone, the failover restores from Azure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.conftest import need_binary
from tests.doubles.moto_server import free_port
from tests.doubles.storage import AZURITE_ACCOUNT
from tests.doubles.storage import AZURITE_KEY
from tests.doubles.storage import Emulator
from tests.doubles.storage import _stop
from tests.test_pgbackrest import deployed
from tests.test_pgbackrest import pg_config
from tests.test_pgbackrest import pg_root  # noqa: F401 - a fixture
from tests.test_pgbackrest import world  # noqa: F401 - a fixture
from tests.test_pgbackrest_s3 import make_certs
from tests.test_pgbackrest_s3 import second_store_takes_over

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def tls_azurite() -> Iterator[tuple[str, Path]]:
    """Azurite serving HTTPS with the test's certificate; its account URL and the CA file
    (readable by postgres)."""
    binary = need_binary("azurite-blob", str(ROOT / "node_modules" / ".bin"))
    base = Path(f"/tmp/failover-aztls-{os.urandom(4).hex()}")
    base.mkdir(mode=0o755)
    make_certs(base)
    (base / "ca.pem").chmod(0o644)
    port = free_port()
    azurite = Emulator(
        [
            binary,
            *("--blobHost", "127.0.0.1", "--blobPort", str(port)),
            *("--cert", str(base / "cert.pem"), "--key", str(base / "key.pem")),
            *("--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"),
            "--disableTelemetry",
        ],
        port,
        "azurite",
    )
    try:
        yield f"https://127.0.0.1:{port}/{AZURITE_ACCOUNT}", base / "ca.pem"
    finally:
        _stop(azurite.proc)
        shutil.rmtree(base, ignore_errors=True)


def azure_config(root: Path, url: str, ca: Path, container: str) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient

    credential = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
    client = BlobServiceClient(url, credential=credential, connection_verify=str(ca))
    client.create_container(container)
    conf = pg_config(root)
    conf["stores"][1] = {
        "name": "azure",
        "type": "azureblob",
        "container": container,
        "connection_string": (
            f"DefaultEndpointsProtocol=https;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={url};"
        ),
        "prefix": "pg",
    }
    # The host's key and CA, as pgBackRest reads them; the watcher's key comes from the
    # store's connection string, its CA from its environment (as the hosts').
    conf["services"]["db"]["run"]["env"] = {
        "PGBACKREST_REPO2_AZURE_KEY": AZURITE_KEY,
        "PGBACKREST_REPO2_STORAGE_CA_FILE": str(ca),
    }
    return conf


def test_wal_reaches_a_dir_and_an_azure_store_and_azure_restores_when_the_dir_is_gone(
    world: Any,  # noqa: F811 - the fixture imported above
    pg_root: Path,  # noqa: F811
    tls_azurite: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, ca = tls_azurite
    monkeypatch.setenv("PGBACKREST_REPO2_STORAGE_CA_FILE", str(ca))
    engine = deployed(world, pg_root, azure_config(pg_root, url, ca, "pg-dr-1"))
    second_store_takes_over(engine, pg_root, "azure")
