"""The WebSocket relay's small rules: URL scheme, forwarded handshake headers, sub-protocols, close codes,
and the per-session / per-process limits of ``LiveSockets``."""

from __future__ import annotations

import logging

import pytest
from yarl import URL

from bffgate.accesslog import DENIED_HANDSHAKE_LINE, DeniedHandshakes, log_config
from bffgate.errors import CsrfFailed
from bffgate.live_socket import (
    _sendable,
    api_socket_url,
    forwardable_handshake_headers,
    requested_subprotocols,
    verify_origin,
)
from bffgate.live_sockets import API_UNAVAILABLE, GOING_AWAY, SESSION_ENDED, LiveSockets
from bffgate.session import Session
from bffgate.tokens import TokenSet


def test_http_becomes_ws_and_https_becomes_wss() -> None:
    """The API's WebSocket URL keeps host, path and query; only the scheme changes."""
    assert str(api_socket_url(URL("http://api:8080/v1/live?x=1"))) == "ws://api:8080/v1/live?x=1"
    assert str(api_socket_url(URL("https://api/v1/live"))) == "wss://api/v1/live"


def test_handshake_headers_drop_cookies_credentials_and_the_handshakes_own() -> None:
    """The browser's cookie, its Sec-WebSocket-* fields and hop-by-hop headers never reach the API."""
    raw = [
        (b"host", b"gw"),
        (b"cookie", b"__Host-sessionEtls=secret"),
        (b"authorization", b"Bearer browser-said"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", b"abc"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
        (b"sec-websocket-protocol", b"a, b"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"origin", b"https://app.example"),
        (b"accept-language", b"de"),
    ]
    assert forwardable_handshake_headers(raw) == [
        ("origin", "https://app.example"),
        ("accept-language", "de"),
    ]
    assert requested_subprotocols(raw) == ["a", "b"]


@pytest.mark.parametrize("origin", [None, b"https://evil.example", b"null"])
def test_a_handshake_needs_an_allowed_origin(origin: bytes | None) -> None:
    """Missing, foreign and opaque origins are refused (CSWSH)."""
    headers = [(b"origin", origin)] if origin is not None else []
    with pytest.raises(CsrfFailed):
        verify_origin({"headers": headers}, frozenset({"https://app.example"}))
    verify_origin({"headers": [(b"origin", b"https://APP.example")]}, frozenset({"https://app.example"}))


@pytest.mark.parametrize(
    ("received", "sent"),
    [
        (1000, 1000),
        (1001, 1001),
        (1011, 1011),
        (4000, 4000),
        (3001, 3001),
        (1005, 1000),
        (1006, API_UNAVAILABLE),
    ],
)
def test_close_codes_a_browser_may_receive(received: int, sent: int) -> None:
    """Codes that cannot travel in a close frame become 1000 (no code) or 4502 (connection lost)."""
    assert _sendable(received) == sent


async def test_limits_per_session_and_per_process_and_session_end() -> None:
    """admit refuses past either limit, leave frees a place, session_ended ends only that session's."""

    async def always_live(session: Session, cookies: object) -> bool:
        return True

    sockets = LiveSockets(always_live, per_session=2, per_process=3, check_seconds=60, absolute_seconds=3600)
    one, two = session(), session()
    a, b = sockets.admit(one, {}), sockets.admit(one, {})
    assert a is not None and b is not None
    assert sockets.admit(one, {}) is None  # per session
    c = sockets.admit(two, {})
    assert c is not None
    assert sockets.admit(session(), {}) is None  # per process
    sockets.session_ended(one.sid)
    assert a.ended.result() == SESSION_ENDED and b.ended.result() == SESSION_ENDED
    assert not c.ended.done()
    sockets.leave(a)
    assert sockets.admit(session(), {}) is not None
    for socket in (b, c):
        sockets.leave(socket)
    await sockets.close()


async def test_sockets_without_a_session_count_against_the_process_limit_only() -> None:
    """A route without a session's socket (None): admitted up to the process limit, freed by leave,
    ended by the shutdown, never by a session's end."""

    async def always_live(session: Session, cookies: object) -> bool:
        return True

    sockets = LiveSockets(always_live, per_session=1, per_process=2, check_seconds=60, absolute_seconds=3600)
    a, b = sockets.admit(None, {}), sockets.admit(None, {})  # past per_session: no session, no such limit
    assert a is not None and b is not None and len(sockets) == 2
    assert sockets.admit(None, {}) is None and sockets.admit(session(), {}) is None  # per process
    sockets.leave(a)
    sockets.leave(a)  # twice: counted once
    assert len(sockets) == 1
    sockets.close_all()
    assert b.ended.result() == GOING_AWAY
    sockets.leave(b)
    assert len(sockets) == 0
    await sockets.close()


def session() -> Session:
    return Session.start(TokenSet(access_token="a", expires_in=900, refresh_token="r"), {"id": "u"})


def test_refused_handshakes_are_not_logged_as_errors() -> None:
    """uvicorn's "returned without completing handshake" line after a 401/403 refusal is dropped by the
    log config `bffgate serve` uses; other error lines stay."""
    config = log_config()
    assert config["loggers"]["uvicorn.error"]["filters"] == ["denied_handshakes"]
    refused = logging.LogRecord("uvicorn.error", logging.ERROR, "x", 1, DENIED_HANDSHAKE_LINE, None, None)
    other = logging.LogRecord(
        "uvicorn.error", logging.ERROR, "x", 1, "Exception in ASGI application", None, None
    )
    assert DeniedHandshakes().filter(refused) is False
    assert DeniedHandshakes().filter(other) is True
