"""The benchmark's upstream: a minimal HTTP/1.1 server on uvloop + httptools, cheap enough never to be
the bottleneck (the demo API verifies a JWT on every call, which would dominate every number).

Routes (any method, any or no ``Authorization``):

* ``/items``            a ~1 KB JSON array (``Content-Length``, keep-alive)
* ``/bytes?size=N``     N bytes of ``application/octet-stream``, written in 64 KiB chunks with
                        flow control, so 100 MiB pass with flat memory
* ``/auth/login``       ``{"accessToken": <opaque, long-lived>, "refreshToken": ..., "expiresIn": 3600}``
* ``/auth/refresh``     a fresh pair, same shape (counted, for completeness)

Run: ``python bench/upstream.py --port 8001`` (127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from typing import cast
from urllib.parse import parse_qsl

import httptools
import uvloop

CHUNK = 64 * 1024
MAX_BYTES = 1024 * 1024 * 1024
_CHUNK_BYTES = bytes(range(256)) * (CHUNK // 256)


def _items_body() -> bytes:
    items = [
        {"id": i, "name": f"Item number {i}", "price": round(9.5 + i * 1.25, 2), "inStock": i % 3 != 0}
        for i in range(1, 18)
    ]
    return json.dumps(items, separators=(",", ":")).encode()


ITEMS = _items_body()


def _head(status: bytes, content_type: bytes, length: int) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(length).encode()
        + b"\r\n\r\n"
    )


ITEMS_ANSWER = _head(b"200 OK", b"application/json", len(ITEMS)) + ITEMS
NOT_FOUND = _head(b"404 Not Found", b"application/json", 23) + b'{"error": "not_found"}\n'


def _tokens() -> bytes:
    body = {
        "accessToken": "bench-at-" + secrets.token_urlsafe(48),
        "refreshToken": "bench-rt-" + secrets.token_urlsafe(32),
        "expiresIn": 3600,
        "user": {"id": "bench", "name": "Bench User"},
    }
    data = json.dumps(body).encode()
    return _head(b"200 OK", b"application/json", len(data)) + data


class HttpProtocol(asyncio.Protocol):
    """One connection: parse with httptools, answer from prebuilt bytes, stream large bodies."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.queue: list[bytes] = []  # request URLs in arrival order (pipelining-safe)
        self.busy = False
        self.can_write = asyncio.Event()
        self.can_write.set()

    # asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.can_write.set()

    # httptools callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        self.queue.append(self.url)
        if not self.busy:
            self._drain_queue()

    # answering -------------------------------------------------------------------------------------

    def _drain_queue(self) -> None:
        while self.queue and self.transport is not None:
            url = self.queue.pop(0)
            path, _, query = url.partition(b"?")
            if path == b"/items":
                self.transport.write(ITEMS_ANSWER)
            elif path == b"/bytes":
                size = _size(query)
                if size <= CHUNK:
                    head = _head(b"200 OK", b"application/octet-stream", size)
                    self.transport.write(head + _CHUNK_BYTES[:size])
                else:
                    self.busy = True
                    asyncio.get_running_loop().create_task(self._stream(size))
                    return
            elif path in (b"/auth/login", b"/auth/refresh"):
                self.transport.write(_tokens())
            else:
                self.transport.write(NOT_FOUND)

    async def _stream(self, size: int) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(_head(b"200 OK", b"application/octet-stream", size))
        view = memoryview(_CHUNK_BYTES)
        left = size
        while left > 0 and self.transport is not None:
            if not self.can_write.is_set():
                await self.can_write.wait()
                if self.transport is None:
                    return
            n = min(left, CHUNK)
            transport.write(view[:n])
            left -= n
        self.busy = False
        self._drain_queue()


def _size(query: bytes) -> int:
    for key, value in parse_qsl(query.decode("latin-1")):
        if key == "size" and value.isdigit():
            return min(int(value), MAX_BYTES)
    return 1024


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HttpProtocol, host, port, backlog=4096, reuse_address=True)
    print(f"upstream listening on http://{host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
