"""Publishing the status page: after the step, in the background, to every listed store.

Publishing is a delivery, as notifications are (:mod:`failover.delivery`): the engine
asks for it (after each journaled step, after a round whose verdicts changed) and goes
on at once. One worker thread renders the page from its own engine (its own store
connection); each store then gets the newest page on a lane of its own, so a store that
hangs holds up neither a step nor the other stores. Requests coalesce: however many
steps happen while a page is being made, one more page follows, drawn from the journal
as it is then. A store that failed is tried again after the next round.

``watch`` serves the last page made (``latest``) at ``/`` and ``/status.json``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

from failover.redact import redact

if TYPE_CHECKING:
    from failover.config import Config
    from failover.data.meter import Transfer
    from failover.data.stores import Store
    from failover.engine import Engine
    from failover.engine.health import Verdict

HTML = "text/html; charset=utf-8"
JSON = "application/json"
_CLOSE_CAP = 20.0  # the longest a one-shot command waits for its pages at exit
# A page nothing changed on is still published this often: its time tells its readers
# that a watcher is alive.
HEARTBEAT = 300.0
# While a backup or a restore runs, its progress is republished at most this often.
TRANSFER_EVERY = 5.0


class Publisher:
    def __init__(self, config: Config, log: Callable[[str], None], owner: Engine | None) -> None:
        self.config = config
        self.log = log
        self.owner = owner  # the engine that closes it (its siblings share it)
        page = getattr(config, "status_page", None)
        self.prefix = page.prefix if page else ""
        settings = {s.name: s for s in config.stores}
        self.settings = [settings[n] for n in (page.stores if page else []) if n in settings]
        self.serving = False  # `watch --metrics-port`: keep the page for its HTTP server
        self.latest: tuple[bytes, bytes] | None = None  # (index.html, status.json)
        self.failed: dict[str, str] = {}  # store -> why its last write failed
        self.written: dict[str, int] = {}  # store -> pages written (tests, metrics)
        self._cv = threading.Condition()
        self._requested = False
        self._busy = 0  # a page being made, or a store being written
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lanes: set[str] = set()  # stores a writer thread is running for
        self._queued: set[str] = set()  # stores owed the newest page
        self._stores: dict[str, Store] = {}
        self._seen: dict[str, tuple[str, int]] = {}
        self._made = 0.0  # monotonic time of the last page
        self._transfers: dict[tuple[str, str], Transfer] = {}  # the copies under way
        self._transferred = 0.0  # monotonic time of the last page asked for by one

    @property
    def active(self) -> bool:
        return bool(self.settings) or self.serving

    # ------------------------------------------------------------ the engine's side

    def request(self) -> None:
        """Make and publish the page again, soon; returns at once."""
        if not self.active or self.owner is None:
            return
        with self._cv:
            self._requested = True
            self._cv.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="failover-status-page", daemon=True
                )
                self._thread.start()

    def transfer(self, report: Transfer) -> None:
        """A backup's or a restore's progress: drawn on the next page, and a page asked
        for at its start and end and at most every ``TRANSFER_EVERY`` seconds between."""
        key = (report.service, report.kind)
        now = time.monotonic()
        with self._cv:
            known = key in self._transfers
            if report.finished:
                self._transfers.pop(key, None)
            else:
                self._transfers[key] = report
            due = not known or report.finished or now - self._transferred >= TRANSFER_EVERY
            if due:
                self._transferred = now
        if due:
            self.request()

    def transfers(self) -> dict[str, list[Transfer]]:
        """The copies under way in this process, by service."""
        out: dict[str, list[Transfer]] = {}
        with self._cv:
            for (service, _kind), report in sorted(self._transfers.items()):
                out.setdefault(service, []).append(report)
        return out

    def round(self, verdicts: Iterable[Verdict]) -> None:
        """A round ended: publish when a verdict changed, or a store is owed a page."""
        changed = False
        for verdict in verdicts:
            seen = (str(verdict.state), int(verdict.exit_code))
            changed |= self._seen.get(verdict.service) != seen
            self._seen[verdict.service] = seen
        if changed or self.failed or time.monotonic() - self._made > HEARTBEAT:
            self.request()

    def drain(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until the page asked for is made and written."""
        end = time.monotonic() + timeout
        with self._cv:
            while self._requested or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self) -> None:
        """Let the page in flight reach the stores (bounded), then stop."""
        if self._thread is None:
            return
        budget = sum(float(s.retry_max_time) for s in self.settings)
        if not self.drain(min(_CLOSE_CAP, max(5.0, budget))):
            self.log("status page: gave up waiting for a store; it gets the page next time")
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=5.0)
        self._thread = None
        with self._cv:
            self._queued.clear()
            stores, self._stores = self._stores, {}
        for name, store in stores.items():
            if name not in self._lanes:  # a hanging one is left to its daemon thread
                store.close()

    # ------------------------------------------------------------ the worker's side

    def _work(self) -> None:
        assert self.owner is not None
        engine: Engine | None = None
        try:
            while True:
                with self._cv:
                    while not self._requested and not self._stop:
                        self._cv.wait()
                    if not self._requested:
                        return
                    self._requested = False
                    self._busy += 1
                try:
                    engine = engine or self.owner.sibling()
                    self._make(engine)
                except Exception as exc:  # the next request may well succeed
                    self.log(redact(f"status page: {type(exc).__name__}: {exc}"))
                finally:
                    self._done()
        finally:
            if engine is not None:
                engine.close()

    def _make(self, engine: Engine) -> None:
        from failover.redact import redact_doc
        from failover.statuspage import page_of

        self._made = time.monotonic()
        html, doc = page_of(engine, list(self.config.services), refresh=False)
        body = json.dumps(redact_doc(doc), indent=2, default=str) + "\n"
        self.latest = (html.encode(), body.encode())
        for settings in self.settings:
            self._hand(settings.name)

    def _hand(self, name: str) -> None:
        """Owe ``name`` the newest page; its writer thread (started when it has none)
        writes one page at a time, always the newest. Daemon threads: a store that hangs
        must not keep a one-shot command from exiting."""
        with self._cv:
            if name in self._queued:
                return
            self._queued.add(name)
            self._busy += 1
            if name in self._lanes:
                return
            self._lanes.add(name)
        threading.Thread(
            target=self._lane, args=(name,), name=f"failover-page-{name}", daemon=True
        ).start()

    def _lane(self, name: str) -> None:
        while True:
            with self._cv:
                if name not in self._queued:
                    self._lanes.discard(name)
                    return
                self._queued.discard(name)
            self._write(name)

    def _write(self, name: str) -> None:
        try:
            assert self.latest is not None
            html, body = self.latest
            store = self._store(name)
            store.put_object(self.prefix + "status.json", body, JSON)
            store.put_object(self.prefix + "index.html", html, HTML)
        except Exception as exc:  # a store's failure is reported, never raised
            why = redact(str(exc) or type(exc).__name__)
            if self.failed.get(name) != why:
                self.log(f"status page: store {name}: {why}; tried again next round")
            self.failed[name] = why
        else:
            self.failed.pop(name, None)
            self.written[name] = self.written.get(name, 0) + 1
        finally:
            self._done()

    def _store(self, name: str) -> Store:
        from failover.data.stores import open_store

        if name not in self._stores:
            self._stores[name] = open_store(next(s for s in self.settings if s.name == name))
        return self._stores[name]

    def _done(self) -> None:
        with self._cv:
            self._busy -= 1
            self._cv.notify_all()


def serve_pages(server: Any, latest: Callable[[], tuple[bytes, bytes] | None]) -> None:
    """Make ``server`` (the metrics endpoint's WSGI server) answer ``/`` with the status
    page and ``/status.json`` with its document; every other path stays the metrics."""
    metrics = server.get_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path not in ("/", "/index.html", "/status.json"):
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        pages = latest()
        if pages is None:
            headers = [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "2")]
            start_response("503 Service Unavailable", headers)
            return [b"the status page is being made; try again in a moment\n"]
        body, kind = (pages[1], JSON) if path == "/status.json" else (pages[0], HTML)
        start_response(
            "200 OK",
            [
                ("Content-Type", kind),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-cache"),
            ],
        )
        return [body]

    server.set_app(app)
