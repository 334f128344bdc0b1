"""``exec_on_host`` of the local provider: a command on a live host, in its folder and
environment, streaming both ways; a stream that fails ends the command."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from typing import cast

import pytest

from failover import config as cfg
from failover.engine import Engine
from providers.base import AccountBlocked
from providers.base import ProviderError
from providers.base import TransientError
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import write_config

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def host(project: Path) -> Iterator[tuple[Engine, str]]:
    conf = base_config(run={"env": {"GREETING": "hello"}})
    path = write_config(project, conf)
    engine = Engine(cfg.load(path, project / ".failover"))
    assert engine.run("web", "deploy", reason="test", to="alpha").ok
    active = engine.store.service("web").active
    assert active is not None
    yield engine, active["host_id"]
    engine.close()
    cleanup(path)


def test_streams_both_ways_in_the_hosts_folder(host: tuple[Engine, str]) -> None:
    engine, host_id = host
    provider = engine.provider("alpha")
    data = bytes(range(256)) * 8192  # 2 MB: more than one pipe buffer each way
    out = io.BytesIO()
    result = provider.exec_on_host(
        host_id,
        'cat > copy && printf "%s|%s|" "$GREETING" "$FAILOVER_HOST_ID" && cat copy'
        " && echo oops >&2",
        stdin=io.BytesIO(data),
        stdout=out,
    )
    assert result.status == 0 and result.stderr == "oops\n"
    assert out.getvalue() == f"hello|{host_id}|".encode() + data
    root = engine.config.state_dir / "local/alpha/hosts" / host_id / "root"  # type: ignore[operator]
    assert (root / "copy").read_bytes() == data


def test_exit_status_and_stderr_tail(host: tuple[Engine, str]) -> None:
    engine, host_id = host
    result = engine.provider("alpha").exec_on_host(
        host_id, "head -c 20000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 7"
    )
    assert result.status == 7
    assert result.stderr.endswith("xEND\n") and len(result.stderr) <= 8 * 1024


class Failing(io.RawIOBase):
    """A stdin that fails after the first block, as a corrupt backup does."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self, n: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise ProviderError("chunk 1 does not match its checksum", provider="offsite")
        return b"first block\n"


def test_a_failing_stdin_kills_the_command_and_is_raised(host: tuple[Engine, str]) -> None:
    engine, host_id = host
    root = engine.config.state_dir / "local/alpha/hosts" / host_id / "root"  # type: ignore[operator]
    with pytest.raises(ProviderError, match="chunk 1 does not match"):
        engine.provider("alpha").exec_on_host(
            host_id, "cat > got; touch finished", stdin=cast(BinaryIO, Failing())
        )
    assert not (root / "finished").exists()  # killed before it could finish


def test_a_failing_stdout_kills_the_command(host: tuple[Engine, str]) -> None:
    engine, host_id = host

    class Full(io.RawIOBase):
        def write(self, b: object) -> int:
            raise ProviderError("no store took the backup", provider="offsite")

    with pytest.raises(ProviderError, match="no store took the backup"):
        engine.provider("alpha").exec_on_host(
            host_id, "yes", stdout=cast(BinaryIO, Full())
        )  # `yes` never ends by itself: only the kill ends it


def test_timeout_and_refusals(host: tuple[Engine, str], project: Path) -> None:
    engine, host_id = host
    provider = engine.provider("alpha")
    with pytest.raises(TransientError, match=r"did not finish within 0\.3s"):
        provider.exec_on_host(host_id, "sleep 30", timeout=0.3)
    (project / ".failover/local/alpha/SUSPENDED").write_text("closed")
    with pytest.raises(AccountBlocked):
        provider.exec_on_host(host_id, "true")
    (project / ".failover/local/alpha/SUSPENDED").unlink()
    provider.stop_host(host_id)
    with pytest.raises(ProviderError, match="is not running"):
        provider.exec_on_host(host_id, "true")
