"""Several DNS changes to one zone in one request (issue 16): RFC 2136 against a real
BIND. The server itself counts: one UPDATE message raises the zone's serial by one, so a
backend that quietly sends one message per change fails. Route 53 and Cloud DNS:
tests/test_dns_batch_cloud.py.
"""

from __future__ import annotations

import base64
import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.base import AccountBlocked
from providers.base import ConflictError
from providers.base import ProviderError
from providers.base import Record
from providers.base import RecordChange
from providers.base import TransientError
from providers.dns.rfc2136 import Rfc2136Dns
from providers.dns.rfc2136 import query_authoritative
from tests.helpers import dns_moves as _moves
from tests.helpers import result_values as _values
from tests.servers import READONLY_KEY_NAME
from tests.servers import READONLY_KEY_SECRET
from tests.servers import bind_server
from tests.servers import free_port
from tests.servers import rfc2136_backend as _rfc2136

# --------------------------------------------------------------------------- rfc2136
# One BIND for the section; each test uses its own names, so the tests do not see each
# other's records. BIND raises the zone's SOA serial by one for each UPDATE message that
# changes the zone, so the serial counts the messages for real.

Bind = tuple[str, int, str, str, str]


@pytest.fixture(scope="module")
def rfc2136_bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bind]:
    with bind_server(tmp_path_factory.mktemp("rfc2136-batch")) as server:
        yield server


def _serial(bind: Bind) -> int:
    soa, _ = query_authoritative(f"{bind[0]}:{bind[1]}", bind[4], "SOA", 1)
    return int(soa[0].split()[2])


def _served(bind: Bind, name: str) -> list[str]:
    return query_authoritative(f"{bind[0]}:{bind[1]}", f"{name}.{bind[4]}", "A", 1)[0]


def test_rfc2136_ten_changes_are_one_update_message(rfc2136_bind: Bind, tmp_path: Path) -> None:
    dns = _rfc2136(rfc2136_bind, tmp_path)
    assert Rfc2136Dns.batches_changes
    before = _serial(rfc2136_bind)
    created = dns.replace_records(_moves("one", None, "127.78.0.", 10))
    assert _values(created) == [[f"127.78.0.{i}"] for i in range(10)]
    assert _serial(rfc2136_bind) == before + 1  # ten new sets, one message

    moved = dns.replace_records(
        [RecordChange(f"one{i}", "A", ["127.78.1.1"], 45, [f"127.78.0.{i}"]) for i in range(10)]
    )
    assert _values(moved) == [["127.78.1.1"]] * 10
    assert all(isinstance(r, Record) and r.ttl == 45 for r in moved)
    assert _serial(rfc2136_bind) == before + 2
    assert [_served(rfc2136_bind, f"one{i}") for i in range(10)] == [["127.78.1.1"]] * 10


def test_rfc2136_one_stale_change_conflicts_and_nine_land(
    rfc2136_bind: Bind, tmp_path: Path
) -> None:
    dns = _rfc2136(rfc2136_bind, tmp_path)
    dns.replace_records(_moves("stale", None, "127.78.2.", 10))
    # Another watcher moved stale3 first; and stale7 is to be created, but exists.
    _rfc2136(rfc2136_bind, tmp_path).set_record("stale3", "A", ["127.78.9.9"], 30)
    changes = [
        RecordChange(f"stale{i}", "A", [f"127.78.3.{i}"], 30, [f"127.78.2.{i}"]) for i in range(10)
    ]
    changes[7] = RecordChange("stale7", "A", ["127.78.3.7"], 30, [])
    before = _serial(rfc2136_bind)
    results = dns.replace_records(changes)
    conflict, exists = results[3], results[7]
    assert isinstance(conflict, ConflictError) and conflict.code == "NXRRSET"
    assert "someone else changed the record stale3.example.test A" in str(conflict)
    assert "127.78.9.9" in str(conflict)
    assert isinstance(exists, ConflictError) and exists.code == "YXRRSET"
    landed = [i for i in range(10) if i not in (3, 7)]
    assert [_values(results)[i] for i in landed] == [[f"127.78.3.{i}"] for i in landed]
    assert _served(rfc2136_bind, "stale3") == ["127.78.9.9"]  # the newer cutover stays
    assert _served(rfc2136_bind, "stale7") == ["127.78.2.7"]
    assert [_served(rfc2136_bind, f"stale{i}") for i in landed] == [
        [f"127.78.3.{i}"] for i in landed
    ]
    # The refused message changed nothing; the eight went again together.
    assert _serial(rfc2136_bind) == before + 1


