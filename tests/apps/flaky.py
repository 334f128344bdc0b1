"""A web app that fails every second request (500), for the flapping tests."""

from __future__ import annotations

import argparse
import itertools
from http.server import BaseHTTPRequestHandler
from http.server import HTTPServer

counter = itertools.count()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = next(counter) % 2 == 0
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"no")

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", required=True)
    args = parser.parse_args()
    HTTPServer((args.bind, args.port), Handler).serve_forever()
