"""The fault-injecting proxy (tests/doubles/faultproxy.py) in front of a tiny echo server."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.doubles.faultproxy import CONTROL
from tests.doubles.faultproxy import FaultProxy
from tests.doubles.faultproxy import ec2_error
from tests.doubles.faultproxy import json_error
from tests.doubles.moto_server import free_port

pytestmark = pytest.mark.timeout(60)


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        entry = {
            "method": self.command,
            "path": self.path,
            "body": body,
            "host": self.headers.get("Host"),
        }
        Echo.seen.append(entry)
        data = json.dumps(entry).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _any


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: str) -> Iterator[FaultProxy]:
    Echo.seen.clear()
    with FaultProxy(upstream) as p:
        yield p


def request(
    proxy: FaultProxy, method: str = "POST", path: str = "/", body: str = "", timeout: float = 5
) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)
    try:
        conn.request(
            method, path, body=body.encode() if body else None, headers={"Host": "api.example.test"}
        )
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def test_passthrough_keeps_method_path_body_and_host(proxy: FaultProxy) -> None:
    status, _, body = request(proxy, "PUT", "/v1/things?x=1", "Action=Hello")
    assert status == 200
    assert json.loads(body) == {
        "method": "PUT",
        "path": "/v1/things?x=1",
        "body": "Action=Hello",
        "host": "api.example.test",
    }
    assert proxy.log[0]["status"] == 200 and proxy.log[0]["fault"] is None


def test_status_fault_matching_times_skip_and_headers(proxy: FaultProxy) -> None:
    fault = proxy.add(
        body="Action=RunInstances",
        status=500,
        skip=1,
        times=2,
        retry_after=3,
        headers={"X-Test": "1"},
        response_body=ec2_error("InsufficientInstanceCapacity"),
    )
    assert request(proxy, body="Action=DescribeInstances")[0] == 200  # no match
    assert request(proxy, body="Action=RunInstances")[0] == 200  # skipped once
    status, headers, body = request(proxy, body="Action=RunInstances&x=1")
    assert status == 500 and headers["retry-after"] == "3" and headers["x-test"] == "1"
    assert "<Code>InsufficientInstanceCapacity</Code>" in body
    assert request(proxy, body="Action=RunInstances")[0] == 500
    assert request(proxy, body="Action=RunInstances")[0] == 200  # used up
    assert fault.hits == 2 and proxy.faults == []
    assert proxy.count(body="Action=RunInstances") == 4
    # method, path and regex conditions
    proxy.add(
        method="GET",
        path="re:^/v1/zones/[a-z]+$",
        status=429,
        response_body=json_error(429, "slow down", "rateLimitExceeded"),
    )
    assert request(proxy, "POST", "/v1/zones/b")[0] == 200
    assert request(proxy, "GET", "/v1/zones/b/x")[0] == 200
    status, _, body = request(proxy, "GET", "/v1/zones/b")
    assert status == 429 and json.loads(body)["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    # the query string counts as body for GET APIs
    proxy.add(body="Action=GetThing", status=503)
    assert request(proxy, "GET", "/?Action=GetThing")[0] == 503


def test_after_forward_reaches_upstream_but_loses_the_answer(proxy: FaultProxy) -> None:
    proxy.add(body="create", status=503, after_forward=True)
    assert request(proxy, body="create")[0] == 503
    assert [e["body"] for e in Echo.seen] == ["create"]


def test_reset_hang_and_delay(proxy: FaultProxy) -> None:
    proxy.add(action="reset")
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        request(proxy)
    proxy.add(action="hang", hang=30)
    with pytest.raises(TimeoutError):  # the client's timeout, not the 30 s hang, ends it
        request(proxy, timeout=0.3)
    proxy.add(action="hang", hang=0.2)  # bounded: closes without an answer
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        request(proxy, timeout=5)
    proxy.add(action="delay", delay=0.3)
    started = time.monotonic()
    assert request(proxy)[0] == 200
    assert time.monotonic() - started >= 0.3
    assert [e["status"] for e in proxy.log] == ["reset", "hang", "hang", 200]


def test_control_api(proxy: FaultProxy) -> None:
    fault = {"path": "/x", "status": 418, "response_body": "teapot", "times": None}
    status, _, body = request(proxy, "POST", f"{CONTROL}/faults", json.dumps([fault]))
    assert status == 200 and len(json.loads(body)["ids"]) == 1
    assert request(proxy, "GET", "/x")[0] == 418
    assert request(proxy, "GET", "/x")[0] == 418
    listed = json.loads(request(proxy, "GET", f"{CONTROL}/faults")[2])["faults"]
    assert listed[0]["hits"] == 2
    log = json.loads(request(proxy, "GET", f"{CONTROL}/log")[2])["requests"]
    assert [e["status"] for e in log] == [418, 418]
    assert request(proxy, "DELETE", f"{CONTROL}/faults")[0] == 200
    assert request(proxy, "GET", "/x")[0] == 200
    assert request(proxy, "POST", f"{CONTROL}/faults", '{"nope": 1}')[0] == 400
    assert request(proxy, "POST", f"{CONTROL}/reset")[0] == 200
    assert proxy.log == []


def test_standalone(upstream: str) -> None:
    port = free_port()
    fault = json.dumps({"body": "boom", "status": 502})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.doubles.faultproxy",
            "--target",
            upstream,
            "--port",
            str(port),
            "--fault",
            fault,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"faultproxy listening on http://127.0.0.1:{port}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/", body=b"boom")
        assert conn.getresponse().status == 502
        conn.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
