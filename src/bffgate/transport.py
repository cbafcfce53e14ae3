"""The seam between the proxied call and the wire: "send this request to the API, give me its answer".

The proxied call (``gateway.py``) only knows these Protocols. ``http1.Http1Pool`` is the
implementation a running gateway uses; tests drive the call through an in-memory one
(``tests/unit/memory_transport.py``) without sockets. A transport raises only the neutral errors
below; ``transport_problem`` turns them into problem answers, in this one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from typing import Protocol

from .errors import BffError, InternalSignal, InvalidRequest, UpstreamError, UpstreamTimeout

RequestPayload = bytes | AsyncIterator[bytes] | None


class _SingleUse:
    """The partition of a call without a session: its connection carries that one exchange only."""

    def __repr__(self) -> str:
        return "SINGLE_USE"


SINGLE_USE = _SingleUse()


class TransportError(InternalSignal):
    """The API could not be reached, or its answer could not be read (a network-level failure)."""


class TransportTimeout(TransportError):
    """The API did not accept a connection, answer or take data within the timeout."""


class UnsendableRequest(TransportError):
    """The request cannot be written as HTTP (a line break or a non-Latin-1 character in its head)."""


class ApiAnswer(Protocol):
    """The API's answer once its head has arrived; its body is read whole or streamed, then released."""

    @property
    def status(self) -> int: ...

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]: ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def complete(self) -> bool:
        """The whole body has arrived already."""

    async def read(self) -> bytes:
        """The rest of the body; ``TransportError`` when it breaks off."""

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body piece by piece as it arrives; ``TransportError`` when it breaks off."""

    def release(self) -> None:
        """Done with the answer: its connection may be reused if the exchange ended cleanly."""

    def close(self) -> None:
        """Abandon the answer and its connection (the browser left, or an error)."""


class ApiTransport(Protocol):
    """Sends requests to ``REMOTE_API``."""

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: RequestPayload = None,
        *,
        content_length: int | None = None,
        partition: Hashable = None,
    ) -> ApiAnswer:
        """Send ``method target`` (encoded path and query) and return the answer once its head arrived.

        ``body``: None, bytes (sent with their length) or an async iterator (``content_length`` if
        known, else chunked). ``partition``: requests of one partition (a session) never share a
        connection with another's; ``SINGLE_USE``: a connection of its own, closed after the exchange.
        Raises ``TransportError`` and its subclasses only.
        """

    async def close(self) -> None:
        """Close every connection (at shutdown)."""


def transport_problem(error: TransportError) -> BffError:
    """The problem answer for a transport failure: 504, 400 or 502, with the transport's message."""
    detail = str(error) or None
    if isinstance(error, TransportTimeout):
        return UpstreamTimeout(detail)
    if isinstance(error, UnsendableRequest):
        return InvalidRequest(detail)
    return UpstreamError(detail)
