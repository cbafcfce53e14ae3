"""An in-memory ``ApiTransport``: the proxied call driven without sockets.

A test gives it a function from the request to the answer (or to a ``TransportError`` to raise); it
records every request and every answer, so a test can check what was sent and that each answer was
released or closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

from bffgate.transport import RequestPayload, TransportError


@dataclass
class SentRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes | None
    content_length: int | None
    partition: Hashable

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


@dataclass
class MemoryAnswer:
    """An answer whose body is a list of pieces; ``broken_after`` pieces, it fails like a cut connection."""

    status: int = 200
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    pieces: list[bytes] = field(default_factory=list)
    broken_after: int | None = None
    released: bool = False
    closed: bool = False

    @property
    def content_length(self) -> int | None:
        for name, value in self.raw_headers:
            if name.lower() == b"content-length":
                return int(value)
        return None

    @property
    def complete(self) -> bool:
        return self.broken_after is None

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for index, piece in enumerate(self.pieces):
            if index == self.broken_after or self.closed:
                raise TransportError("the remote API closed the connection mid-answer")
            yield piece
        if self.broken_after is not None:
            raise TransportError("the remote API closed the connection mid-answer")

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


Handler = Callable[[SentRequest], "MemoryAnswer | TransportError"]


class MemoryTransport:
    """Answers each request with ``handler(request)``; raises it when that is a ``TransportError``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sent: list[SentRequest] = []
        self.answers: list[MemoryAnswer] = []

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: RequestPayload = None,
        *,
        content_length: int | None = None,
        partition: Hashable = None,
    ) -> MemoryAnswer:
        if body is not None and not isinstance(body, bytes):
            body = b"".join([piece async for piece in body])
        sent = SentRequest(method, target, list(headers), body, content_length, partition)
        self.sent.append(sent)
        outcome = self.handler(sent)
        if isinstance(outcome, TransportError):
            raise outcome
        self.answers.append(outcome)
        return outcome

    async def close(self) -> None:
        return None
