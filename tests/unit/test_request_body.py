"""``request_body.py`` units: what reading a request body does when the client goes away."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.types import Message, Receive

from bffgate.errors import InvalidRequest
from bffgate.request_body import read_body


@pytest.mark.parametrize("replay_bytes", [1024, 1], ids=["buffered", "streamed"])
async def test_a_client_that_leaves_mid_body_is_a_client_error_not_a_bug(replay_bytes: int) -> None:
    """A disconnect before the body's end is InvalidRequest (a quiet 400), never a ClientDisconnect traceback."""
    messages: list[Message] = [
        {"type": "http.request", "body": b"he", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "headers": [(b"transfer-encoding", b"chunked")]}
    with pytest.raises(InvalidRequest):
        await read_whole_body(scope, receive, replay_bytes)


async def read_whole_body(scope: dict[str, Any], receive: Receive, replay_bytes: int) -> None:
    body = await read_body(
        scope["method"], scope["headers"], receive, max_bytes=1 << 20, replay_bytes=replay_bytes
    )
    if body.rest is not None:  # streamed: the disconnect shows while the rest is read
        async for _ in body.rest:
            pass
