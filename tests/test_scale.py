"""Ten thousand services, one watcher, linear cost (issue 28): counted, never timed.

Opens and connects are counted with audit hooks (``open``, ``socket.connect``), which
the interpreter raises for every file it opens and every connect a socket makes, the
event loop's included: a real counter, nothing mocked. A hook cannot be removed, so one
is installed for the session and records only while a test holds :func:`counting`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover import config as cfg
from failover.config import ConfigError
from failover.deploy_all import deploy_all
from failover.engine import Engine
from providers.util import write_private
from tests.helpers import APP
from tests.helpers import FAILOVER
from tests.helpers import base_config
from tests.helpers import cleanup
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import live_hosts
from tests.helpers import wait_for
from tests.helpers import write_config
from tests.servers import free_port

_seen: list[tuple[str, Any]] | None = None
_guard = threading.Lock()


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _seen is not None and event in ("open", "socket.connect"):
        with _guard:
            if _seen is not None:
                _seen.append((event, args[0] if event == "open" else args[1]))


sys.addaudithook(_hook)


@contextlib.contextmanager
def counting() -> Iterator[list[tuple[str, Any]]]:
    """Every file opened and every address connected to, while inside."""
    global _seen
    seen: list[tuple[str, Any]] = []
    _seen = seen
    try:
        yield seen
    finally:
        _seen = None


def opens(seen: list[tuple[str, Any]], suffix: str) -> list[str]:
    return [str(p) for e, p in seen if e == "open" and str(p).endswith(suffix)]


def connects(seen: list[tuple[str, Any]]) -> list[tuple[str, int]]:
    return [tuple(a[:2]) for e, a in seen if e == "socket.connect" and isinstance(a, tuple)]


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    """A machine where every service already runs: a socket that accepts connections
    (the kernel completes them from the backlog; tcp probes ask no more)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        stop = threading.Event()

        def drain() -> None:
            sock.settimeout(0.1)
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    sock.accept()[0].close()

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        yield sock.getsockname()
        stop.set()
        thread.join()


def static_config(
    tmp: Path, count: int, address: str, port: int | None, **extra: Any
) -> dict[str, Any]:
    """``count`` services on one static machine; each on ``port`` or its own port."""
    services = {
        f"s{i}": {
            "domain": f"s{i}.example.test",
            "port": port or 20000 + i,
            "run": {"command": "true"},
            "health": {"interval": "30s", "timeout": "10s", "fall": 100, "rise": 1, "tcp": {}},
            "policy": {"ready_timeout": "60s"},
        }
        for i in range(count)
    }
    return {
        "version": 1,
        "dns": {"type": "local", "zone": "example.test", "ttl": 5},
        "providers": [
            {"name": "own", "type": "static", "machines": [{"address": address}], **extra}
        ],
        "services": services,
        "watcher": {"parallel_moves": 4},
    }


# --------------------------------------------------------------------------- rounds


def test_a_static_round_reads_the_records_once_and_connects_to_no_host(
    tmp_path: Path, listener: tuple[str, int]
) -> None:
    address, port = listener
    count = 30
    path = write_config(tmp_path, static_config(tmp_path, count, address, port))
    engine = Engine(cfg.load(path))
    try:
        outcomes = deploy_all(engine)
        assert [o.status for o in outcomes] == ["succeeded"] * count, outcomes[0].message
        names = list(engine.config.services)
        with counting() as seen:
            verdicts = engine.check(names)
        assert [v.exit_code for v in verdicts] == [0] * count, verdicts[0].message
        # One read of the records for the whole round (the old code read them per host).
        assert len(opens(seen, "static/own.json")) <= 1
        # The probes' own connects, one per service; the provider adds none.
        assert connects(seen).count((address, port)) == count
        with counting() as seen:
            engine.check(names)
        assert opens(seen, "static/own.json") == []  # unchanged: not even read again
    finally:
        engine.close()


