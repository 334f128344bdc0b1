"""The status page (CONTRACT section 16): drawn from the documents, read by a real browser.

Chromium loads the page from a file and from ``watch``'s port; the tests read the DOM
it rendered, its console and the requests the page made (none may leave for another
origin), and leave screenshots at a phone's and a desktop's width in build/screenshots/
(kept by CI; not compared pixel by pixel).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from failover.statuspage import optional_file
from failover.statuspage import render_page
from tests.chromium import foreign_references
from tests.chromium import load
from tests.chromium import overflow
from tests.chromium import screenshot
from tests.helpers import FAILOVER
from tests.helpers import base_config
from tests.helpers import env_for
from tests.helpers import failover
from tests.helpers import failover_json
from tests.helpers import kill_active
from tests.helpers import wait_for
from tests.helpers import write_config

pytestmark = pytest.mark.timeout(300)

HOSTILE = '<script>alert("x")</script>'
STEP_NAMES = ("provision", "wait_ready", "restore", "verify", "cutover", "fence")


def hostile_documents() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    service = f"web{HOSTILE}"
    doc = {
        "services": [
            {
                "service": service,
                "domain": "www.example.test",
                "active": {
                    "provider": "beta",
                    "host_id": "h-1",
                    "address": "127.0.0.2",
                    "port": 80,
                },
                "health": {"state": "up", "last_check": "2026-12-04T20:00:00Z"},
                "dns": {"name": "www.example.test", "values": ["127.0.0.2"]},
                "generation": 2,
                "providers": [
                    {
                        "name": "alpha",
                        "type": "local",
                        "state": "blocked",
                        "reason": f"Zugang gesperrt ü 🚫 {HOSTILE} 'q' \"dq\"",
                    }
                ],
            }
        ]
    }
    events = [
        {
            "id": 7,
            "service": service,
            "kind": "failover",
            "status": "succeeded",
            "reason": f"down on alpha: {HOSTILE}",
            "from": {"provider": "alpha"},
            "to": {"provider": "beta"},
            "started_at": "2026-12-04T20:00:00Z",
            "duration_s": 3.0,
            "steps": [
                {
                    "name": "provision",
                    "status": "succeeded",
                    "started_at": "2026-12-04T20:00:00Z",
                    "duration_s": 1.0,
                    "detail": f"<img src=x onerror=alert(1)> {HOSTILE}",
                },
            ],
            "attempts": [{"provider": "gamma", "step": "restore", "result": f"exit 3: {HOSTILE}"}],
        }
    ]
    return doc, events


def test_hostile_names_and_messages_come_out_escaped(tmp_path: Path) -> None:
    doc, events = hostile_documents()
    html = render_page(doc, events, f"Status {HOSTILE}")
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&#39;q&#39;" in html and "Zugang gesperrt ü 🚫" in html
    page = tmp_path / "hostile.html"
    page.write_text(html, encoding="utf-8")
    seen = load(page.as_uri())
    # The browser shows the text as text: no element came out of it, nothing ran.
    assert "<script" not in seen.dom and "<img" not in seen.dom
    assert '&lt;script&gt;alert("x")&lt;/script&gt;' in seen.dom
    assert "Zugang gesperrt ü 🚫" in seen.dom
    assert seen.console == [] and seen.requests == []
    # Long words (a 64-character digest, names without spaces) wrap on a phone.
    events[0]["steps"][0]["detail"] += " sha256:" + "0123456789abcdef" * 4
    doc["services"][0]["domain"] = "www." + "long-name-" * 8 + "example.test"
    content, viewport = overflow(render_page(doc, events, f"Status {HOSTILE}"), 360)
    assert content == viewport


def test_fields_a_document_lacks_are_empty_cells_and_the_ones_it_has_are_drawn() -> None:
    bare = {"services": [{"service": "web"}, {"service": "api", "health": None, "dns": "odd"}]}
    html = render_page(bare, [], "Bare")
    assert "nowhere: no live host" in html and "Recovery point" not in html
    full = {
        "services": [
            {
                "service": "web",
                "health": {"state": "up"},
                "dns": {"name": "www.example.com", "values": ["192.0.2.1"]},
                "domains": [
                    {
                        "name": "www.example.com",
                        "providers": {
                            "own-ns": {"values": ["192.0.2.1"], "state": "in_sync"},
                            "cf": {"values": ["192.0.2.9"], "state": "lagging"},
                        },
                    },
                    {"name": "www.example.org", "providers": {"r53": {"state": "blocked"}}},
                ],
                "data": {"rpo_s": 4.2, "last_backup": {"id": "b1", "age_s": 3600}},
                "certificate": {"not_after": "2099-01-01T00:00:00Z"},
            }
        ]
    }
    html = render_page(full, [], "Full")
    for text in ("own-ns", "in_sync", "lagging", "www.example.org", "r53", "blocked"):
        assert text in html
    assert "4.20 s (newest archived write-ahead log)" in html
    assert "until 2099-01-01 00:00 UTC" in html
    # The certificate as `status` gives it (epoch seconds; CONTRACT section 13).
    from failover.certs_store import Certificate

    issued = Certificate("web", ["www.example.com"], "", "", "1a", 4070908800.0, "pebble")
    shown = render_page({"services": [{"service": "web", "certificate": issued.public()}]}, [], "C")
    assert "until 2099-01-01 00:00 UTC" in shown
    backups = {"services": [{"service": "web", "data": {"last_backup": {"id": "b1", "age_s": 90}}}]}
    assert "90 s (backup b1)" in render_page(backups, [], "B")


def test_status_html_without_a_file_goes_to_stdout() -> None:
    assert optional_file(["status", "--html"]) == ["status", "--html", "-"]
    assert optional_file(["status", "--html", "-c", "x"]) == ["status", "--html", "-", "-c", "x"]
    assert optional_file(["status", "--html", "p.html"]) == ["status", "--html", "p.html"]
    assert optional_file(["drill", "--html"]) == ["drill", "--html"]


def moved_with_a_failed_candidate(project: Path) -> Path:
    """web deployed on alpha, killed there; beta fails its restore, gamma takes it."""
    data = base_config()
    data["providers"].append({"name": "gamma", "type": "local"})
    data["services"]["web"]["run"]["restore"] = [
        'if [ "$FAILOVER_PROVIDER" = beta ]; then echo "no <b>disk</b> ü" >&2; exit 3; fi'
    ]
    data["status_page"] = {"title": "Example & Co status"}
    config = write_config(project, data)
    failover("deploy", config=config, check=True)
    kill_active(config)

    def moved() -> bool:
        failover("check", config=config)
        doc = failover_json("status", config=config)["services"][0]
        return bool(doc["active"] and doc["active"]["provider"] == "gamma")

    wait_for(moved, timeout=120, what="the failover to gamma")
    return config


def test_the_page_from_a_file_in_a_browser(project: Path) -> None:
    config = moved_with_a_failed_candidate(project)
    page = project / "status.html"
    failover("status", "--html", str(page), config=config, check=True)
    html = page.read_text(encoding="utf-8")
    assert foreign_references(html) == []
    printed = failover("status", "--html", config=config, check=True).stdout
    assert printed.startswith("<!doctype html>") and "from alpha to gamma" in printed
    seen = load(page.as_uri())
    assert "Example &amp; Co status" in seen.dom
    assert "gamma (127." in seen.dom  # where it lives now
    assert "failover of web from alpha to gamma" in seen.dom
    assert "attempt 1: beta" in seen.dom and "restore failed" in seen.dom
    assert "1. beta: failed at restore" in seen.dom and "2. gamma: succeeded" in seen.dom
    for step in STEP_NAMES:
        assert f'<th scope="row">{step}</th>' in seen.dom
    assert seen.console == [] and seen.requests == []
    content, viewport = overflow(html, 390)
    assert content == viewport  # a phone reads it without scrolling sideways
    for width in (390, 1280):
        screenshot(page.as_uri(), "status-page", width)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str) -> tuple[str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.headers["Content-Type"]), bytes(answer.read())
    except OSError:
        return "", b""


def test_watch_serves_the_page_and_the_document(project: Path) -> None:
    config = write_config(project, base_config())
    failover("deploy", config=config, check=True)
    port = free_port()
    proc = subprocess.Popen(
        [FAILOVER, "watch", "--metrics-port", str(port), "-c", str(config)],
        env=env_for(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: fetch(f"{base}/status.json")[0] == "application/json", timeout=60)
        doc = json.loads(fetch(f"{base}/status.json")[1])
        assert doc["services"][0]["active"]["provider"] == "alpha"
        kind, body = fetch(f"{base}/")
        assert kind == "text/html; charset=utf-8"
        assert foreign_references(body.decode(), base) == []
        seen = load(f"{base}/")
        assert "alpha (127." in seen.dom and "deploy of web to alpha" in seen.dom
        assert seen.console == []
        assert all(initiator == base for initiator, _url in seen.requests)
        assert b"failover_rounds_total" in fetch(f"{base}/metrics")[1]
        screenshot(f"{base}/", "status-page-watch", 390)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_status_page_names_stores_that_exist(project: Path) -> None:
    data = base_config()
    data["stores"] = [{"name": "offsite", "type": "dir", "path": str(project / "s")}]
    data["status_page"] = {"stores": ["offsite", "nowhere"]}
    proc = failover("validate", config=write_config(project, data))
    assert proc.returncode == 2
    assert "status_page.stores[1]: no store named 'nowhere'" in proc.stderr
    data["status_page"] = {"stores": ["offsite"], "prefix": "../up"}
    proc = failover("validate", config=write_config(project, data))
    assert proc.returncode == 2 and "status_page.prefix: a folder like" in proc.stderr
    data["status_page"] = {"stores": ["offsite"], "prefix": "/pages"}
    assert failover("validate", config=write_config(project, data)).returncode == 0


def test_each_step_is_a_bar_placed_after_the_one_before_and_as_long_as_it_took() -> None:
    from failover.statuspage import timeline

    at = "2026-01-01T00:00:0{}Z".format
    event = {
        "started_at": at(0),
        "duration_s": 10,
        "steps": [
            # Whole seconds in the journal: `b` "started" before `a` ended; it is laid after.
            {"name": "a", "status": "succeeded", "started_at": at(0), "duration_s": 4.5},
            {"name": "b", "status": "failed", "started_at": at(4), "duration_s": 5.5},
            {"name": "c", "status": "succeeded", "started_at": at(9), "duration_s": 0.0},
            {"name": "d", "status": "pending"},
        ],
        "attempts": [{"provider": "alpha", "step": "b", "result": "timed out"}],
    }
    rows = timeline(event, now=100.0)
    assert [(r["label"], r["x"], r["w"], r["cls"]) for r in rows if not r["candidate"]] == [
        ("a", 0.0, 45.0, "ok"),
        ("b", 45.0, 55.0, "bad"),
        ("c", 99.4, 0.6, "ok"),  # at the very end, still visible
        ("d", 99.4, 0.0, "unk"),
    ]
    event["steps"].insert(1, {"name": "provision", "status": "succeeded", "duration_s": 0})
    labels = [r["label"] for r in timeline(event, now=100.0)]
    assert labels == ["a", "attempt 1: alpha", "provision", "b", "c", "d"]


def _luminance(color: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else float(((c + 0.055) / 1.055) ** 2.4)

    r, g, b = (channel(int(color[i : i + 2], 16) / 255) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: str, bg: str) -> float:
    """WCAG 2's contrast ratio of two ``#rrggbb`` colours."""
    light, dark = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_text_colour_on_the_page_meets_wcag_aa_contrast_in_light_and_dark() -> None:
    doc, events = hostile_documents()
    html = render_page(doc, events, "Contrast")
    css = html[html.index("<style>") : html.index("</style>")]
    schemes = re.findall(r":root \{([^}]*)\}", css)
    assert len(schemes) == 2  # light, and dark (prefers-color-scheme)
    pairs: list[tuple[str, str, str]] = []
    for scheme in schemes:
        var = dict(re.findall(r"--([a-z]+): (#[0-9a-f]{6})", scheme))
        for text in ("fg", "muted"):
            pairs += [(text, var[text], var[bg]) for bg in ("bg", "card")]
    badges = re.findall(r"\.(ok|bad|warn|unk) \{ background: (#\w{6}); color: (#\w{6}); \}", css)
    assert {b[0] for b in badges} == {"ok", "bad", "warn", "unk"}
    pairs += [(name, fg, bg) for name, bg, fg in badges]
    candidates = re.findall(r"tr\.candidate th \{ color: (#\w{6}); \}", css)
    light, dark = (dict(re.findall(r"--([a-z]+): (#[0-9a-f]{6})", s)) for s in schemes)
    pairs += [
        ("candidate", candidates[0], light["card"]),
        ("candidate", candidates[1], dark["card"]),
    ]
    assert len(pairs) == 14
    # AA for normal text: 4.5 to 1.
    assert [(n, fg, bg) for n, fg, bg in pairs if contrast(fg, bg) < 4.5] == []
    # The page is navigable by headings and its tables by their headers.
    assert re.search(
        r"<h1>.*</h1>.*<h2 [^>]*>Services</h2>.*<h3>.*<h2 [^>]*>Last events", html, re.S
    )
    assert html.count('<th scope="col">') >= 9 and html.count("<caption") >= 2
