"""An HTTPS service for the certificate tests: it serves ``ok`` with the certificate and
key it finds in its working directory at start, writes its pid to ``app.pid`` and loads
them again on SIGHUP (a service's ``reload``)."""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import ssl
from types import FrameType


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--cert", default="tls/fullchain.pem")
    parser.add_argument("--key", default="tls/privkey.pem")
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)

    def reload(_signum: int, _frame: FrameType | None) -> None:
        context.load_cert_chain(args.cert, args.key)

    signal.signal(signal.SIGHUP, reload)
    with open("app.pid", "w") as out:
        out.write(str(os.getpid()))
    server = http.server.ThreadingHTTPServer((args.bind, args.port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
