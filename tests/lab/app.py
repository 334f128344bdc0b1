"""The lab's service: an HTTP app that acknowledges writes, each kept in SQLite.

``POST /w/N`` stores write ``N`` and answers ``200`` with the host's id only once the
row is committed (an acknowledged write); ``GET /ids`` lists the writes it holds and
``GET /`` says which host answers. ``dump DB`` / ``load DB`` are its ``data.backup`` and
``data.restore`` (the load replaces the file in one rename, refusing a cut stream).
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

END = "-- end of lab dump"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10)
    db.execute("CREATE TABLE IF NOT EXISTS writes (id INTEGER PRIMARY KEY)")
    return db


class Handler(BaseHTTPRequestHandler):
    db = Path("app.db")

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        host = os.environ.get("FAILOVER_HOST_ID", "?")
        if self.path == "/ids":
            with _connect(self.db) as db:
                ids = [row[0] for row in db.execute("SELECT id FROM writes ORDER BY id")]
            self._reply(200, {"host": host, "ids": ids})
        else:
            self._reply(200, {"host": host})

    def do_POST(self) -> None:
        if not self.path.startswith("/w/") or not self.path[3:].isdigit():
            self._reply(404, {"error": "POST /w/N"})
            return
        with _connect(self.db) as db:
            db.execute("INSERT OR IGNORE INTO writes (id) VALUES (?)", (int(self.path[3:]),))
        self._reply(200, {"host": os.environ.get("FAILOVER_HOST_ID", "?")})

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


def dump(path: Path) -> None:
    with _connect(path) as db:
        for (n,) in db.execute("SELECT id FROM writes ORDER BY id"):
            sys.stdout.write(f"{n}\n")
    sys.stdout.write(END + "\n")


def load(path: Path) -> None:
    lines = sys.stdin.read().splitlines()
    if not lines or lines[-1] != END:
        sys.exit("refused: the backup stream ends early")
    tmp = path.with_suffix(".loading")
    tmp.unlink(missing_ok=True)
    with _connect(tmp) as db:
        db.executemany("INSERT INTO writes (id) VALUES (?)", [(int(n),) for n in lines[:-1]])
    db.close()
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--bind", required=True)
    serve.add_argument("--db", type=Path, required=True)
    for name in ("dump", "load"):
        sub.add_parser(name).add_argument("db", type=Path)
    args = parser.parse_args()
    if args.cmd == "dump":
        dump(args.db)
    elif args.cmd == "load":
        load(args.db)
    else:
        Handler.db = args.db
        _connect(args.db).close()
        Server((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
