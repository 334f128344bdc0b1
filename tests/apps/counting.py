"""An HTTP server on many loopback addresses that counts connections open at once.

For the bounded-round tests and ``bench/probes.py``: it answers ``200 ok`` after
``--delay`` seconds on every address of ``--addresses`` (``127.0.9.1`` ..), and ``GET
/stats`` returns ``{"max_open": N, "served": N}`` (that request not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


class Counter:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.open = 0
        self.max_open = 0
        self.served = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            request = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            if request.startswith(b"GET /stats"):
                body = json.dumps({"max_open": self.max_open, "served": self.served}).encode()
            else:
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.served += 1
                body = b"ok"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()


def addresses(prefix: str, count: int) -> list[str]:
    return [f"{prefix}.{1 + i // 250}.{1 + i % 250}" for i in range(count)]


async def main(args: argparse.Namespace) -> None:
    counter = Counter(args.delay)
    servers = [
        await asyncio.start_server(counter.handle, address, args.port, backlog=4096)
        for address in addresses(args.prefix, args.addresses)
    ]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="127.9", help="the first two octets")
    parser.add_argument("--addresses", type=int, default=1)
    parser.add_argument("--delay", type=float, default=0.0)
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