def test_a_local_round_reads_each_host_record_once(project: Path) -> None:
    count = 4
    listen = (
        '{python} -c "import socket, time; s = socket.socket(); '
        "s.bind(('{address}', {port})); s.listen(); time.sleep(600)\""
    )
    services = {
        f"s{i}": {
            "domain": f"s{i}.example.test",
            "port": free_port(),
            "run": {"command": listen},
            "health": {"interval": "30s", "timeout": "10s", "fall": 100, "rise": 1, "tcp": {}},
            "policy": {"ready_timeout": "60s"},
        }
        for i in range(count)
    }
    data = {
        "version": 1,
        "dns": {"type": "local", "zone": "example.test", "ttl": 5},
        "providers": [{"name": "alpha", "type": "local"}],
        "services": services,
    }
    path = write_config(project, data)
    engine = Engine(cfg.load(path))
    try:
        outcomes = deploy_all(engine)
        assert [o.status for o in outcomes] == ["succeeded"] * count, outcomes[0].message
        rows = engine.store.services(list(services))
        hosts = {r.active["host_id"]: r.active["address"] for r in rows.values() if r.active}
        with counting() as seen:
            verdicts = engine.check(list(services))
        assert [v.exit_code for v in verdicts] == [0] * count, verdicts[0].message
        read = opens(seen, "host.json")
        assert sorted(Path(p).parent.name for p in read) == sorted(hosts)  # each once
        for address in hosts.values():  # the probe's connect, none for the provider's word
            assert len([a for a in connects(seen) if a[0] == address]) == 1
    finally:
        engine.close()


def test_deploy_of_one_service_among_500_connects_to_its_port_only(
    tmp_path: Path, listener: tuple[str, int]
) -> None:
    address, port = listener
    data = static_config(tmp_path, 500, address, None)
    data["services"]["s7"]["port"] = port  # the one that runs on the machine
    path = write_config(tmp_path, data)
    engine = Engine(cfg.load(path))
    try:
        with counting() as seen:
            outcome = engine.run("s7", "deploy", reason="deploy")
        assert outcome.status == "succeeded", outcome.message
        ports = {p for a, p in connects(seen) if a == address}
        assert ports == {port}  # the old check_account connected to all 500
    finally:
        engine.close()


def test_a_move_asks_a_static_provider_about_its_service_only(tmp_path: Path) -> None:
    from providers.base import ProviderContext
    from providers.static import StaticProvider
    from providers.static import StaticSettings

    settings = StaticSettings.model_validate(
        {"name": "own", "type": "static", "machines": [{"address": "127.0.0.1"}]}
    )
    ports = {f"s{i}": free_port() for i in range(50)}
    p = StaticProvider(settings, ProviderContext(tmp_path, ports=ports))
    with counting() as seen:
        assert p.check_account().state == "available"
        assert connects(seen) == []
        assert p.check_service("s3", ports["s3"]).state == "unknown"  # nothing listens
    assert connects(seen) == [("127.0.0.1", ports["s3"])]


def test_static_records_written_by_another_process_are_seen(
    tmp_path: Path, listener: tuple[str, int]
) -> None:
    from providers.base import HostSpec
    from providers.base import ProviderContext
    from providers.base import RunSpec
    from providers.static import StaticProvider
    from providers.static import StaticSettings

    address, port = listener
    settings = StaticSettings.model_validate(
        {"name": "own", "type": "static", "machines": [{"address": address}]}
    )
    p = StaticProvider(settings, ProviderContext(tmp_path))
    host = p.create_host(HostSpec("web-g1-own", "web", 1, port, RunSpec("x")))
    assert p.get_hosts([host.id])[host.id] is not None
    # Another process releases it (the same file, rewritten as a whole).
    doc = json.loads(p.path.read_text())
    doc["hosts"][host.id]["released"] = True
    write_private(p.path, json.dumps(doc))
    found = p.get_hosts([host.id])[host.id]
    assert found is not None and found.state.gone


# --------------------------------------------------------------------------- deploy --all


