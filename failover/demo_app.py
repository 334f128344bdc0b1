"""The demo's web app: answers every request with which host and provider serve it, and
with ``--db PATH`` keeps a visit counter in SQLite, so the demo can show the data
following the service (without it, it keeps nothing and writes no file).

``GET /`` shows the counter, ``POST /`` adds one. ``dump DB`` writes the database
as SQL to stdout (the demo's ``data.backup``); ``load DB`` replaces it with the SQL on
stdin (its ``data.restore``), atomically: a cut stream leaves the old database as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10)
    db.execute("CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY, at TEXT)")
    return db


def visits(path: Path) -> int:
    # A connection per request: a restore replaces the file under a running app.
    with _connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM visits").fetchone()[0])


def visit(path: Path) -> int:
    with _connect(path) as db:
        db.execute("INSERT INTO visits (at) VALUES (datetime('now'))")
    return visits(path)


class Handler(BaseHTTPRequestHandler):
    db: Path | None = None

    def _answer(self, count: int | None) -> None:
        info: dict[str, object] = {
            "service": os.environ.get("FAILOVER_SERVICE", "?"),
            "provider": os.environ.get("FAILOVER_PROVIDER", "?"),
            "host": os.environ.get("FAILOVER_HOST_ID", "?"),
            "generation": os.environ.get("FAILOVER_GENERATION", "?"),
        }
        if count is not None:
            info["visits"] = count
        counter = f"<p>visits: {count}</p>\n" if count is not None else ""
        body = (
            f"<h1>served by {info['host']} on {info['provider']}</h1>\n"
            f"{counter}<pre>{json.dumps(info)}</pre>\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(visits(self.db) if self.db else None)

    def do_POST(self) -> None:
        self._answer(visit(self.db) if self.db else None)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops connections when many probes arrive at once.
    request_queue_size = 128
    daemon_threads = True


def dump(path: Path) -> None:
    """The database as SQL on stdout, line by line (never the whole in memory)."""
    with _connect(path) as db:
        for line in db.iterdump():
            sys.stdout.write(line + "\n")
    sys.stdout.flush()


def load(path: Path) -> None:
    """Replace the database with the SQL on stdin: built aside, renamed over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(path.name + ".restoring")
    fresh.unlink(missing_ok=True)
    script = sys.stdin.read()
    if not script.rstrip().endswith("COMMIT;"):
        # A stream cut short (the sender died): keep the database as it was.
        sys.exit("load: the dump is truncated (no final COMMIT); nothing changed")
    db = sqlite3.connect(fresh)
    try:
        db.executescript(script)
    finally:
        db.close()
    os.replace(fresh, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    for name in ("dump", "load"):
        sub.add_parser(name).add_argument("db", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--bind")
    parser.add_argument("--db", type=Path, help="keep a visit counter in this SQLite file")
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.db)
    elif args.command == "load":
        load(args.db)
    else:
        if args.port is None or args.bind is None:
            parser.error("--port and --bind are required to serve")
        Handler.db = args.db
        Server((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
