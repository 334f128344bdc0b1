"""The demo's web app: answers every request with which host and provider serve it."""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        info = {
            "service": os.environ.get("FAILOVER_SERVICE", "?"),
            "provider": os.environ.get("FAILOVER_PROVIDER", "?"),
            "host": os.environ.get("FAILOVER_HOST_ID", "?"),
            "generation": os.environ.get("FAILOVER_GENERATION", "?"),
        }
        body = (
            f"<h1>served by {info['host']} on {info['provider']}</h1>\n"
            f"<pre>{json.dumps(info)}</pre>\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops connections when many probes arrive at once.
    request_queue_size = 128
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", required=True)
    args = parser.parse_args()
    Server((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