def test_deploy_all_deploys_what_is_not_live_and_says_so_per_service(
    tmp_path: Path, listener: tuple[str, int]
) -> None:
    address, port = listener
    data = static_config(tmp_path, 5, address, port)
    data["services"]["s3"]["port"] = free_port()  # nothing answers there
    data["services"]["s3"]["policy"]["ready_timeout"] = "2s"
    path = write_config(tmp_path, data)
    failover("deploy", "s0", config=path, check=True)
    run = failover("deploy", "--all", "--json", config=path, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    doc = json.loads(run.stdout)["services"]
    assert [d["service"] for d in doc] == ["s0", "s1", "s2", "s3", "s4"]
    statuses = [d["status"] for d in doc]
    assert statuses == ["noop", "succeeded", "succeeded", "failed", "succeeded"], [
        d["message"] for d in doc
    ]
    again = failover("deploy", "--all", config=path, timeout=300)
    lines = again.stdout.splitlines() + again.stderr.splitlines()
    assert len([line for line in lines if line.startswith("s")]) == 5, lines
    assert again.returncode == 1  # s3 still cannot be deployed
    assert failover("deploy", "s1", "--all", config=path).returncode == 2


def test_an_interrupted_deploy_all_is_finished_by_the_next_check(tmp_path: Path) -> None:
    """README "Deploying many": Ctrl-C stops each deploy before its next step and exits
    130; the next `check` finishes every one (one live host each, nothing in_progress)."""
    data = base_config(run={"command": f"sleep 2; {APP}"})
    web = data["services"].pop("web")
    data["services"] = {f"s{i}": {**web, "domain": f"s{i}.example.test"} for i in range(4)}
    config = write_config(tmp_path, data)
    proc = subprocess.Popen(
        [FAILOVER, "deploy", "--all", "-c", str(config)],
        env=env_for(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(lambda: live_hosts(config), timeout=120, what="a host of the deploys")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "`failover history` shows" in err
        wait_for(
            lambda: failover("check", config=config, timeout=300).returncode == 0,
            timeout=300,
            what="check to finish the deploys",
        )
        events = failover_json("history", "--limit", "100", config=config)["events"]
        assert not [e for e in events if e["status"] == "in_progress"], events
        status = failover_json("status", config=config)["services"]
        assert all(s["active"] for s in status), status
        assert len(live_hosts(config)) == 4
    finally:
        if proc.poll() is None:
            proc.kill()
        cleanup(config)


# --------------------------------------------------------------------------- config


def big_config(count: int) -> dict[str, Any]:
    services = {
        f"svc-{i}": {
            "domain": f"svc-{i}.example.test",
            "port": 8000 + i % 1000,
            "run": {
                "command": "exec ./serve --port {port} --bind {address}",
                "setup": ["mkdir -p data", "./migrate"],
                "env": {"MODE": "production", "REGION": "eu"},
            },
            "health": {
                "interval": "5s",
                "timeout": "2s",
                "fall": 3,
                "rise": 2,
                "http": {"path": "/health", "expect_status": [200, 204]},
                "tcp": {},
            },
            "policy": {
                "ready_timeout": "300s",
                "max_moves_per_hour": 3,
                "fence": "stop",
                "providers": ["alpha", "beta"],
            },
        }
        for i in range(count)
    }
    return {
        "version": 1,
        "dns": {"type": "local", "zone": "example.test", "ttl": 30},
        "providers": [{"name": "alpha", "type": "local"}, {"name": "beta", "type": "local"}],
        "services": services,
    }


@functools.cache
def big_text(count: int) -> str:
    """``yaml.safe_dump(big_config(count))``, written in milliseconds: the dumper took as
    long over 10,000 services as the parse under test. One service is dumped, and its
    name and port are filled in for every service (the test below checks the text is the
    dumper's own); cached, so the 10,000 services are written once per session."""
    one = yaml.safe_dump(big_config(1), sort_keys=False)
    head, _, block = one.partition("services:\n")
    name, port = block.split("svc-0"), block.split("port: 8000\n")
    assert len(name) == 3 and len(port) == 2, block  # svc-0: and svc-0.example.test
    body = "".join(
        block.replace("svc-0", f"svc-{i}").replace("port: 8000\n", f"port: {8000 + i % 1000}\n")
        for i in range(count)
    )
    return f"{head}services:\n{body}"


def test_ten_thousand_services_with_full_settings_validate() -> None:
    assert big_text(12) == yaml.safe_dump(big_config(12), sort_keys=False)
    text = big_text(10_000)
    conf = cfg.parse(text)
    assert len(conf.services) == 10_000
    assert conf.services["svc-9999"].health.http is not None


def test_honest_anchors_over_many_services_load() -> None:
    """The first service's settings merged into every other: aliases, no blow-up."""
    lines = [
        "version: 1",
        "dns: {type: local, zone: example.test}",
        "providers: [{name: alpha, type: local}]",
        "services:",
        "  s0: &d",
        "    domain: s0.example.test",
        "    port: 8080",
        "    run: {command: 'exec ./serve {port}', setup: [a, b, c], env: {A: x, B: y}}",
        "    health: {interval: 5s, timeout: 2s, fall: 3, rise: 2, http: {path: /h}}",
        "    policy: {ready_timeout: 300s, max_moves_per_hour: 3, fence: stop}",
    ]
    lines += [f"  s{i}: {{<<: *d, domain: s{i}.example.test}}" for i in range(1, 10_000)]
    conf = cfg.parse("\n".join(lines) + "\n")
    assert len(conf.services) == 10_000
    assert conf.services["s9999"].policy.fence == "stop"


@pytest.mark.parametrize("services", [1, 10_000])
def test_an_alias_bomb_is_still_refused(services: int) -> None:
    bomb = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    bomb += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 9)]
    text = "\n".join(bomb) + "\n" + big_text(services)
    with pytest.raises(ConfigError, match="too large") as caught:
        cfg.parse(text)
    assert "expand to" in str(caught.value)


def test_the_parsed_config_is_kept_and_follows_the_text(tmp_path: Path) -> None:
    data = big_config(3)
    path = write_config(tmp_path, data)
    (tmp_path / ".failover").mkdir()
    assert cfg.load(path).services["svc-0"].port == 8000
    kept = tmp_path / ".failover" / "config.parsed.json"
    assert json.loads(kept.read_text())["document"] == data
    data["services"]["svc-0"]["port"] = 9000
    write_config(tmp_path, data)
    assert cfg.load(path).services["svc-0"].port == 9000  # another text: parsed again
    # The same text takes the kept document (doctored here to tell it apart); any
    # change of the text, a blank line even, parses it again.
    doc = json.loads(kept.read_text())
    doc["document"]["services"]["svc-0"]["port"] = 1
    kept.write_text(json.dumps(doc))
    assert cfg.load(path).services["svc-0"].port == 1
    path.write_text(path.read_text() + "\n")
    assert cfg.load(path).services["svc-0"].port == 9000


# --------------------------------------------------------------------------- ssh


def test_an_ssh_round_sends_one_script_per_machine(running_sshd: Any, tmp_path: Path) -> None:
    """Counted at the provider's own call that runs a script on a machine."""
    from tests.test_ssh import NET
    from tests.test_ssh import kill_hosts
    from tests.test_ssh import machine
    from tests.test_ssh import make
    from tests.test_ssh import settings
    from tests.test_ssh import spec
    from tests.test_ssh import wait_state

    closed = {**machine(running_sshd, tmp_path, 3), "ssh": f"root@127.0.0.1:{free_port()}"}
    p = make(
        settings(
            running_sshd,
            tmp_path,
            machine(running_sshd, tmp_path, 1),
            machine(running_sshd, tmp_path, 2),
            closed,
        ),
        tmp_path,
    )
    try:
        host = p.create_host(spec())
        from providers.base import HostState

        wait_state(p, host.id, HostState.RUNNING)
        sent: list[str] = []
        script = p.net.sh

        async def counted(m: Any, text: str, timeout: float) -> tuple[int, str, str]:
            sent.append(m.name)
            return await script(m, text, timeout)

        p.net.sh = counted  # type: ignore[method-assign]
        phantoms = [f"{NET}.{m}/svc{i}/0000000{i}" for m in (1, 2) for i in range(5)]
        beyond = f"{NET}.3/svc9/00000009"
        found = p.get_hosts([host.id, *phantoms, beyond])
        assert sorted(sent) == ["m1", "m2", "m3"]  # one script per machine, not per host
        assert found[host.id] is not None and found[host.id].state == HostState.RUNNING
        assert all(found[h] is None for h in phantoms)  # folders not there: no such host
        assert beyond not in found  # its machine did not answer: cannot tell, not gone
        p.destroy_host(host.id)
    finally:
        p.close()
        kill_hosts(tmp_path)


# --------------------------------------------------------------------------- metrics


def test_watch_publishes_the_round_duration_and_reads_rows_only_when_they_change(
    tmp_path: Path, listener: tuple[str, int]
) -> None:
    from failover.watch import Metrics

    address, port = listener
    path = write_config(tmp_path, static_config(tmp_path, 20, address, port))
    engine = Engine(cfg.load(path))
    metrics = Metrics(free_port(), "127.0.0.1")
    try:
        assert all(o.ok for o in deploy_all(engine))
        names = list(engine.config.services)
        metrics.publish(engine, engine.check(names), 1.25)
        assert metrics.registry.get_sample_value("failover_round_duration_seconds") == 1.25
        assert metrics.registry.get_sample_value("failover_generation", {"service": "s3"}) == 1
        results = engine.check(names)
        statements: list[str] = []
        engine.store.db.set_trace_callback(statements.append)  # type: ignore[attr-defined]
        metrics.publish(engine, results, 0.5)
        engine.store.db.set_trace_callback(None)  # type: ignore[attr-defined]
        assert metrics.registry.get_sample_value("failover_round_duration_seconds") == 0.5
        rounds = metrics.registry.get_sample_value(
            "failover_rounds_total", {"service": "s3", "exit_code": "0"}
        )
        assert rounds == 2
        # Nothing moved (the journal's newest entry is unchanged): the services' rows are
        # not read again, where publishing used to read three things per service.
        assert [q for q in statements if "FROM services" in q] == []
        assert len(statements) <= 3, statements
    finally:
        metrics.close()
        engine.close()


def test_a_quiet_round_reads_the_state_in_a_few_statements_and_the_zone_once(
    tmp_path: Path, listener: tuple[str, int]
) -> None:
    """One watcher, 40 healthy services: the round's SQL does not grow with them (the
    old round settled each service: two reads apiece, and read each row alone), and a
    DNS audit of every record reads the local zone file once (it was once per record)."""
    from failover.engine import dnssync

    address, port = listener
    counts = {}
    for count in (10, 40):
        (tmp_path / str(count)).mkdir()
        path = write_config(tmp_path / str(count), static_config(tmp_path, count, address, port))
        engine = Engine(cfg.load(path))
        try:
            outcomes = deploy_all(engine)
            assert [o.status for o in outcomes] == ["succeeded"] * count, outcomes[0].message
            names = list(engine.config.services)
            engine.check(names)  # the first round audits DNS; the next is a quiet one
            statements: list[str] = []
            engine.store.db.set_trace_callback(statements.append)  # type: ignore[attr-defined]
            verdicts = engine.check(names)
            engine.store.db.set_trace_callback(None)  # type: ignore[attr-defined]
            assert [v.exit_code for v in verdicts] == [0] * count, verdicts[0].message
            # The counters go in one executemany (traced once per row it writes).
            written = [s for s in statements if s.startswith("UPDATE services SET failures")]
            assert len(written) == count
            counts[count] = len(statements) - len(written)
            with counting() as seen:
                synced = dnssync.sync(engine, names)
            assert [s.ok() for s in synced] == [True] * count
            assert len(opens(seen, "example.test.json")) <= 1
        finally:
            engine.close()
    assert counts[40] == counts[10] and counts[40] < 20, counts
