"""RFC 2136 backend against a real BIND ``named`` (see tests/servers.py)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from providers.base import AccountBlocked
from providers.base import ConflictError
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import TransientError
from providers.base import dns_class
from providers.dns.rfc2136 import Rfc2136Dns
from providers.dns.rfc2136 import Rfc2136Settings
from providers.dns.rfc2136 import query_authoritative
from providers.dns.rfc2136 import split_server
from tests.servers import READONLY_KEY_NAME
from tests.servers import READONLY_KEY_SECRET
from tests.servers import bind_server
from tests.servers import free_port
from tests.servers import rfc2136_backend as make


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[tuple[str, int, str, str, str]]:
    with bind_server(tmp_path) as server:
        yield server


def server_of(bind: tuple[str, int, str, str, str]) -> str:
    return f"{bind[0]}:{bind[1]}"


def test_registry_finds_it() -> None:
    assert dns_class("rfc2136") is Rfc2136Dns


def test_replace_and_read_back(bind: tuple[str, int, str, str, str], tmp_path: Path) -> None:
    dns = make(bind, tmp_path)
    before = dns.get_record("www.example.test")
    assert before is not None and before.values == ["127.77.0.1"] and before.ttl == 60

    record = dns.set_record("www.example.test", "A", ["127.77.0.9"], 30, expect=["127.77.0.1"])
    assert record.values == ["127.77.0.9"] and record.ttl == 30
    # Straight from the server, not through any resolver.
    assert query_authoritative(server_of(bind), "www.example.test", "A", 1) == (["127.77.0.9"], 30)
    again = dns.get_record("www.example.test", "A")
    assert again is not None and again.to_dict() == {
        "name": "www.example.test",
        "type": "A",
        "values": ["127.77.0.9"],
        "ttl": 30,
    }


def test_multi_value_set_replaced_in_one_update(
    bind: tuple[str, int, str, str, str], tmp_path: Path
) -> None:
    dns = make(bind, tmp_path)
    # The prerequisite is on the whole set, in any order.
    record = dns.set_record(
        "api", "A", ["127.77.0.5", "127.77.0.3"], 45, expect=["127.77.0.2", "127.77.0.1"]
    )
    assert record.values == ["127.77.0.3", "127.77.0.5"]
    assert query_authoritative(server_of(bind), "api.example.test.", "A", 1) == (
        ["127.77.0.3", "127.77.0.5"],
        45,
    )


def test_create_remove_and_absent_prerequisite(
    bind: tuple[str, int, str, str, str], tmp_path: Path
) -> None:
    dns = make(bind, tmp_path)
    assert dns.get_record("new.example.test") is None
    created = dns.set_record("new.example.test", "A", ["127.77.0.4"], 30, expect=[])
    assert created.values == ["127.77.0.4"]
    with pytest.raises(ConflictError):  # expect "no record", but there is one now
        dns.set_record("new.example.test", "A", ["127.77.0.5"], 30, expect=[])
    removed = dns.set_record("new.example.test", "A", [], 30, expect=["127.77.0.4"])
    assert removed.values == []
    assert dns.get_record("new.example.test") is None
    assert query_authoritative(server_of(bind), "new.example.test", "A", 1) == ([], 0)


def test_stale_prerequisite_is_refused(
    bind: tuple[str, int, str, str, str], tmp_path: Path
) -> None:
    newer = make(bind, tmp_path)
    stale = make(bind, tmp_path)
    newer.set_record("www.example.test", "A", ["127.77.0.2"], 30, expect=["127.77.0.1"])
    # A watcher that still believes the service is on .1 must not move it to .3.
    with pytest.raises(ConflictError) as info:
        stale.set_record("www.example.test", "A", ["127.77.0.3"], 30, expect=["127.77.0.1"])
    assert "someone else changed the record" in str(info.value)
    assert info.value.code == "NXRRSET"
    assert query_authoritative(server_of(bind), "www.example.test", "A", 1)[0] == ["127.77.0.2"]


def test_retry_of_a_write_that_landed_is_not_a_conflict(
    bind: tuple[str, int, str, str, str], tmp_path: Path
) -> None:
    dns = make(bind, tmp_path)
    dns.set_record("www", "A", ["127.77.0.2"], 30, expect=["127.77.0.1"])
    # Same call again (as after a lost answer): the record already is what we want.
    record = dns.set_record("www", "A", ["127.77.0.2"], 30, expect=["127.77.0.1"])
    assert record.values == ["127.77.0.2"]


def test_wrong_key_is_rejected_clearly(
    bind: tuple[str, int, str, str, str], tmp_path: Path
) -> None:
    wrong_secret = base64.b64encode(os.urandom(32)).decode()
    bad = make(bind, tmp_path, key_secret=wrong_secret)
    with pytest.raises(AccountBlocked) as info:
        bad.set_record("www.example.test", "A", ["127.77.0.9"], 30)
    message = str(info.value)
    assert f"rejected by server {server_of(bind)} for zone example.test" in message
    assert info.value.code == "BADSIG"
    assert wrong_secret not in message and bind[3] not in message
    with pytest.raises(AccountBlocked):  # reads are signed too
        bad.get_record("www.example.test")
    report = bad.check()
    assert report.state == "blocked"
    assert [c.ok for c in report.checks] == [True, False]
    assert "rejected by server" in (report.reason or "")

    unknown = make(bind, tmp_path, key_name="nobody")
    with pytest.raises(AccountBlocked) as info:
        unknown.set_record("www.example.test", "A", ["127.77.0.9"], 30)
    assert "key 'nobody' rejected by server" in str(info.value)
    assert info.value.code == "BADKEY"
    # Nothing changed.
    assert query_authoritative(server_of(bind), "www.example.test", "A", 1)[0] == ["127.77.0.1"]


def test_key_without_rights_is_refused(
    bind: tuple[str, int, str, str, str], tmp_path: Path
) -> None:
    # The server knows this key (the signature verifies) but its policy grants it nothing.
    dns = make(bind, tmp_path, key_name=READONLY_KEY_NAME, key_secret=READONLY_KEY_SECRET)
    with pytest.raises(AccountBlocked) as info:
        dns.set_record("www.example.test", "A", ["127.77.0.9"], 30)
    assert info.value.code == "REFUSED"
    assert f"rejected by server {server_of(bind)} for zone example.test" in str(info.value)
    assert "update-policy" in str(info.value)


def test_name_outside_the_zone(bind: tuple[str, int, str, str, str], tmp_path: Path) -> None:
    dns = make(bind, tmp_path)
    with pytest.raises(ProviderError) as info:
        dns.set_record("www.elsewhere.test.", "A", ["127.77.0.9"], 30)
    assert info.value.code == "NOTZONE"
    with pytest.raises(ProviderError, match="not a valid A value"):
        dns.set_record("www", "A", ["not-an-address"], 30)


def test_check_reports_server_and_key(bind: tuple[str, int, str, str, str], tmp_path: Path) -> None:
    report = make(bind, tmp_path).check()
    assert report.state == "available", report
    assert report.checks[0].ok and "answers SOA for zone example.test" in report.checks[0].detail
    assert report.checks[1].name == "key accepted" and report.checks[1].ok
    # check() made no change (the no-op update's prerequisite fails on purpose).
    soa, _ = query_authoritative(server_of(bind), "example.test", "SOA", 1)
    assert soa[0].split()[2] == "1"


def test_query_authoritative_reports_values_and_ttl(
    bind: tuple[str, int, str, str, str], tmp_path: Path
) -> None:
    server = server_of(bind)
    assert query_authoritative(server, "api.example.test", "A", 1) == (
        ["127.77.0.1", "127.77.0.2"],
        60,
    )
    assert query_authoritative(server, "missing.example.test", "A", 1) == ([], 0)
    assert query_authoritative(server, "www.example.test", "AAAA", 1) == ([], 0)
    with pytest.raises(ProviderError) as info:  # not its zone
        query_authoritative(server, "www.other.test", "A", 1)
    assert info.value.code == "REFUSED"


def test_query_authoritative_timeout_is_transient() -> None:
    with pytest.raises(TransientError):
        query_authoritative(f"127.0.0.1:{free_port()}", "www.example.test", "A", 0.2)


def test_first_server_down_second_used(
    bind: tuple[str, int, str, str, str], tmp_path: Path
) -> None:
    down = f"127.0.0.1:{free_port()}"
    logged: list[str] = []
    settings = make(bind, tmp_path, server=[down, server_of(bind)]).cfg
    dns = Rfc2136Dns(settings, ProviderContext(state_dir=tmp_path, log=logged.append))
    record = dns.set_record("www.example.test", "A", ["127.77.0.7"], 30, expect=["127.77.0.1"])
    assert record.values == ["127.77.0.7"]
    assert query_authoritative(server_of(bind), "www.example.test", "A", 1)[0] == ["127.77.0.7"]
    assert any(down in line for line in logged)
    got = dns.get_record("www.example.test")
    assert got is not None and got.values == ["127.77.0.7"]
    report = dns.check()
    assert report.state == "available"
    assert [c.ok for c in report.checks] == [False, True, True]
    assert report.checks[0].level == "warning"


def test_no_server_answers_is_transient(tmp_path: Path) -> None:
    fake = ("127.0.0.1", free_port(), "k", base64.b64encode(b"x" * 32).decode(), "example.test")
    dns = make(fake, tmp_path, retry_attempts=1)
    with pytest.raises(TransientError) as info:
        dns.set_record("www", "A", ["127.77.0.1"], 30)
    assert "no DNS server answered" in str(info.value)
    assert dns.check().state == "unknown"


def test_settings_keep_the_secret_secret() -> None:
    secret = base64.b64encode(b"s" * 32).decode()
    settings = Rfc2136Settings.model_validate(
        {
            "type": "rfc2136",
            "zone": "example.test",
            "server": "ns1.example.test",
            "key_name": "k",
            "key_secret": secret,
            "vendor": " Hetzner ",
        }
    )
    assert settings.server == ["ns1.example.test"]
    assert secret not in repr(settings) and secret not in settings.model_dump_json()
    assert secret not in str(Rfc2136Settings.model_json_schema())
    provider = Rfc2136Dns(settings, ProviderContext(state_dir=Path(".")))
    assert provider.vendor == "hetzner"
    assert Rfc2136Dns.vendor == ""  # self-hosted unless the settings say who hosts it

    with pytest.raises(ValidationError) as info:
        Rfc2136Settings.model_validate(
            {
                "type": "rfc2136",
                "zone": "example.test",
                "server": ["127.0.0.1:99999"],
                "key_name": "k",
                "key_secret": "not base64!!",
            }
        )
    text = str(info.value.errors(include_input=False))
    assert "port must be 1-65535" in text and "not valid base64" in text
    assert "not base64!!" not in text


def test_split_server() -> None:
    assert split_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert split_server("ns1.example.test") == ("ns1.example.test", 53)
    assert split_server("[::1]:5353") == ("::1", 5353)
    assert split_server("::1") == ("::1", 53)
    with pytest.raises(ValueError):
        split_server("host:0")
