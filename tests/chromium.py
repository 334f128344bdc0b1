"""Debian's chromium, headless, as the status page's reader.

Every run gets its own profile, a proxy on a dead loopback port and a resolver that
knows no name: the browser's own background traffic (update checks, account probes)
never leaves the machine. What the page did is read from three places: the DOM after
load (``--dump-dom``), the console (CSP violations and errors are logged there) and the
NetLog, where every request the page started carries the page's origin as initiator.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import ROOT
from tests.conftest import need_binary

SCREENSHOTS = ROOT / "build" / "screenshots"  # kept by CI as an artifact
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-pings",
    "--disable-domain-reliability",
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--enable-logging=stderr",
    "--v=0",
]


@dataclass
class Loaded:
    dom: str
    console: list[str]  # what the page logged (errors, CSP violations)
    requests: list[tuple[str, str]]  # (initiator, url) of every request a page started


def _browser() -> str:
    return need_binary("chromium")


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_browser(), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def load(url: str) -> Loaded:
    """``url`` loaded once: its DOM, its console, the requests it made."""
    with tempfile.TemporaryDirectory(prefix="failover-chromium-") as tmp:
        netlog = Path(tmp) / "net.json"
        proc = _run([f"--log-net-log={netlog}", "--dump-dom", url], Path(tmp) / "profile")
        assert proc.returncode == 0, proc.stderr[-2000:]
        console = re.findall(r":CONSOLE[^\]]*\] (.*)", proc.stderr)
        return Loaded(proc.stdout, console, _page_requests(netlog))


def _page_requests(netlog: Path) -> list[tuple[str, str]]:
    doc = json.loads(netlog.read_text())
    out = []
    for event in doc.get("events", []):
        params = event.get("params") or {}
        initiator = params.get("initiator")
        if "url" in params and initiator and initiator != "not an origin":
            out.append((str(initiator), str(params["url"])))
    return out


def screenshot(url: str, name: str, width: int, height: int = 2400) -> Path:
    """A PNG of ``url`` at ``width`` CSS pixels, written under build/screenshots/.

    Headless chromium's window is never narrower than 500 pixels: a phone's width is
    given to the page by an iframe of that width (its media queries see the iframe)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{width}.png"
    with tempfile.TemporaryDirectory(prefix="failover-chromium-") as tmp:
        frame = Path(tmp) / "frame.html"
        frame.write_text(
            '<!doctype html><body style="margin:0">'
            f'<iframe src="{url}" style="width:{width}px;height:{height}px;border:0"></iframe>'
        )
        size = f"--window-size={max(width, 500)},{height}"
        proc = _run(
            [size, f"--screenshot={path}", "--hide-scrollbars", frame.as_uri()],
            Path(tmp) / "profile",
        )
    assert proc.returncode == 0 and path.stat().st_size > 1000, proc.stderr[-2000:]
    return path


_ATTR = re.compile(r"""\b(?:src|href|action|srcset|poster|data)\s*=\s*["']?([^"'\s>]+)""", re.I)
_CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)""", re.I)


def foreign_references(html: str, origin: str = "") -> list[str]:
    """Every address in ``html`` (attributes, CSS ``url()``, ``@import``) that is not a
    fragment of the page itself or on ``origin``."""
    found = _ATTR.findall(html) + _CSS_URL.findall(html) + re.findall(r"@import", html)
    out = []
    for ref in found:
        if ref.startswith("#"):
            continue
        parts = urlsplit(ref)
        if origin and f"{parts.scheme}://{parts.netloc}" == origin:
            continue
        out.append(ref)
    return out


_MEASURE = (
    "<script>addEventListener('load', () => parent.postMessage("
    "[document.documentElement.scrollWidth, document.documentElement.clientWidth], '*'))"
    "</script>"
)


def overflow(html: str, width: int) -> tuple[int, int]:
    """How wide ``html`` lays out in a viewport ``width`` CSS pixels wide (a phone's):
    (its content's width, the viewport's). A copy of the page gets a measuring script
    (the page itself has none, and its policy forbids one) and is shown in an iframe of
    that width, which posts the figures to its frame; ``--dump-dom`` reads them there."""
    with tempfile.TemporaryDirectory(prefix="failover-chromium-") as tmp:
        page = Path(tmp) / "page.html"
        policy = re.compile(r'<meta http-equiv="Content-Security-Policy"[^>]*>')
        page.write_text(policy.sub("", html).replace("</body>", _MEASURE + "</body>"))
        frame = Path(tmp) / "frame.html"
        frame.write_text(
            '<!doctype html><body style="margin:0"><pre id="seen">none</pre><script>'
            "addEventListener('message', e => "
            "{ document.getElementById('seen').textContent = JSON.stringify(e.data) })"
            f'</script><iframe src="{page.as_uri()}" style="width:{width}px;height:900px;'
            'border:0"></iframe>'
        )
        proc = _run(
            ["--window-size=500,1000", "--virtual-time-budget=5000", "--dump-dom", frame.as_uri()],
            Path(tmp) / "profile",
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = re.search(r'<pre id="seen">\[(\d+),(\d+)\]</pre>', proc.stdout)
    assert seen, proc.stdout[:2000]
    return int(seen.group(1)), int(seen.group(2))
