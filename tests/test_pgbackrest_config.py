"""Engine pgbackrest's settings and what failover renders from them (no server needed):
located errors, pgBackRest's repositories from the stores, PostgreSQL's settings, and the
host's part in every kind of host (run.sh on local/ssh hosts, cloud-init elsewhere)."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import yaml

from failover.config import ConfigError
from failover.config import parse
from failover.data.engines.pgconf import postgres_conf
from failover.data.engines.pgconf import render_conf
from failover.render import host_spec
from tests.helpers import base_config

# The replay's archive-get calls restricted to one repository.
FETCH = re.compile(r"--repo=(\d)( --no-archive-async)? archive-get")
PG = {"data_dir": "/srv/pg/{host_id}", "user": "postgres"}


def config(data: dict[str, Any], stores: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    conf = base_config(port=5432, data={"engine": "pgbackrest", **data})
    conf["stores"] = stores or [{"name": "offsite", "type": "dir", "path": "/backups"}]
    return conf


def problems(conf: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(yaml.safe_dump(conf), "failover.yaml")
    return info.value.problems


def test_engine_pgbackrest_needs_its_postgres_settings() -> None:
    (problem,) = problems(config({}))
    assert problem.startswith("services.web.data") and "needs `postgres`" in problem
    (problem,) = problems(config({"postgres": PG, "backup": "pg_dump"}))
    assert "takes no backup/restore commands" in problem
    (problem,) = problems(config({"postgres": {**PG, "user": "Root Admin"}}))
    assert problem.startswith("services.web.data.postgres.user")


def test_at_most_four_stores_each_one_repository() -> None:
    stores = [{"name": f"s{i}", "type": "dir", "path": f"/b{i}"} for i in range(5)]
    found = problems(config({"postgres": PG}, stores))
    assert found == [
        "services.web.data.stores: engine pgbackrest takes at most 4 stores (one "
        "repository each), not 5"
    ]
    parse(yaml.safe_dump(config({"postgres": PG, "stores": ["s0", "s3"]}, stores)), "f.yaml")
    stores[1]["path"] = "backups"  # the host and the watcher would mean two folders
    found = problems(config({"postgres": PG, "stores": ["s0", "s1"]}, stores))
    assert found == [
        "services.web.data.stores[1]: store s1: engine pgbackrest needs an absolute path"
    ]
    stores[1] = {"name": "s1", "type": "s3", "bucket": "b-1", "ca_file": "ca.pem"}
    found = problems(config({"postgres": PG, "stores": ["s0", "s1"]}, stores))
    assert found == [
        "services.web.data.stores[1]: store s1: engine pgbackrest needs an absolute ca_file"
    ]


def test_the_commands_engine_still_needs_its_commands() -> None:
    conf = base_config(data={"backup": "dump"})
    conf["stores"] = [{"name": "offsite", "type": "dir", "path": "/backups"}]
    (problem,) = problems(conf)
    assert problem.startswith("services.web.data") and "needs `backup` and `restore`" in problem


def loaded(data: dict[str, Any], stores: list[dict[str, Any]] | None = None) -> Any:
    return parse(yaml.safe_dump(config(data, stores)), "failover.yaml")


def test_repositories_rendered_from_the_stores_secrets_and_defaults() -> None:
    stores = [
        {"name": "offsite", "type": "dir", "path": "/backups"},
        {
            "name": "s3-dr",
            "type": "s3",
            "bucket": "dr-1",
            "endpoint": "https://127.0.0.1:9443",
            "ca_file": "/etc/dr-ca.pem",
        },
        {"name": "gcs", "type": "gcs", "bucket": "g-dr", "endpoint": "http://127.0.0.1:4443"},
        {
            "name": "az",
            "type": "azureblob",
            "account_url": "https://acct.blob.core.windows.net",
            "container": "dr",
            "ca_file": "/etc/az-ca.pem",
        },
    ]
    key = "k" * 32
    conf = loaded({"postgres": PG, "encryption_key": key, "archive_timeout": "5s"}, stores)
    data = conf.services["web"].data
    assert data.oldest_ok() == 20.0  # max_age defaults to 4 x archive_timeout
    text = render_conf("web", data, conf.stores, 5432)
    for line in [
        "archive-async=y",
        "repo1-type=posix",
        "repo1-path=/backups",
        "repo2-type=s3",
        "repo2-s3-bucket=dr-1",
        "repo2-s3-endpoint=127.0.0.1",
        "repo2-storage-port=9443",
        "repo2-s3-uri-style=path",
        "repo2-storage-ca-file=/etc/dr-ca.pem",  # verified against it, never switched off
        "repo3-type=gcs",
        "repo3-gcs-endpoint=127.0.0.1",
        "repo4-type=azure",
        "repo4-azure-account=acct",
        "repo4-storage-ca-file=/etc/az-ca.pem",  # azureblob too (as the watcher's client)
        "repo4-cipher-type=aes-256-cbc",
        f"repo4-cipher-pass={key}",
        "[web]",
        "pg1-port=5432",
    ]:
        assert line in text.splitlines(), line
    assert "s3-key" not in text  # credentials come from the host's environment


def host_script(spec: Any) -> str:
    (line,) = spec.run.restore
    encoded = re.match(r"printf %s (\S+) \| base64 -d", line)
    assert encoded, line
    return base64.b64decode(encoded.group(1)).decode()


def test_the_host_part_runs_in_the_restore_phase_and_in_cloud_init() -> None:
    conf = loaded({"postgres": {**PG, "hba": ["host all all 10.0.0.0/8 scram-sha-256"]}})
    svc = conf.services["web"]
    spec = host_spec("web", svc, generation=3, provider="alpha", stores=conf.stores)
    script = host_script(spec)
    assert "restore --type=standby" in script and "initdb" in script
    assert "D='/srv/pg/{host_id}'" in spec.run.restore[0]  # filled in with the host's
    # Image-booted hosts run the same line from cloud-init, their name as {host_id}.
    assert spec.run.restore[0].replace("{host_id}", spec.name) in spec.user_data


def test_a_store_of_a_blocked_provider_is_the_last_repository_tried() -> None:
    stores = [
        {"name": "a", "type": "dir", "path": "/a", "provider": "alpha"},
        {"name": "b", "type": "dir", "path": "/b"},
        {"name": "c", "type": "dir", "path": "/c", "provider": "beta"},
    ]
    conf = loaded({"postgres": PG}, stores)
    svc = conf.services["web"]
    spec = host_spec("web", svc, generation=3, provider="beta", stores=conf.stores)
    assert "for n in 1 2 3; do" in host_script(spec)
    assert "archive-get" in host_script(spec) and not FETCH.findall(host_script(spec))
    spec = host_spec(
        "web", svc, generation=3, provider="beta", stores=conf.stores, blocked={"alpha"}
    )
    script = host_script(spec)
    assert "for n in 2 3 1; do" in script  # repository numbers unchanged: a is still 1
    assert "store a (repository 1), its provider alpha is blocked" in script
    # The replay asks each repository alone in that order (archive-get walks repo1..N).
    later = " --no-archive-async"  # one prefetching spool: the first repository's
    assert FETCH.findall(script) == [("2", ""), ("3", later), ("1", later)]


def test_postgresql_settings_and_a_drill_that_never_archives() -> None:
    data = loaded({"postgres": PG, "archive_timeout": "5s"}).services["web"].data
    serving = postgres_conf("web", data, "serve")
    assert "archive_mode = on" in serving and "archive_timeout = 5" in serving
    assert "--stanza=web archive-push %p'" in serving
    assert "archive-get %f" in serving
    drill = postgres_conf("web", data, "drill")
    assert "archive-push" not in drill and "archive_command = '/bin/true'" in drill


def test_the_recovery_point_per_store_and_the_warning_over_max_age() -> None:
    import time

    from failover.data.engines.measure import engine_problems
    from failover.data.engines.measure import rpo

    data = loaded({"postgres": PG, "archive_timeout": "5s"}).services["web"].data
    now = time.time()
    doc = {"wal": {"offsite": {"segment": "A", "time": now - 3}}, "last_backup": {"id": "x"}}
    assert 2.5 < rpo(doc)["offsite"] < 60 and engine_problems(data, doc) == []
    doc["wal"]["offsite"]["time"] = now - 600
    (problem,) = engine_problems(data, doc)
    assert problem.startswith("recovery point 600s old in every store (max_age 20s)")
    assert engine_problems(data, {"last_backup": {"id": "x"}}) == ["no WAL archived to any store"]


def test_the_watchers_metrics_give_each_stores_recovery_point() -> None:
    import time
    import urllib.request

    from failover.watch import Metrics
    from tests.doubles.moto_server import free_port

    now = time.time()
    doc = {
        "stores": {"one": {"failures": 0}, "two": {"failures": 3}},
        "wal": {
            "one": {"segment": "A", "time": now - 5},
            "two": {"segment": "B", "time": now - 900},
        },
    }
    metrics = Metrics(free_port(), "127.0.0.1")
    try:
        metrics.data("db", doc)
        port = metrics.server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    finally:
        metrics.close()
    found = dict(
        re.findall(
            r'failover_store_recovery_point_seconds\{service="db",store="(\w+)"\} (\S+)', text
        )
    )
    assert set(found) == {"one", "two"}
    assert 4 < float(found["one"]) < 300 and 899 < float(found["two"]) < 1200
    assert 'failover_store_failures{service="db",store="two"} 3.0' in text


def test_the_postgres_example_at_two_companies_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from failover import config as cfg

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "B2_KEY_ID", "B2_APPLICATION_KEY"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("APP_DB_PASSWORD", "y")
    monkeypatch.setenv("FAILOVER_DATA_KEY", "k" * 32)
    root = Path(__file__).resolve().parent.parent
    conf = cfg.load(root / "examples" / "postgres-two-companies" / "failover.yaml")
    data = conf.services["db"].data
    assert data is not None and data.engine == "pgbackrest"
    lines = render_conf("db", data, conf.stores, 5432).splitlines()
    assert "repo1-s3-endpoint=s3.eu-central-1.amazonaws.com" in lines
    assert "repo2-s3-endpoint=s3.eu-central-003.backblazeb2.com" in lines
    assert "db.example.com" in conf.services["web"].run.command
