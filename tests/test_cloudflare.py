"""Cloudflare backend through the real SDK against tests/doubles/cloudflare.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cloudflare")

from providers.base import AccountBlocked
from providers.base import ConflictError
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import TransientError
from providers.base import dns_class
from providers.dns.cloudflare import CloudflareDns
from providers.dns.cloudflare import CloudflareSettings
from tests.conftest import ROOT
from tests.doubles.cloudflare import CloudflareDouble

TOKEN = "cf-test-token-0123456789"


@pytest.fixture
def cf() -> Iterator[CloudflareDouble]:
    with CloudflareDouble(token=TOKEN) as double:
        double.add_zone("other.test")
        double.add_zone("example.test")
        double.add_record(
            "example.test",
            "www.example.test",
            "A",
            "127.77.0.1",
            proxied=True,
            comment="keep me",
            tags=["team:web"],
        )
        double.add_record("example.test", "plain.example.test", "A", "127.77.0.1", ttl=120)
        double.add_record("example.test", "api.example.test", "A", "127.77.0.1", ttl=60)
        double.add_record("example.test", "api.example.test", "A", "127.77.0.2", ttl=60)
        yield double


def make(cf: CloudflareDouble, tmp_path: Path, **overrides: Any) -> CloudflareDns:
    raw: dict[str, Any] = {
        "type": "cloudflare",
        "zone": "example.test",
        "ttl": 60,
        "api_token": TOKEN,
        "endpoint": cf.base_url,
        "timeout": 2,
        "retry_attempts": 4,
        "retry_max_time": 10,
    }
    raw.update(overrides)
    return CloudflareDns(CloudflareSettings.model_validate(raw), ProviderContext(tmp_path))


def test_registry_and_vendor() -> None:
    assert dns_class("cloudflare") is CloudflareDns
    assert CloudflareDns.vendor == "cloudflare"


def test_find_zone_and_record(cf: CloudflareDouble, tmp_path: Path) -> None:
    dns = make(cf, tmp_path)
    record = dns.get_record("plain.example.test")
    assert record is not None and record.to_dict() == {
        "name": "plain.example.test",
        "type": "A",
        "values": ["127.77.0.1"],
        "ttl": 120,
    }
    assert dns.get_record("missing") is None
    # Proxied records have Cloudflare's automatic TTL (1), which resolvers see as 300.
    www = dns.get_record("www")
    assert www is not None and www.ttl == 300
    zone_lookups = [c for c in cf.calls if c == ("GET", "/client/v4/zones")]
    assert len(zone_lookups) == 1  # the zone id is looked up once


def test_update_is_one_call_and_keeps_proxied(cf: CloudflareDouble, tmp_path: Path) -> None:
    dns = make(cf, tmp_path)
    dns.get_record("www")  # warm up: zone lookup
    before = len(cf.calls)
    record = dns.set_record("www.example.test", "A", ["127.77.0.9"], 60, expect=["127.77.0.1"])
    assert record.values == ["127.77.0.9"]
    writes = [c for c in cf.calls[before:] if c[0] != "GET"]
    assert [w[0] for w in writes] == ["PATCH"]
    (stored,) = cf.records("www.example.test", "A")
    assert stored["content"] == "127.77.0.9"
    assert stored["proxied"] is True and stored["ttl"] == 1
    assert stored["comment"] == "keep me" and stored["tags"] == ["team:web"]

    plain = dns.set_record("plain", "A", ["127.77.0.8"], 60)
    assert plain.values == ["127.77.0.8"] and plain.ttl == 60
    (stored,) = cf.records("plain.example.test", "A")
    assert stored["proxied"] is False


def test_create_and_multi_value_replace_in_one_batch(cf: CloudflareDouble, tmp_path: Path) -> None:
    dns = make(cf, tmp_path)
    created = dns.set_record("new", "A", ["127.77.0.4"], 60, expect=[])
    assert created.values == ["127.77.0.4"]
    before = len(cf.calls)
    record = dns.set_record(
        "api",
        "A",
        ["127.77.0.2", "127.77.0.3", "127.77.0.5"],
        90,
        expect=["127.77.0.2", "127.77.0.1"],
    )
    assert record.values == ["127.77.0.2", "127.77.0.3", "127.77.0.5"] and record.ttl == 90
    writes = [c for c in cf.calls[before:] if c[0] != "GET"]
    assert writes == [("POST", f"/client/v4/zones/{cf.zone_id('example.test')}/dns_records/batch")]
    removed = dns.set_record("api", "A", [], 90)
    assert removed.values == [] and cf.records("api.example.test") == []


def test_token_rejected(cf: CloudflareDouble, tmp_path: Path) -> None:
    wrong = "wrong-token-abcdef"
    dns = make(cf, tmp_path, api_token=wrong)
    with pytest.raises(AccountBlocked) as info:
        dns.set_record("www", "A", ["127.77.0.9"], 60)
    assert "token rejected" in str(info.value) and info.value.code == "10000"
    assert wrong not in str(info.value) and TOKEN not in str(info.value)
    report = dns.check()
    assert report.state == "blocked" and not report.checks[0].ok

    good = make(cf, tmp_path)
    cf.fail_next(403)
    with pytest.raises(AccountBlocked):
        good.get_record("www")


def test_throttling_and_5xx_are_retried(cf: CloudflareDouble, tmp_path: Path) -> None:
    dns = make(cf, tmp_path)
    cf.fail_next(429, count=1, retry_after=0)
    cf.fail_next(500, count=1)
    record = dns.set_record("plain", "A", ["127.77.0.6"], 60)
    assert record.values == ["127.77.0.6"]
    statuses = cf.calls
    assert len(statuses) == 6  # 2 failed attempts, then zone, list, patch, list

    cf.fail_next(429, count=10, retry_after=0)
    few = make(cf, tmp_path, retry_attempts=2)
    before = len(cf.calls)
    with pytest.raises(TransientError) as info:
        few.get_record("plain")
    assert len(cf.calls) - before == 2  # bounded by retry_attempts, counted at the double
    assert info.value.code == "971" and info.value.retry_after == 0


def test_conflict(cf: CloudflareDouble, tmp_path: Path) -> None:
    dns = make(cf, tmp_path)
    dns.set_record("plain", "A", ["127.77.0.2"], 60, expect=["127.77.0.1"])
    with pytest.raises(ConflictError) as info:
        dns.set_record("plain", "A", ["127.77.0.3"], 60, expect=["127.77.0.1"])
    assert "someone else changed the record" in str(info.value)
    assert cf.records("plain.example.test")[0]["content"] == "127.77.0.2"
    # A retry of the write that landed is not a conflict.
    again = dns.set_record("plain", "A", ["127.77.0.2"], 60, expect=["127.77.0.1"])
    assert again.values == ["127.77.0.2"]


def test_other_errors_keep_cloudflare_code(cf: CloudflareDouble, tmp_path: Path) -> None:
    dns = make(cf, tmp_path)
    with pytest.raises(ProviderError) as info:
        dns.set_record("plain", "A", ["not-an-address"], 60)
    assert info.value.code == "9005" and not isinstance(info.value, TransientError)
    with pytest.raises(ProviderError) as info:
        dns.set_record("plain", "A", ["127.77.0.3"], 30)  # below the plan's minimum
    assert info.value.code == "9021"
    missing = make(cf, tmp_path, zone="absent.test")
    with pytest.raises(ProviderError) as info:
        missing.get_record("www")
    assert info.value.code == "zone-not-found"


def test_check(cf: CloudflareDouble, tmp_path: Path) -> None:
    report = make(cf, tmp_path).check()
    assert report.state == "available" and all(c.ok for c in report.checks)
    short = make(cf, tmp_path, ttl=30).check()
    assert short.state == "available"
    assert [c.name for c in short.checks if not c.ok] == ["ttl"]
    assert make(cf, tmp_path, zone="absent.test").check().state == "unknown"
    cf.fail_next(500, count=20)
    assert make(cf, tmp_path, retry_attempts=1).check().state == "unknown"


def test_settings_keep_the_token_secret(cf: CloudflareDouble, tmp_path: Path) -> None:
    settings = make(cf, tmp_path).cfg
    assert TOKEN not in repr(settings) and TOKEN not in settings.model_dump_json()


def test_standalone_double(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.doubles.cloudflare",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--zone",
            "example.test",
            "--record",
            "www.example.test:A:127.77.0.1:proxied",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base_url = line.strip().rsplit(" ", 1)[-1]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/client/v4")
        control = base_url.removesuffix("/client/v4") + "/__control"
        request = urllib.request.Request(
            control + "/fail",
            data=json.dumps({"status": 429, "retry_after": 0}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).read()
        settings = CloudflareSettings.model_validate(
            {
                "type": "cloudflare",
                "zone": "example.test",
                "api_token": TOKEN,
                "endpoint": base_url,
                "retry_max_time": 5,
            }
        )
        dns = CloudflareDns(settings, ProviderContext(tmp_path))
        record = dns.set_record("www", "A", ["127.77.0.2"], 60, expect=["127.77.0.1"])
        assert record.values == ["127.77.0.2"]
        state = json.loads(urllib.request.urlopen(control + "/state", timeout=5).read())
        assert state["records"][0]["proxied"] is True
        assert state["calls"][0] == ["GET", "/client/v4/zones"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_double_put_overwrites_and_get(cf: CloudflareDouble) -> None:
    """The double's PUT (the SDK's ``update``) replaces the whole record, like Cloudflare."""
    import cloudflare

    client = cloudflare.Cloudflare(api_token=TOKEN, base_url=cf.base_url, max_retries=0)
    zone_id = cf.zone_id("example.test")
    (www,) = cf.records("www.example.test")
    updated = client.dns.records.update(
        www["id"], zone_id=zone_id, name="www", type="A", content="127.77.0.3", ttl=120
    )
    assert updated is not None and updated.content == "127.77.0.3"
    got = client.dns.records.get(www["id"], zone_id=zone_id)
    assert got is not None and got.proxied is False and got.ttl == 120 and got.comment is None
    with pytest.raises(cloudflare.NotFoundError):
        client.dns.records.get("0" * 32, zone_id=zone_id)
    client.close()
