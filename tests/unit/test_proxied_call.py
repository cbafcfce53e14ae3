"""The proxied call (``Gateway.forward``) through the transport seam: no sockets, no framework server."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
from starlette.requests import Request
from starlette.types import Message

from bffgate.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from bffgate.gateway import Gateway, RequestSession
from bffgate.request_body import RequestBody
from bffgate.session import Session
from bffgate.tokens import TokenSet
from bffgate.transport import TransportError, TransportTimeout, UnsendableRequest

from ..harness import settings_for
from .memory_transport import MemoryAnswer, MemoryTransport, SentRequest

API = "http://api.invalid/v1"


class RotatingProvider:
    """Hands out ``at1``, ``at2``… on each refresh."""

    def __init__(self) -> None:
        self.refreshes = 0

    async def refresh(self, refresh_token: str) -> TokenSet:
        self.refreshes += 1
        return TokenSet(
            access_token=f"at{self.refreshes}", refresh_token=f"rt{self.refreshes}", expires_in=600
        )

    async def revoke(self, session: Session) -> None:
        return None

    async def ready(self) -> None:
        return None


class OneSessionStore:
    """Keeps one session; its cookies name the access token, so a test sees which one was sent."""

    def __init__(self) -> None:
        self.saved: list[Session] = []

    async def load(self, cookies: Mapping[str, str]) -> Session | None:
        return None

    async def save(self, session: Session, *, existing: bool = False) -> None:
        self.saved.append(session)

    async def delete(self, session: Session) -> None:
        return None

    def set_cookies(self, session: Session, cookies: Mapping[str, str]) -> list[str]:
        return [f"token={session.access_token}"]

    def clear_cookies(self, cookies: Mapping[str, str]) -> list[str]:
        return []

    def has_cookies(self, cookies: Mapping[str, str]) -> bool:
        return False

    async def ping(self) -> None:
        return None


def live_session() -> Session:
    now = time.time()
    return Session(
        sid="sid-1",
        created_at=now,
        access_token="at0",
        access_expires_at=now + 600,
        access_issued_at=now,
        refresh_token="rt0",
    )


def browser_request(method: str = "GET") -> Request:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": "/", "headers": []}
    return Request(scope)


def gateway_with(transport: MemoryTransport, provider: RotatingProvider | None = None) -> Gateway:
    provider = provider or RotatingProvider()
    return Gateway(settings_for(API), OneSessionStore(), provider, transport)


async def forward(
    gateway: Gateway, body: RequestBody | None = None, method: str = "GET"
) -> tuple[int, dict[bytes, list[bytes]], bytes]:
    """Forward one call to ``/items`` and run its answer as the ASGI server would."""
    request = browser_request(method)
    tracked = RequestSession(live_session())
    url = gateway.api_urls.join("items", "q=1")
    headers = [("Accept", "application/json")]
    answer = await gateway.forward(request, tracked, method, url, headers, body or RequestBody())
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await answer(request.scope, receive, send)
    heads: dict[bytes, list[bytes]] = {}
    for name, value in sent[0]["headers"]:
        heads.setdefault(name, []).append(value)
    return sent[0]["status"], heads, b"".join(m.get("body", b"") for m in sent[1:])


def ok(_: SentRequest) -> MemoryAnswer:
    return MemoryAnswer(200, [(b"content-type", b"application/json"), (b"content-length", b"2")], [b"{}"])


async def test_the_call_carries_the_session_token_and_streams_the_answer() -> None:
    transport = MemoryTransport(ok)
    status, headers, body = await forward(gateway_with(transport))
    assert (status, body) == (200, b"{}")
    [sent] = transport.sent
    assert (sent.method, sent.target, sent.partition) == ("GET", "/v1/items?q=1", "sid-1")
    assert sent.header("Authorization") == "Bearer at0"
    assert sent.header("Accept") == "application/json"
    assert headers[b"content-type"] == [b"application/json"]
    assert transport.answers[0].released


async def test_a_401_is_retried_once_with_refreshed_tokens_whose_cookies_reach_the_browser() -> None:
    def first_refused(request: SentRequest) -> MemoryAnswer:
        return MemoryAnswer(401) if request.header("Authorization") == "Bearer at0" else ok(request)

    transport = MemoryTransport(first_refused)
    provider = RotatingProvider()
    status, headers, _ = await forward(gateway_with(transport, provider))
    assert status == 200
    assert [s.header("Authorization") for s in transport.sent] == ["Bearer at0", "Bearer at1"]
    assert provider.refreshes == 1
    assert headers[b"set-cookie"] == [b"token=at1"]
    assert headers[b"cache-control"] == [b"no-store"]
    assert transport.answers[0].released  # the refused answer's connection is not left open


async def test_a_401_to_a_streamed_body_is_not_retried() -> None:
    async def pieces() -> Any:
        yield b"x" * 10

    transport = MemoryTransport(lambda _: MemoryAnswer(401))
    body = RequestBody(rest=pieces(), length=10)
    status, _, _ = await forward(gateway_with(transport), body, method="POST")
    assert status == 401
    assert len(transport.sent) == 1
    assert transport.sent[0].content_length == 10


@pytest.mark.parametrize(
    ("failure", "problem", "status"),
    [
        (TransportError("refused"), UpstreamError, 502),
        (TransportTimeout("slow"), UpstreamTimeout, 504),
        (UnsendableRequest("line break"), InvalidRequest, 400),
    ],
)
async def test_transport_failures_become_problems_once(
    failure: TransportError, problem: type[Exception], status: int
) -> None:
    transport = MemoryTransport(lambda _: failure)
    with pytest.raises(problem) as raised:
        await forward(gateway_with(transport))
    assert getattr(raised.value, "status", None) == status
    assert raised.value.__cause__ is failure


async def test_an_answer_that_breaks_off_mid_stream_is_closed_not_raised() -> None:
    def broken(_: SentRequest) -> MemoryAnswer:
        return MemoryAnswer(200, [], [b"a" * 10, b"b" * 10], broken_after=1)

    transport = MemoryTransport(broken)
    status, _, body = await forward(gateway_with(transport))
    assert status == 200
    assert body == b"a" * 10  # what came before the break, then the connection is cut
    assert transport.answers[0].closed