def test_rfc2136_changes_already_applied_are_no_ops(rfc2136_bind: Bind, tmp_path: Path) -> None:
    dns = _rfc2136(rfc2136_bind, tmp_path)
    dns.replace_records(_moves("again", None, "127.78.4.", 10))
    moves = [
        RecordChange(f"again{i}", "A", [f"127.78.5.{i}"], 30, [f"127.78.4.{i}"]) for i in range(10)
    ]
    # Half of them landed before (a watcher stopped mid-round, or an answer was lost).
    for change in moves[:5]:
        dns.replace_record(change)
    before = _serial(rfc2136_bind)
    assert _values(dns.replace_records(moves)) == [[f"127.78.5.{i}"] for i in range(10)]
    assert _serial(rfc2136_bind) == before + 1  # the other five, in one message
    # All of them again, with and without the condition: nothing changes at all.
    assert _values(dns.replace_records(moves)) == [[f"127.78.5.{i}"] for i in range(10)]
    unconditional = [c._replace(expect=None) for c in moves]
    assert _values(dns.replace_records(unconditional)) == [[f"127.78.5.{i}"] for i in range(10)]
    assert _serial(rfc2136_bind) == before + 1


def test_rfc2136_refused_or_unreachable_is_every_change_result(
    rfc2136_bind: Bind, tmp_path: Path
) -> None:
    _rfc2136(rfc2136_bind, tmp_path).replace_records(_moves("refused", None, "127.78.6.", 4))
    moves = [RecordChange(f"refused{i}", "A", ["127.78.7.1"], 30, None) for i in range(4)]
    before = _serial(rfc2136_bind)

    readonly = _rfc2136(
        rfc2136_bind, tmp_path, key_name=READONLY_KEY_NAME, key_secret=READONLY_KEY_SECRET
    )
    results = readonly.replace_records(moves)
    assert all(isinstance(r, AccountBlocked) and r.code == "REFUSED" for r in results), results

    wrong = base64.b64encode(os.urandom(32)).decode()
    results = _rfc2136(rfc2136_bind, tmp_path, key_secret=wrong).replace_records(moves)
    assert all(isinstance(r, AccountBlocked) and r.code == "BADSIG" for r in results), results
    assert not any(wrong in str(r) for r in results)

    down = _rfc2136(rfc2136_bind, tmp_path, server=f"127.0.0.1:{free_port()}", retry_attempts=1)
    results = down.replace_records(moves)
    assert all(isinstance(r, TransientError) for r in results), results
    assert all("no DNS server answered" in str(r) for r in results)

    assert _serial(rfc2136_bind) == before
    assert [_served(rfc2136_bind, f"refused{i}") for i in range(4)] == [
        [f"127.78.6.{i}"] for i in range(4)
    ]


def test_rfc2136_a_bad_change_fails_alone(rfc2136_bind: Bind, tmp_path: Path) -> None:
    dns = _rfc2136(rfc2136_bind, tmp_path)
    before = _serial(rfc2136_bind)
    changes = _moves("alone", None, "127.78.8.", 4)
    changes[1] = RecordChange("alone1", "A", ["not-an-address"], 30, None)
    changes[2] = RecordChange("www.elsewhere.test.", "A", ["127.78.8.2"], 30, None)
    results = dns.replace_records(changes)
    assert isinstance(results[1], ProviderError) and "not a valid A value" in str(results[1])
    assert isinstance(results[2], ProviderError) and results[2].code == "NOTZONE"
    assert _values(results)[0::3] == [["127.78.8.0"], ["127.78.8.3"]]
    assert _served(rfc2136_bind, "alone0") == ["127.78.8.0"]
    assert _served(rfc2136_bind, "alone3") == ["127.78.8.3"]
    # The same set twice in one call: in order, the second sees the first.
    twice = dns.replace_records(
        [
            RecordChange("twice", "A", ["127.78.8.10"], 30, []),
            RecordChange("twice", "A", ["127.78.8.11"], 30, ["127.78.8.10"]),
        ]
    )
    assert _values(twice) == [["127.78.8.10"], ["127.78.8.11"]]
    assert _serial(rfc2136_bind) > before


