"""Request bodies: read into memory up to the replay buffer (so a 401 can be retried), else streamed.

A leaf module: the ASGI ``receive`` and raw headers in, a ``RequestBody`` out; bounded by
``BFF_MAX_BODY_BYTES`` (413), refused on GET and HEAD (400).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive

from .errors import InvalidRequest, PayloadTooLarge
from .header_filter import header_value

BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})
# A body on these is never forwarded: an API (or a cache) that ignores it would read it as the start of
# the next request on the connection.
NO_BODY_ALLOWED = frozenset({"GET", "HEAD"})


@dataclass(slots=True)
class RequestBody:
    """A request body: whole in memory when it fits the replay buffer, else streamed once."""

    data: bytes | None = None
    rest: AsyncIterator[bytes] | None = None
    length: int | None = None

    @property
    def replayable(self) -> bool:
        return self.rest is None

    def payload(self) -> bytes | AsyncIterator[bytes] | None:
        return self.data if self.rest is None else self.rest


async def read_body(
    method: str,
    raw_headers: list[tuple[bytes, bytes]],
    receive: Receive,
    *,
    max_bytes: int,
    replay_bytes: int,
) -> RequestBody:
    """Read up to ``replay_bytes`` into memory; beyond that, stream the rest (not replayable)."""
    declared = header_value(raw_headers, b"content-length")
    length = int(declared) if declared and declared.isdigit() else None
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    if length in (None, 0) and header_value(raw_headers, b"transfer-encoding") is None:
        return RequestBody(data=b"" if method not in BODYLESS_METHODS else None)
    refuse_body_on(method)
    stream = _body_pieces(receive)
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
        if size > replay_bytes:
            return RequestBody(rest=_continue(chunks, stream, size, max_bytes), length=length)
    return RequestBody(data=b"".join(chunks))


def refuse_body_on(method: str) -> None:
    """``InvalidRequest`` for a GET or HEAD that carries a body (it is never forwarded)."""
    if method in NO_BODY_ALLOWED:
        raise InvalidRequest(f"a {method} request must not have a body")


async def _body_pieces(receive: Receive) -> AsyncIterator[bytes]:
    """The body as it arrives; a client that closes before its end is its error, not a traceback of ours."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("the connection closed before the request body ended")
        piece: bytes = message.get("body", b"")
        if piece:
            yield piece
        if not message.get("more_body", False):
            return


async def _continue(
    head: list[bytes], stream: AsyncIterator[bytes], size: int, max_bytes: int
) -> AsyncIterator[bytes]:
    """The body read so far, then the rest; ``PayloadTooLarge`` (413) once it passes ``max_bytes``."""
    for chunk in head:
        yield chunk
    async for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
        yield chunk


async def read_whole_body(
    method: str, raw_headers: list[tuple[bytes, bytes]], receive: Receive, limit: int
) -> bytes:
    """The whole body of a request that must fit ``limit`` bytes (413 beyond): credentials, envelopes."""
    body = await read_body(method, raw_headers, receive, max_bytes=limit, replay_bytes=limit)
    return body.data or b""


def parse_json(data: bytes) -> Any:
    """``data`` as JSON, or ``InvalidRequest`` (400)."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[…" nested too deep
        raise InvalidRequest("the body must be valid JSON") from None
