"""An API on a raw socket that records every request exactly as it came over the wire.

Frameworks hide what tests need to see here: Starlette normalises paths and aiohttp fills in headers.
``WireApi`` keeps the request line byte for byte (the path with its trailing slash), the header block
and the body, and answers from a handler the test provides. Each answer closes its connection, so the
recording never depends on keep-alive timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


@dataclass(frozen=True)
class WireRequest:
    """One request as the API received it."""

    request_line: str  # e.g. "POST /api/token/ HTTP/1.1"
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def method(self) -> str:
        return self.request_line.split(" ")[0]

    @property
    def target(self) -> str:
        return self.request_line.split(" ")[1]

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def cookies(self) -> dict[str, str]:
        pairs = (part.strip().partition("=") for part in self.headers.get("cookie", "").split(";"))
        return {name: value for name, _, value in pairs if name}


@dataclass(frozen=True)
class WireAnswer:
    status: int = 200
    body: Any = None  # sent as JSON unless None
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[WireRequest], WireAnswer]


@dataclass
class WireApi:
    url: str
    requests: list[WireRequest]

    def to(self, path: str) -> list[WireRequest]:
        """The requests whose target starts with ``path``."""
        return [r for r in self.requests if r.target.startswith(path)]


@contextlib.asynccontextmanager
async def wire_api(handler: Handler) -> AsyncIterator[WireApi]:
    """Serve ``handler`` on an ephemeral loopback port; yields the API's base URL and its recording."""
    requests: list[WireRequest] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = WireRequest(request_line, headers, body)
        requests.append(request)
        writer.write(_encode(handler(request)))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield WireApi(f"http://127.0.0.1:{port}", requests)
    finally:
        server.close()
        await server.wait_closed()


def _encode(answer: WireAnswer) -> bytes:
    body = b"" if answer.body is None else json.dumps(answer.body).encode()
    lines = [f"HTTP/1.1 {answer.status} X", f"Content-Length: {len(body)}", "Connection: close"]
    if answer.body is not None:
        lines.append("Content-Type: application/json")
    lines += [f"{name}: {value}" for name, value in answer.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
