"""A small web app on PostgreSQL that reaches its database by DNS name (issue 25's test app).

``POST /rows`` inserts a row into ``t`` and answers its id once committed; ``GET /rows``
answers ``{"db": address, "ids": [...]}``; ``GET /healthz`` answers ``ok`` without the
database (the app is healthy while its database moves: only ``db`` fails over).

The database's name is resolved on every (re)connect by asking ``--dns`` (a DNS server,
``host:port``) directly with dnspython, never the system resolver: after ``db`` fails
over, the next request after a failed one reaches the new address, with this process
neither restarted nor redeployed.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from threading import Lock
from typing import Any


def resolve(name: str, server: str) -> str:
    import dns.message
    import dns.query
    import dns.rdatatype

    host, _, port = server.rpartition(":")
    answer = dns.query.udp(dns.message.make_query(name, "A"), host, port=int(port), timeout=2)
    for rrset in answer.answer:
        for rdata in rrset:
            if rdata.rdtype == dns.rdatatype.A:
                return str(rdata.address)
    raise LookupError(f"{name}: no A record at {server}")


class Database:
    """One connection, made again (name resolved again) after any failure."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.conn: Any = None
        self.address = ""
        self.lock = Lock()

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with self.lock:
            try:
                if self.conn is None:
                    self.address = resolve(self.args.db, self.args.dns)
                    self.conn = psycopg.connect(
                        f"host={self.address} port={self.args.db_port} user={self.args.user} "
                        f"dbname={self.args.dbname} connect_timeout=2",
                        autocommit=True,
                        options="-c statement_timeout=5000",
                    )
                return list(self.conn.execute(sql).fetchall())
            except Exception:
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                raise


def handler(db: Database) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def serve(self, sql: str, shape: Any) -> None:
            try:
                rows = db.run(sql)
            except Exception as exc:  # the database is away: say so, keep serving
                self.answer(503, {"error": type(exc).__name__})
                return
            self.answer(200, shape(rows))

        def do_GET(self) -> None:
            if self.path == "/rows":
                self.serve(
                    "SELECT id FROM t ORDER BY id",
                    lambda rows: {"db": db.address, "ids": [r[0] for r in rows]},
                )
            else:
                self.answer(200, "ok")

        def do_POST(self) -> None:
            self.serve("INSERT INTO t DEFAULT VALUES RETURNING id", lambda rows: rows[0][0])

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--db", required=True, help="the database's DNS name")
    parser.add_argument("--dns", required=True, help="the DNS server to ask, host:port")
    parser.add_argument("--db-port", type=int, default=5432)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--dbname", default="postgres")
    args = parser.parse_args()
    ThreadingHTTPServer((args.bind, args.port), handler(Database(args))).serve_forever()


if __name__ == "__main__":
    main()
