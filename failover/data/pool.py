"""One service's chunk pool in one store: the chunks, the index of their names, the
markers of writers at work, and garbage collection. Layout::

    _dedup/<service>/chunks/<name>                   a chunk (failover.data.chunks)
    _dedup/<service>/index.json                      the names the store holds
    _dedup/<service>/writing/<until>-<backup id>     a backup or copy in progress
    _dedup/<service>/collecting/<until>-<token>      a collection in progress

(``_`` starts no service's name.) The index says what the store holds without listing
it for each backup; it carries a proof like a manifest's, and one that is missing, does
not parse or does not verify is rebuilt from the store's listing (collection rewrites it
from the listing every time it removes chunks, so a chunk deleted by hand is sent again
after the next one).

The guarantee that collection never removes a chunk a backup in progress may reference,
whichever watcher or host runs either (README, "Data"): a writer stores its marker
*before* it reads the index or writes a chunk, then waits until no collection is
running; a collector stores its marker, then looks for writers, and removes nothing
while any writer's marker is live. Each side writes before it reads, so with a store
that reads its own writes (every kind here) at least one sees the other: either the
collector stops, or the writer waits for the collector to finish (and then reads the
index it left). A marker is live until the time in its name: a writer's is its timeout
plus a margin, and a writer past it stores no manifest; a collector stops deleting at
its own. A crashed writer thus holds collection back for at most its timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from collections.abc import Iterable

from failover.data.manifest import Keys
from failover.data.stores import Store
from providers.base import NotFound
from providers.base import ProviderError

ROOT = "_dedup"
INDEX = "index.json"
MARGIN = 600.0  # beyond a writer's timeout: finishing, storing the manifest
COLLECT_BOUND = 300.0  # a collection stops deleting after this long
_NAME = re.compile(r"^[0-9a-f]{64}$")
_MARK = re.compile(r"^([0-9]{10})-([0-9A-Za-z.\-]{1,64})$")


def chunk_path(service: str, name: str) -> str:
    return f"{ROOT}/{service}/chunks/{name}"


class Pool:
    def __init__(self, store: Store, service: str, keys: Keys) -> None:
        self.store, self.service, self.keys = store, service, keys
        self.base = f"{ROOT}/{service}"

    # ------------------------------------------------------------------ index

    def _proof(self, names: list[list[object]]) -> str:
        body = json.dumps([self.service, names], separators=(",", ":")).encode()
        if self.keys.enabled:
            return "hmac-sha256:" + hmac.new(self.keys.index_mac, body, "sha256").hexdigest()
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def listed(self) -> list[str]:
        prefix = f"{self.base}/chunks/"
        return [k[len(prefix) :] for k in self.store.list(prefix) if _NAME.match(k[len(prefix) :])]

    def index(self) -> dict[str, int]:
        """The names the store holds and their stored sizes (0: not known, rebuilt from
        the listing)."""
        try:
            doc = json.loads(self.store.get(f"{self.base}/{INDEX}"))
            names = doc["chunks"]
            if hmac.compare_digest(str(doc["auth"]), self._proof(names)):
                return {str(n): int(size) for n, size in names if _NAME.match(str(n))}
        except NotFound:
            pass
        except (ValueError, KeyError, TypeError):
            pass  # not ours, damaged or forged: the listing says the truth
        return dict.fromkeys(self.listed(), 0)

    def save(self, names: dict[str, int]) -> None:
        entries: list[list[object]] = [[n, names[n]] for n in sorted(names)]
        doc = {"chunks": entries, "auth": self._proof(entries)}
        self.store.put(f"{self.base}/{INDEX}", json.dumps(doc, separators=(",", ":")).encode())

    def record(self, added: dict[str, int]) -> None:
        """Add ``added`` to the index (read again: another writer may have added some;
        written even with nothing added: a lost index is stored rebuilt)."""
        self.save(self.index() | added)

    # ---------------------------------------------------------------- markers

    def _live(self, kind: str, now: float, mine: str = "") -> list[str]:
        out = []
        for key in self.store.list(f"{self.base}/{kind}/"):
            found = _MARK.match(key.rsplit("/", 1)[-1])
            if key == mine:
                continue
            if found and int(found.group(1)) > now:
                out.append(key)
            else:
                self.store.delete(key)  # expired: one that died
        return out

    def begin(self, tag: str, until: float) -> str:
        """A writer's marker, stored before anything else; then wait (within
        ``COLLECT_BOUND``) until no collection runs. Returns the marker's key."""
        key = f"{self.base}/writing/{int(until):010d}-{tag}"
        self.store.put(key, b"")
        waited = time.monotonic()
        while self._live("collecting", time.time()):
            if time.monotonic() - waited > COLLECT_BOUND:
                self.store.delete(key)
                raise self.store.error(f"a chunk collection in {self.base} does not end")
            time.sleep(0.2)
        return key

    def end(self, key: str) -> None:
        self.store.delete(key)

    # ------------------------------------------------------------- collection

    def collect(self, references: Callable[[], set[str] | None]) -> list[str]:
        """Remove the chunks no manifest references (``references()``, asked after no
        writer was seen; None: not known, remove nothing). Nothing while a writer or
        another collection is at work. The names removed."""
        now = time.time()
        mine = f"{self.base}/collecting/{int(now + COLLECT_BOUND):010d}-{secrets.token_hex(4)}"
        self.store.put(mine, b"")
        try:
            if self._live("writing", now) or self._live("collecting", now, mine):
                return []
            wanted = references()
            if wanted is None:
                return []
            held, sizes = self.listed(), self.index()
            doomed = [n for n in held if n not in wanted]
            if not doomed and set(sizes) <= set(held):
                return []  # nothing to remove, and the index names nothing that is gone
            # The index goes first (none is read as the listing): it must never name a
            # chunk that is gone, and on a full disk its rewrite may only fit after.
            self.store.delete(f"{self.base}/{INDEX}")
            removed = self._remove(doomed, now + COLLECT_BOUND - 30)
            with contextlib.suppress(ProviderError):
                self.save({n: sizes.get(n, 0) for n in held if n not in removed})
            return removed
        finally:
            self.store.delete(mine)

    def _remove(self, names: Iterable[str], stop: float) -> list[str]:
        removed = []
        for name in names:
            if time.time() > stop:
                break  # our marker expires: a writer may start trusting the pool
            self.store.delete(chunk_path(self.service, name))
            removed.append(name)
        return removed

    def held_bytes(self) -> int:
        """The stored bytes of the pool as its index knows them."""
        return sum(self.index().values())


def safe_collect(pool: Pool, references: Callable[[], set[str] | None]) -> list[str]:
    """Collection as a courtesy (after a failed backup): never an error of its own."""
    try:
        return pool.collect(references)
    except ProviderError:
        return []
