"""Issue 25's test app: a web app (``tests/apps/pgweb.py``) on PostgreSQL, two services
``db`` (engine pgbackrest) and ``web``, where ``web`` reaches ``db`` by its DNS name.

DNS is a real BIND driven by the rfc2136 backend, and the app asks that server directly
(dnspython, never the system resolver) on each reconnect: what ``web`` sees after ``db``
fails over is what a cutover really published, not a file failover itself wrote. ``db``'s
provider is cut off while rows are written through ``web``; ``db`` fails over; ``web``,
neither restarted nor redeployed, serves again from the new database, which holds every
row acknowledged more than ``archive_timeout`` plus one push before the cut-off."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT
from tests.helpers import wait_for
from tests.servers import bind_server
from tests.test_data_e2e import cut_off
from tests.test_pgbackrest import ARCHIVE_TIMEOUT
from tests.test_pgbackrest import PUSH
from tests.test_pgbackrest import deployed
from tests.test_pgbackrest import fail_over
from tests.test_pgbackrest import pg_config
from tests.test_pgbackrest import pg_root  # noqa: F401 - fixture
from tests.test_pgbackrest import world  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(600)

KEY_VAR = "PGWEB_TEST_TSIG_KEY"
WEB_PORT = 8080


def two_services(root: Path, bind: tuple[str, int, str, str, str]) -> dict[str, Any]:
    host, port, key_name, _secret, zone = bind
    conf = pg_config(root)
    conf["dns"] = {
        "type": "rfc2136",
        "zone": zone,
        "ttl": 5,
        "server": f"{host}:{port}",
        "key_name": key_name,
        "key_secret": "${" + KEY_VAR + "}",
        "timeout": "1s",
        "poll_interval": "0s",
        "propagation_timeout": "10s",
    }
    app = ROOT / "tests" / "apps" / "pgweb.py"
    conf["services"]["web"] = {
        "domain": "www.example.test",
        "port": WEB_PORT,
        "run": {
            "command": f"{{python}} {app} --port {{port}} --bind {{address}} "
            f"--db db.example.test --dns {host}:{port} --db-port {conf['services']['db']['port']}"
        },
        "health": {"http": {"path": "/healthz"}, "interval": "500ms", "timeout": "400ms"},
        "policy": {"ready_timeout": "120s", "max_moves_per_hour": 10},
    }
    return conf


def call(url: str, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


class WebWriter(threading.Thread):
    """Posts rows through web one at a time and records each acknowledged one."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.acked: list[tuple[int, float]] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            status, body = call(self.base + "/rows", "POST")
            if status == 200:
                self.acked.append((int(body), time.time()))
            else:
                self.refused += 1
            time.sleep(0.02)


def test_web_reaches_the_failed_over_database_by_its_dns_name(
    world: Any,  # noqa: F811
    pg_root: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with bind_server(tmp_path) as bind:
        monkeypatch.setenv(KEY_VAR, bind[3])
        engine = deployed(world, pg_root, two_services(pg_root, bind))
        web = engine.run("web", "deploy", reason="test", to="beta")
        assert web.ok, web.message
        served = engine.store.service("web").active
        old_db = engine.store.service("db").active
        assert served is not None and old_db is not None
        base = f"http://{served['address']}:{WEB_PORT}"
        assert call(base + "/rows") == (200, {"db": old_db["address"], "ids": []})

        writer = WebWriter(base)
        writer.start()
        began = time.time()
        wait_for(
            lambda: len(writer.acked) >= 50 and time.time() - began > ARCHIVE_TIMEOUT + PUSH + 5,
            300,
            "rows written through web",
        )
        cut = time.time()
        cut_off(engine, "alpha", "db")
        fail_over(engine)
        new_db = engine.store.service("db").active
        assert new_db is not None and new_db["address"] != old_db["address"]
        # web, untouched, serves from the new database once its next reconnect asks DNS.
        wait_for(lambda: call(base + "/rows")[0] == 200, 120, "web serving again")
        resumed = len(writer.acked)
        wait_for(lambda: len(writer.acked) >= resumed + 20, 120, "writes through web again")
        writer.stop.set()
        writer.join(30)

        status, body = call(base + "/rows")
        assert status == 200 and body["db"] == new_db["address"], body
        present = set(body["ids"])
        acked = dict(writer.acked)
        must = {i for i, at in acked.items() if at < cut - ARCHIVE_TIMEOUT - PUSH}
        assert must, "the writer ran too short a time to judge"
        assert must <= present, sorted(must - present)[:5]
        assert {i for i, _ in writer.acked[resumed:]} <= present  # written after, kept
        assert writer.refused > 0  # web did see its database go away
        # Not restarted, not redeployed: the same host, and web's history is its deploy.
        assert engine.store.service("web").active == served
        assert [e["kind"] for e in engine.store.events("web", limit=5)] == ["deploy"]