class _DnsProxy(socketserver.ThreadingTCPServer):
    """DNS over TCP, passed on to BIND, except for the UPDATE messages a test picks
    (``plan``, in order): ``"hang"`` passes one on and withholds BIND's answer (the
    answer lost on the way back), ``"close"`` the same but closes the connection at
    once, ``"fake"`` keeps one from BIND and answers a signed NOERROR (a server that
    takes an update and applies it later), ``"nxrrset"`` keeps one from BIND and answers
    a signed NXRRSET (a set that moved and moved back). BIND cannot be made to do these,
    so this sits in front of it; every other message is BIND's own."""

    daemon_threads = True

    def __init__(self, bind: Bind) -> None:
        import dns.tsigkeyring

        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = (bind[0], bind[1])
        self.keyring = dns.tsigkeyring.from_text({bind[2]: bind[3]})
        self.plan: list[str] = []
        self.updates = 0
        self.lock = threading.Lock()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def next_update(self) -> str:
        with self.lock:
            self.updates += 1
            return self.plan.pop(0) if self.plan else ""


def _frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    return exactly(int.from_bytes(exactly(2), "big"))


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: _DnsProxy

    def handle(self) -> None:
        import dns.message
        import dns.opcode
        import dns.rcode

        try:
            wire = _frame(self.request)
        except EOFError:
            return
        message = dns.message.from_wire(wire, keyring=self.server.keyring)
        action = self.server.next_update() if message.opcode() == dns.opcode.UPDATE else ""
        if action in ("fake", "nxrrset"):
            response = dns.message.make_response(message)
            if action == "nxrrset":
                response.set_rcode(dns.rcode.NXRRSET)
            answer = response.to_wire()
        else:
            with socket.create_connection(self.server.upstream, timeout=5) as upstream:
                upstream.sendall(len(wire).to_bytes(2, "big") + wire)
                answer = _frame(upstream)
        if action == "hang":
            time.sleep(1.5)  # past the client's timeout; BIND has applied the update
        if action in ("hang", "close"):
            return
        self.request.sendall(len(answer).to_bytes(2, "big") + answer)


@pytest.fixture
def rfc2136_proxy(rfc2136_bind: Bind) -> Iterator[_DnsProxy]:
    proxy = _DnsProxy(rfc2136_bind)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def _through(proxy: _DnsProxy, bind: Bind, tmp_path: Path, **overrides: Any) -> Rfc2136Dns:
    settings: dict[str, Any] = {"server": proxy.server, "timeout": 0.5}
    settings.update(propagation_timeout=0.3, poll_interval=0.05, **overrides)
    return _rfc2136(bind, tmp_path, **settings)


@pytest.mark.parametrize("lost", ["hang", "close"])
def test_rfc2136_lost_answer_is_resent_and_found_done(
    rfc2136_bind: Bind, rfc2136_proxy: _DnsProxy, tmp_path: Path, lost: str
) -> None:
    _rfc2136(rfc2136_bind, tmp_path).replace_records(_moves(f"{lost}-", None, "127.78.10.", 5))
    dns = _through(rfc2136_proxy, rfc2136_bind, tmp_path)
    rfc2136_proxy.plan = [lost]
    before = _serial(rfc2136_bind)
    moves = [
        RecordChange(f"{lost}-{i}", "A", ["127.78.11.1"], 30, [f"127.78.10.{i}"]) for i in range(5)
    ]
    assert _values(dns.replace_records(moves)) == [["127.78.11.1"]] * 5
    # The first message landed; the second was refused on its (now stale) conditions,
    # and the sets read as already moved: done, not a conflict.
    assert rfc2136_proxy.updates == 2
    assert _serial(rfc2136_bind) == before + 1


