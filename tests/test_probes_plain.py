"""The selector path of plain http and tcp probes (failover.probes.plain, issue 28)
says what the asyncio path says, case by case: the same servers probed both ways."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from failover.config import HealthConfig
from failover.config import HttpProbe
from failover.config import TcpProbe
from failover.probes import ProbeResult
from failover.probes import Target
from failover.probes import plain
from failover.probes import probe_round
from failover.probes import probe_target
from tests.test_probes import server  # noqa: F401  (the fixture)


@pytest.fixture
def garbage() -> Iterator[int]:
    """A server that answers anything but HTTP, then closes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        stop = threading.Event()

        def serve() -> None:
            sock.settimeout(0.1)
            while not stop.is_set():
                try:
                    conn = sock.accept()[0]
                except OSError:
                    continue
                with conn:
                    conn.recv(4096)
                    conn.sendall(b"SSH-2.0-OpenSSH\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield sock.getsockname()[1]
        stop.set()
        thread.join()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def target(port: int, address: str = "127.0.0.1", **health: object) -> Target:
    hc = HealthConfig(interval=5, timeout=0.5, **health)  # type: ignore[arg-type]
    return Target("web", address, port, "www.example.test", hc)


def both_ways(targets: list[Target]) -> tuple[list[ProbeResult], list[ProbeResult]]:
    async def old() -> list[ProbeResult]:
        rows = await asyncio.gather(*(probe_target(t) for t in targets))
        return [r for row in rows for r in row]

    rows = asyncio.run(probe_round(targets, in_flight=4, budget=5))
    return asyncio.run(old()), [r for row in rows for r in row]


def test_the_selector_path_says_what_the_asyncio_path_says(
    server: tuple[str, int],  # noqa: F811
    garbage: int,
) -> None:
    _, port = server
    cases = [
        target(port, http=HttpProbe(path="/", body="from the")),
        target(port, http=HttpProbe(path="/down")),
        target(port, http=HttpProbe(path="/down", expect_status=[503])),
        target(port, http=HttpProbe(body="^nope$")),
        target(port, http=HttpProbe(path="/chunked", body="hello world")),
        target(port, http=HttpProbe(path="/hang")),
        target(closed_port(), http=HttpProbe()),
        target(closed_port(), tcp=TcpProbe()),
        target(port, tcp=TcpProbe()),
        target(garbage, http=HttpProbe()),
    ]
    assert all(plain.handles(k, t) for t in cases for k in ("http", "tcp") if getattr(t.health, k))
    old, new = both_ways(cases)
    assert [(r.kind, r.ok, r.error, r.ran) for r in new] == [
        (r.kind, r.ok, r.error, r.ran) for r in old
    ]
    assert [r.ok for r in new] == [True, False, True, False, True, False, False, False, True, False]
    assert "not an HTTP response: b'SSH-2.0" in (new[-1].error or "")
    assert all(r.latency_s is not None for r in new)


def test_outside_the_allowed_networks_and_past_the_budget_nothing_is_sent(
    server: tuple[str, int],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, port = server
    monkeypatch.setenv("FAILOVER_PROBE_NETWORKS", "127.0.0.0/8")
    refused = target(80, address="192.0.2.1", tcp=TcpProbe())
    ((res,),) = asyncio.run(probe_round([refused]))
    assert not res.ran and "outside FAILOVER_PROBE_NETWORKS" in (res.error or "")
    late = [target(port, http=HttpProbe()) for _ in range(3)]
    rows = asyncio.run(probe_round(late, budget=0))
    assert [r.ran for row in rows for r in row] == [False] * 3
    assert all("budget (0s) ran out" in (r.error or "") for row in rows for r in row)


def test_names_https_and_dns_stay_on_the_event_loop() -> None:
    assert not plain.handles("http", target(80, address="localhost", http=HttpProbe()))
    assert not plain.handles("http", target(443, http=HttpProbe(scheme="https")))
    assert plain.handles("tcp", target(80, address="::1", tcp=TcpProbe()))


def test_a_mixed_round_keeps_the_bound(server: tuple[str, int]) -> None:  # noqa: F811
    """Plain and asyncio probes side by side share ``in_flight``: every probe comes back,
    each side at least one at a time."""
    _, port = server
    mixed = [target(port, http=HttpProbe(), tcp=TcpProbe()) for _ in range(5)]
    mixed += [target(port, address="localhost", http=HttpProbe()) for _ in range(5)]
    for width in (1, 2, 7):
        rows = asyncio.run(probe_round(mixed, in_flight=width, budget=30))
        assert [[r.ok for r in row] for row in rows] == [[True, True]] * 5 + [[True]] * 5
