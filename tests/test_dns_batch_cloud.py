"""Several DNS changes to one zone in one request (issue 16): Route 53 (boto3 against
moto, through the counting fault proxy) and Cloud DNS (google-cloud-dns against the
double, which records every call). Each counts the requests the server saw, so a backend
that quietly sends one request per change fails. RFC 2136: tests/test_dns_batch.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from providers.base import AccountBlocked
from providers.base import ConflictError
from providers.base import ProviderContext
from providers.base import Record
from providers.base import RecordChange
from providers.base import TransientError
from tests.doubles.faultproxy import FaultProxy
from tests.doubles.faultproxy import aws_error
from tests.doubles.gce import GceDouble
from tests.doubles.moto_server import MotoServer
from tests.doubles.moto_server import require_moto
from tests.doubles.moto_server import use_test_credentials
from tests.helpers import dns_moves as _moves
from tests.helpers import result_values as _values
from tests.servers import free_port

# --------------------------------------------------------------------------- route53
# boto3 against moto's server, through tests/doubles/faultproxy.py, which counts the
# requests (POST .../rrset is ChangeResourceRecordSets, GET .../rrset a listing) and gives
# Route 53's own refusals where moto is lenient. Each test has its own hosted zone on the
# session's moto server. moto does not check a DELETE against the set it holds (only
# against its journal of earlier writes), so the refusal of a batch whose DELETE no longer
# matches is Route 53's answer served by the proxy; the read check is moto-checked.

R53_CHANGE: dict[str, Any] = {"method": "POST", "path": "/rrset"}
R53_LIST: dict[str, Any] = {"method": "GET", "path": "/rrset"}


@dataclass
class R53:
    moto: MotoServer
    proxy: FaultProxy
    zone: str
    zone_id: str
    tmp: Path

    def dns(self, endpoint: str | None = None, **overrides: Any) -> Any:
        from providers.dns.route53 import Route53Dns
        from providers.dns.route53 import Route53Settings

        values: dict[str, Any] = {
            "type": "route53",
            "zone": self.zone,
            "endpoint": endpoint or self.proxy.url,
            "retry_attempts": 2,
            "retry_max_time": 5,
            "change_timeout": 5,
        }
        values.update(overrides)
        return Route53Dns(Route53Settings(**values), ProviderContext(self.tmp))

    def served(self, name: str, rtype: str = "A") -> list[str]:
        """What moto holds for ``name`` (``[]``: absent), read past the backend."""
        import boto3

        r53 = boto3.client("route53", endpoint_url=self.moto.url, region_name="us-east-1")
        fqdn = f"{name}.{self.zone}."
        pages = r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=self.zone_id)
        for page in pages:
            for rr in page["ResourceRecordSets"]:
                if rr["Name"] == fqdn and rr["Type"] == rtype:
                    return sorted(r["Value"] for r in rr.get("ResourceRecords", []))
        return []

    def upsert(self, name: str, values: list[str]) -> None:
        """Another writer (a person, another watcher) sets ``name`` behind our back."""
        import boto3

        r53 = boto3.client("route53", endpoint_url=self.moto.url, region_name="us-east-1")
        rrset = {
            "Name": f"{name}.{self.zone}.",
            "Type": "A",
            "TTL": 30,
            "ResourceRecords": [{"Value": v} for v in values],
        }
        r53.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": rrset}]},
        )


@pytest.fixture(scope="module")
def r53_moto() -> MotoServer:
    return require_moto()


@pytest.fixture
def r53(r53_moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[R53]:
    import boto3

    use_test_credentials(monkeypatch)
    r53_moto.set_auth(False)
    zone = f"batch-{uuid.uuid4().hex[:8]}.test"
    client = boto3.client("route53", endpoint_url=r53_moto.url, region_name="us-east-1")
    made = client.create_hosted_zone(Name=zone, CallerReference=str(uuid.uuid4()))
    zone_id = str(made["HostedZone"]["Id"]).split("/")[-1]
    with FaultProxy(r53_moto.url) as proxy:
        yield R53(r53_moto, proxy, zone, zone_id, tmp_path)


def test_route53_ten_changes_are_one_change_batch(r53: R53) -> None:
    dns = r53.dns()
    assert type(dns).batches_changes
    created = dns.replace_records(_moves("one", None, "127.78.0.", 10))
    assert _values(created) == [[f"127.78.0.{i}"] for i in range(10)]
    assert r53.proxy.count(**R53_CHANGE) == 1
    # One listing to read the ten sets and one to read them back, not one get each.
    assert r53.proxy.count(**R53_LIST) == 2

    moved = dns.replace_records(
        [RecordChange(f"one{i}", "A", ["127.78.1.1"], 45, [f"127.78.0.{i}"]) for i in range(10)]
    )
    assert _values(moved) == [["127.78.1.1"]] * 10
    assert all(isinstance(r, Record) and r.ttl == 45 for r in moved)
    assert r53.proxy.count(**R53_CHANGE) == 2
    # Conditional changes name the exact set they replace: DELETE it, CREATE the new one.
    assert r53.proxy.count(body="<Action>DELETE</Action>", **R53_CHANGE) == 1
    assert [r53.served(f"one{i}") for i in range(10)] == [["127.78.1.1"]] * 10


def test_route53_more_than_max_batch_and_a_set_twice(r53: R53) -> None:
    dns = r53.dns()
    many = dns.replace_records(_moves("many", None, "127.78.0.", 150))
    assert all(isinstance(r, Record) for r in many)
    assert r53.proxy.count(**R53_CHANGE) == 2  # max_batch (100) per batch
    # The same set twice in one call: in order, the second sees the first.
    twice = dns.replace_records(
        [
            RecordChange("twice", "A", ["127.78.8.10"], 30, []),
            RecordChange("twice", "A", ["127.78.8.11"], 30, ["127.78.8.10"]),
        ]
    )
    assert _values(twice) == [["127.78.8.10"], ["127.78.8.11"]]
    assert r53.served("twice") == ["127.78.8.11"]


def test_route53_reads_a_large_zone_in_pages(r53: R53) -> None:
    dns = r53.dns()
    assert all(
        isinstance(r, Record) for r in dns.replace_records(_moves("big", None, "127.7.0.", 320))
    )
    listed = r53.proxy.count(**R53_LIST)
    # 322 sets (with SOA and NS): two pages of 300, to read and again to read back.
    moved = dns.replace_records(_moves("big", None, "127.7.1.", 10))
    assert _values(moved) == [[f"127.7.1.{i}"] for i in range(10)]
    assert r53.proxy.count(**R53_LIST) == listed + 4
    # The listing stops once it has every set it reads.
    listed = r53.proxy.count(**R53_LIST)
    front = [RecordChange(f"big{i}", "A", ["127.7.2.1"], 30, None) for i in (2, 318)]
    assert _values(dns.replace_records(front)) == [["127.7.2.1"]] * 2
    assert r53.proxy.count(**R53_LIST) == listed + 2
    # Two changes may list one page only; a set not on it is read by itself (big99 sorts
    # last).
    listed = r53.proxy.count(**R53_LIST)
    far = [RecordChange(f"big{i}", "A", ["127.7.3.1"], 30, None) for i in (2, 99)]
    assert _values(dns.replace_records(far)) == [["127.7.3.1"]] * 2
    assert r53.served("big99") == ["127.7.3.1"]
    assert r53.proxy.count(**R53_LIST) == listed + 4
    assert r53.proxy.count(path="name=big99") == 2


def test_route53_one_stale_change_conflicts_and_nine_land(r53: R53) -> None:
    dns = r53.dns()
    dns.replace_records(_moves("stale", None, "127.78.2.", 10))
    r53.upsert("stale3", ["127.78.9.9"])  # another watcher moved it first
    changes = [
        RecordChange(f"stale{i}", "A", [f"127.78.3.{i}"], 30, [f"127.78.2.{i}"]) for i in range(10)
    ]
    changes[7] = RecordChange("stale7", "A", ["127.78.3.7"], 30, [])  # to create; it exists
    sent = r53.proxy.count(**R53_CHANGE)
    results = dns.replace_records(changes)
    assert isinstance(results[3], ConflictError) and "127.78.9.9" in str(results[3])
    assert isinstance(results[7], ConflictError)
    landed = [i for i in range(10) if i not in (3, 7)]
    assert [_values(results)[i] for i in landed] == [[f"127.78.3.{i}"] for i in landed]
    assert r53.served("stale3") == ["127.78.9.9"] and r53.served("stale7") == ["127.78.2.7"]
    assert [r53.served(f"stale{i}") for i in landed] == [[f"127.78.3.{i}"] for i in landed]
    assert r53.proxy.count(**R53_CHANGE) == sent + 1  # the eight others in one batch


def test_route53_refused_batch_is_sent_one_by_one(r53: R53) -> None:
    dns = r53.dns()
    dns.replace_records(_moves("race", None, "127.78.2.", 10))
    read = dns._read_sets

    def read_then_race(changes: Any) -> Any:
        # The window between the backend's read and its write cannot be hit from outside
        # deterministically: the other writer moves race3 right after the first read.
        out = read(changes)
        if len(changes) == 10 and r53.served("race3") == ["127.78.2.3"]:
            r53.upsert("race3", ["127.78.9.9"])
        return out

    dns._read_sets = read_then_race
    # What Route 53 answers for a DELETE that no longer matches (moto does not check).
    r53.proxy.add(
        status=400,
        response_body=aws_error(
            "InvalidChangeBatch",
            "[Tried to delete resource record set [name='race3', type='A'] but the values "
            "provided do not match the current values]",
        ),
        **R53_CHANGE,
    )
    sent = r53.proxy.count(**R53_CHANGE)
    results = dns.replace_records(
        [RecordChange(f"race{i}", "A", [f"127.78.3.{i}"], 30, [f"127.78.2.{i}"]) for i in range(10)]
    )
    assert isinstance(results[3], ConflictError) and "127.78.9.9" in str(results[3])
    others = [i for i in range(10) if i != 3]
    assert [_values(results)[i] for i in others] == [[f"127.78.3.{i}"] for i in others]
    assert r53.served("race3") == ["127.78.9.9"]
    assert r53.proxy.count(**R53_CHANGE) == sent + 1 + 9  # refused, then one by one


def test_route53_changes_already_applied_are_no_ops(r53: R53) -> None:
    dns = r53.dns()
    dns.replace_records(_moves("again", None, "127.78.4.", 10))
    moves = [
        RecordChange(f"again{i}", "A", [f"127.78.5.{i}"], 30, [f"127.78.4.{i}"]) for i in range(10)
    ]
    for change in moves[:5]:  # half landed before (a watcher stopped mid-round)
        dns.replace_record(change)
    sent = r53.proxy.count(**R53_CHANGE)
    assert _values(dns.replace_records(moves)) == [[f"127.78.5.{i}"] for i in range(10)]
    assert r53.proxy.count(**R53_CHANGE) == sent + 1  # the other five, in one batch
    # All of them again, with and without the condition, or the stale condition of a
    # resumed cutover: nothing is sent at all.
    assert _values(dns.replace_records(moves)) == [[f"127.78.5.{i}"] for i in range(10)]
    unconditional = [c._replace(expect=None) for c in moves]
    assert _values(dns.replace_records(unconditional)) == [[f"127.78.5.{i}"] for i in range(10)]
    assert r53.proxy.count(**R53_CHANGE) == sent + 1


def test_route53_lost_answer_is_no_error(r53: R53) -> None:
    dns = r53.dns()
    dns.replace_records(_moves("lost", None, "127.78.4.", 10))
    # The batch lands, its answer is lost; the retried DELETEs no longer match.
    r53.proxy.add(status=503, after_forward=True, **R53_CHANGE)
    r53.proxy.add(status=400, response_body=aws_error("InvalidChangeBatch"), **R53_CHANGE)
    moves = [
        RecordChange(f"lost{i}", "A", [f"127.78.5.{i}"], 30, [f"127.78.4.{i}"]) for i in range(10)
    ]
    sent = r53.proxy.count(**R53_CHANGE)
    assert _values(dns.replace_records(moves)) == [[f"127.78.5.{i}"] for i in range(10)]
    # The batch, its retry; then each change re-read one by one, found done, not sent.
    assert r53.proxy.count(**R53_CHANGE) == sent + 2
    assert [r53.served(f"lost{i}") for i in range(10)] == [[f"127.78.5.{i}"] for i in range(10)]


def test_route53_whole_request_errors_are_every_change_result(r53: R53) -> None:
    dns = r53.dns()
    dns.replace_records(_moves("whole", None, "127.78.6.", 4))
    moves = [RecordChange(f"whole{i}", "A", ["127.78.7.1"], 30, None) for i in range(4)]
    before = [r53.served(f"whole{i}") for i in range(4)]

    r53.proxy.add(status=403, response_body=aws_error("AccessDenied"), **R53_CHANGE)
    results = dns.replace_records(moves)
    assert all(isinstance(r, AccountBlocked) for r in results), results
    with r53.moto.auth():
        results = r53.dns().replace_records(moves)
    assert all(isinstance(r, AccountBlocked) for r in results), results

    r53.proxy.add(status=400, response_body=aws_error("Throttling"), times=None, **R53_CHANGE)
    results = dns.replace_records(moves)
    assert all(isinstance(r, TransientError) and r.code == "Throttling" for r in results)
    r53.proxy.clear()

    down = r53.dns(endpoint=f"http://127.0.0.1:{free_port()}", retry_attempts=1)
    results = down.replace_records(moves)
    assert all(isinstance(r, TransientError) for r in results), results
    assert [r53.served(f"whole{i}") for i in range(4)] == before


# --------------------------------------------------------------------------- clouddns
# google-cloud-dns against tests/doubles/gce.py, which applies a change atomically (every
# deletion must match its set exactly: 412 conditionNotMet; an addition over an existing
# set: 409) and records every call, so the tests count `dns.changes.create`. One double
# for the section; each test has its own managed zone.


@dataclass
class Gdns:
    gce: GceDouble
    zone: str  # DNS name, no final dot
    managed: str

    def dns(self, **overrides: Any) -> Any:
        from providers.dns.clouddns import CloudDns
        from providers.dns.clouddns import CloudDnsSettings

        fields: dict[str, Any] = {
            "type": "clouddns",
            "zone": self.zone,
            "project": "test-project",
            "endpoint": self.gce.endpoint,
            "retry_attempts": 2,
            "retry_max_time": 3,
            "change_timeout": 5,
        }
        fields.update(overrides)
        settings = CloudDnsSettings.model_validate(fields)
        return CloudDns(settings, ProviderContext(Path("/nonexistent")))

    def fqdn(self, name: str) -> str:
        return f"{name}.{self.zone}"

    def count(self, method: str) -> int:
        return sum(
            1 for c in self.gce.calls(method) if f"/managedZones/{self.managed}/" in c["path"]
        )

    def served(self, name: str) -> list[str]:
        for rr in self.gce.rrsets(self.managed):
            if rr["name"] == self.fqdn(name) + "." and rr["type"] == "A":
                return sorted(rr["rrdatas"])
        return []

    def moves(self, prefix: str, old: str | None, new: str, n: int = 10) -> list[RecordChange]:
        return [c._replace(name=self.fqdn(c.name)) for c in _moves(prefix, old, new, n)]


@pytest.fixture(scope="module")
def gce_batch() -> Iterator[GceDouble]:
    with GceDouble() as double:
        yield double


@pytest.fixture
def gdns(gce_batch: GceDouble) -> Gdns:
    gce_batch.resume()
    tag = uuid.uuid4().hex[:8]
    gce_batch.add_dns_zone(f"batch-{tag}", f"batch-{tag}.test.")
    return Gdns(gce_batch, f"batch-{tag}.test", f"batch-{tag}")


CHANGE = "dns.changes.create"
LIST = "dns.resourceRecordSets.list"


def test_clouddns_ten_changes_are_one_change(gdns: Gdns) -> None:
    dns = gdns.dns()
    assert type(dns).batches_changes
    created = dns.replace_records(gdns.moves("one", None, "127.78.0.", 10))
    assert _values(created) == [[f"127.78.0.{i}"] for i in range(10)]
    assert gdns.count(CHANGE) == 1
    assert gdns.count(LIST) == 2  # one listing to read, one to read back

    moved = dns.replace_records(
        [
            RecordChange(gdns.fqdn(f"one{i}"), "A", ["127.78.1.1"], 45, [f"127.78.0.{i}"])
            for i in range(10)
        ]
    )
    assert _values(moved) == [["127.78.1.1"]] * 10
    assert all(isinstance(r, Record) and r.ttl == 45 for r in moved)
    assert gdns.count(CHANGE) == 2
    last = gdns.gce.state.managed_zones[("test-project", gdns.managed)].changes[-1]
    assert len(last["deletions"]) == 10 and len(last["additions"]) == 10
    assert [gdns.served(f"one{i}") for i in range(10)] == [["127.78.1.1"]] * 10


def test_clouddns_one_stale_change_conflicts_and_nine_land(gdns: Gdns) -> None:
    dns = gdns.dns()
    dns.replace_records(gdns.moves("stale", None, "127.78.2.", 10))
    dns.set_record(gdns.fqdn("stale3"), "A", ["127.78.9.9"], 30)  # another watcher first
    changes = [
        RecordChange(gdns.fqdn(f"stale{i}"), "A", [f"127.78.3.{i}"], 30, [f"127.78.2.{i}"])
        for i in range(10)
    ]
    sent = gdns.count(CHANGE)
    results = dns.replace_records(changes)
    assert isinstance(results[3], ConflictError) and "127.78.9.9" in str(results[3])
    others = [i for i in range(10) if i != 3]
    assert [_values(results)[i] for i in others] == [[f"127.78.3.{i}"] for i in others]
    assert gdns.served("stale3") == ["127.78.9.9"]
    assert gdns.count(CHANGE) == sent + 1


def test_clouddns_refused_change_is_sent_one_by_one(gdns: Gdns) -> None:
    dns = gdns.dns()
    dns.replace_records(gdns.moves("race", None, "127.78.2.", 10))
    read = dns._read_sets
    other = gdns.dns()

    def read_then_race(changes: Any) -> Any:
        # The window between the backend's read and its write cannot be hit from outside
        # deterministically: another writer moves race3 right after the first read. The
        # double then refuses the whole change (412), as Cloud DNS does.
        out = read(changes)
        if len(changes) == 10 and gdns.served("race3") == ["127.78.2.3"]:
            other.set_record(gdns.fqdn("race3"), "A", ["127.78.9.9"], 30)
        return out

    dns._read_sets = read_then_race
    zone = gdns.gce.state.managed_zones[("test-project", gdns.managed)]
    applied = len(zone.changes)
    sent = gdns.count(CHANGE)
    results = dns.replace_records(
        [
            RecordChange(gdns.fqdn(f"race{i}"), "A", [f"127.78.3.{i}"], 30, [f"127.78.2.{i}"])
            for i in range(10)
        ]
    )
    assert isinstance(results[3], ConflictError) and "127.78.9.9" in str(results[3])
    others = [i for i in range(10) if i != 3]
    assert [_values(results)[i] for i in others] == [[f"127.78.3.{i}"] for i in others]
    assert gdns.served("race3") == ["127.78.9.9"]
    # Refused as a whole (nothing of it applied), then the nine one by one.
    assert gdns.count(CHANGE) == sent + 1 + 1 + 9
    assert len(zone.changes) == applied + 1 + 9


def test_clouddns_changes_already_applied_are_no_ops(gdns: Gdns) -> None:
    dns = gdns.dns()
    dns.replace_records(gdns.moves("again", None, "127.78.4.", 10))
    moves = [
        RecordChange(gdns.fqdn(f"again{i}"), "A", [f"127.78.5.{i}"], 30, [f"127.78.4.{i}"])
        for i in range(10)
    ]
    for change in moves[:5]:
        dns.replace_record(change)
    sent = gdns.count(CHANGE)
    assert _values(dns.replace_records(moves)) == [[f"127.78.5.{i}"] for i in range(10)]
    assert gdns.count(CHANGE) == sent + 1
    assert _values(dns.replace_records(moves)) == [[f"127.78.5.{i}"] for i in range(10)]
    unconditional = [c._replace(expect=None) for c in moves]
    assert _values(dns.replace_records(unconditional)) == [[f"127.78.5.{i}"] for i in range(10)]
    assert gdns.count(CHANGE) == sent + 1


def test_clouddns_whole_request_errors_are_every_change_result(gdns: Gdns) -> None:
    dns = gdns.dns()
    dns.replace_records(gdns.moves("whole", None, "127.78.6.", 4))
    moves = [RecordChange(gdns.fqdn(f"whole{i}"), "A", ["127.78.7.1"], 30, None) for i in range(4)]
    gdns.gce.fail(CHANGE, "503", times=10)
    results = dns.replace_records(moves)
    assert all(isinstance(r, TransientError) for r in results), results
    gdns.gce.state.faults.clear()
    gdns.gce.suspend()
    try:
        results = dns.replace_records(moves)
    finally:
        gdns.gce.resume()
    assert all(isinstance(r, AccountBlocked) for r in results), results
    down = gdns.dns(endpoint=f"http://127.0.0.1:{free_port()}", retry_attempts=1)
    results = down.replace_records(moves)
    assert all(isinstance(r, TransientError) for r in results), results
    assert [gdns.served(f"whole{i}") for i in range(4)] == [[f"127.78.6.{i}"] for i in range(4)]