def test_rfc2136_slow_server_is_retried_then_each_change_says_so(
    rfc2136_bind: Bind, rfc2136_proxy: _DnsProxy, tmp_path: Path
) -> None:
    _rfc2136(rfc2136_bind, tmp_path).replace_records(_moves("slow", None, "127.78.12.", 4))
    moves = [
        RecordChange(f"slow{i}", "A", ["127.78.13.1"], 30, [f"127.78.12.{i}"]) for i in range(4)
    ]
    before = _serial(rfc2136_bind)

    # Taken but not applied in time, once: the whole message is sent again and lands.
    rfc2136_proxy.plan = ["fake"]
    dns = _through(rfc2136_proxy, rfc2136_bind, tmp_path, retry_attempts=2)
    assert _values(dns.replace_records(moves[:2])) == [["127.78.13.1"]] * 2
    assert rfc2136_proxy.updates == 2 and _serial(rfc2136_bind) == before + 1

    # One stale condition, then the rest is taken but never applied, with no retry left:
    # each change has its own answer, nothing is raised.
    _rfc2136(rfc2136_bind, tmp_path).set_record("slow2", "A", ["127.78.9.9"], 30)
    rfc2136_proxy.plan = ["", "fake"]
    dns = _through(rfc2136_proxy, rfc2136_bind, tmp_path, retry_attempts=1)
    results = dns.replace_records(moves[2:])
    assert isinstance(results[0], ConflictError) and results[0].code == "NXRRSET"
    late = results[1]
    assert isinstance(late, TransientError) and late.code == "propagation"
    assert "accepted the update of slow3.example.test A but still answers" in str(late)
    assert _served(rfc2136_bind, "slow3") == ["127.78.12.3"]
    with pytest.raises(TransientError) as info:  # one change alone: raised, as before
        rfc2136_proxy.plan = ["fake"]
        dns.replace_record(moves[3])
    assert info.value.code == "propagation"


def test_rfc2136_more_than_max_batch_goes_in_several_messages(
    rfc2136_bind: Bind, tmp_path: Path
) -> None:
    dns = _rfc2136(rfc2136_bind, tmp_path)
    before = _serial(rfc2136_bind)
    results = dns.replace_records(_moves("big", None, "127.79.0.", Rfc2136Dns.max_batch + 50))
    assert all(isinstance(r, Record) for r in results) and len(results) == 150
    assert _serial(rfc2136_bind) == before + 2


def test_rfc2136_refused_again_then_each_change_alone(
    rfc2136_bind: Bind, rfc2136_proxy: _DnsProxy, tmp_path: Path
) -> None:
    _rfc2136(rfc2136_bind, tmp_path).replace_records(_moves("race", None, "127.78.14.", 3))
    moves = [
        RecordChange(f"race{i}", "A", ["127.78.15.1"], 30, [f"127.78.14.{i}"]) for i in range(3)
    ]
    dns = _through(rfc2136_proxy, rfc2136_bind, tmp_path)
    before = _serial(rfc2136_bind)
    # Refused twice although every condition reads true: someone is writing these sets;
    # each change then goes alone, so only a change that truly lost fails.
    rfc2136_proxy.plan = ["nxrrset", "nxrrset"]
    assert _values(dns.replace_records(moves)) == [["127.78.15.1"]] * 3
    assert rfc2136_proxy.updates == 2 + 3 and _serial(rfc2136_bind) == before + 3
    # One change alone refused twice the same way: its conflict, nothing sent a third time.
    rfc2136_proxy.plan = ["nxrrset", "nxrrset"]
    with pytest.raises(ConflictError):
        dns.replace_record(RecordChange("race0", "A", ["127.78.15.2"], 30, ["127.78.15.1"]))
    assert rfc2136_proxy.updates == 2 + 3 + 2
    assert _served(rfc2136_bind, "race0") == ["127.78.15.1"]
