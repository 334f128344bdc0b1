"""Real object-store emulators on 127.0.0.1, one of each per test session.

- Google Cloud Storage: PyPI's ``gcp-storage-emulator`` (works with google-cloud-storage's
  JSON API calls: simple/multipart uploads, media downloads, listing with prefixes).
- Azure Blob: Microsoft's Azurite (``npm install -g azurite``; ``.ci/run`` installs it),
  in-memory, with its well-known development account.
- S3: moto's server mode, shared with the AWS tests (:mod:`tests.doubles.moto_server`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import socket
import subprocess
import sys
import time

from tests.doubles.moto_server import free_port

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret: it is in Microsoft's documentation).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


class Emulator:
    def __init__(self, argv: list[str], port: int, what: str) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        atexit.register(_stop, self.proc)
        _wait_port(port, self.proc, what)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


_GCS: Emulator | None = None
_AZURITE: Emulator | None = None


def gcs_available() -> bool:
    return importlib.util.find_spec("gcp_storage_emulator") is not None


def shared_gcs() -> Emulator:
    global _GCS
    if _GCS is None:
        port = free_port()
        _GCS = Emulator(
            [
                sys.executable,
                "-m",
                "gcp_storage_emulator",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--in-memory",
            ],
            port,
            "gcp-storage-emulator",
        )
    return _GCS


def shared_azurite(binary: str) -> Emulator:
    global _AZURITE
    if _AZURITE is None:
        port = free_port()
        _AZURITE = Emulator(
            [
                binary,
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                "--disableTelemetry",  # it would look up an Azure host: tests reach 127/8 only
            ],
            port,
            "azurite",
        )
    return _AZURITE


def azurite_connection_string(emulator: Emulator) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={emulator.url}/{AZURITE_ACCOUNT};"
    )
