"""The lab's fixture: the sites of one pytest session, removed whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.lab.net import unavailable
from tests.lab.sites import Sites


@pytest.fixture(scope="session")
def lab_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    reason = unavailable()
    need(reason is None, reason or "")
    sites = Sites(Path(tmp_path_factory.mktemp("lab")))
    try:
        sites.start()
        yield sites
    finally:
        sites.stop()
