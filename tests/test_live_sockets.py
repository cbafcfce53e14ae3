"""WebSockets through the gateway (live_socket.py), against the demo API's Starlette WebSocket endpoints
under uvicorn, driven by the ``websockets`` client as a browser would: with its cookies and Origin."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from bffgate.app import create_app
from bffgate.live_sockets import MESSAGE_TOO_BIG, SESSION_ENDED, TOO_MANY_SOCKETS
from bffgate.routes import DEFAULT_PREFIX

from .conftest import StackFactory
from .harness import Browser, Stack, nothing_goes_upstream, serve

REDIS_DB = 13
MIB = 1024 * 1024
OUR_ORIGIN = "http://127.0.0.1:8000"  # the default BFF_PUBLIC_URL's origin, which the gateway allows


def ws_url(stack: Stack | str, path: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The gateway's WebSocket URL for ``path`` under ``prefix`` (the default route's, or a route's)."""
    base = stack if isinstance(stack, str) else stack.gateway_url
    return base.replace("http://", "ws://") + prefix + path


@contextlib.asynccontextmanager
async def open_socket(
    browser: Browser,
    path: str,
    *,
    origin: str | None = "default",
    protocols: list[str] | None = None,
    prefix: str = DEFAULT_PREFIX,
    headers: dict[str, str] | None = None,
    **options: Any,
) -> AsyncIterator[ClientConnection]:
    """A WebSocket through the gateway with the browser's cookies and (by default) its own Origin."""
    sent = {**(headers or {}), **({"Cookie": browser.cookie_header()} if browser.cookies else {})}
    sent_origin = OUR_ORIGIN if origin == "default" else origin
    async with connect(
        ws_url(browser.base, path, prefix),
        additional_headers=sent,
        origin=Origin(sent_origin) if sent_origin else None,
        subprotocols=[Subprotocol(p) for p in protocols] if protocols else None,
        proxy=None,
        open_timeout=20,
        **options,
    ) as socket:
        yield socket


async def closed_with(socket: ClientConnection) -> int | None:
    """Read (and drop) messages until the socket closes; the close code the gateway sent."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await socket.recv()
    return socket.close_code


def handshakes(stack: Stack | Any) -> list[Any]:
    """The WebSocket handshakes the stack's API (or an upstream's ``recorder``) received."""
    recorder = stack.recorder if isinstance(stack, Stack) else stack
    return [r for r in recorder.requests if r.method == "WEBSOCKET"]


async def test_messages_go_both_ways_with_the_bearer_and_without_cookies(stack: Stack) -> None:
    """Text and binary are echoed; the API got a valid Bearer, the sub-protocol, no cookie."""
    browser = await stack.logged_in()
    async with open_socket(browser, "echo", protocols=["chat.v1", "chat.v0"]) as socket:
        assert socket.subprotocol == "chat.v1"
        await socket.send("hello")
        assert await socket.recv() == "hello"
        await socket.send(b"\x00\x01binary")
        assert await socket.recv() == b"\x00\x01binary"
    [handshake] = handshakes(stack)
    assert handshake.raw_path == "/echo"
    token = handshake.headers["authorization"].removeprefix("Bearer ")
    assert stack.api.verify_access_token(token) is not None
    assert "cookie" not in handshake.headers
    assert handshake.headers["sec-websocket-protocol"] == "chat.v1, chat.v0"


async def test_no_session_is_refused_with_401_before_the_api(stack: Stack) -> None:
    """A handshake without a session gets the 401 problem; nothing reaches the API."""
    with nothing_goes_upstream(stack), pytest.raises(InvalidStatus) as refused:
        async with open_socket(stack.browser(), "echo"):
            pass
    assert refused.value.response.status_code == 401
    assert b'"unauthenticated"' in (refused.value.response.body or b"")


@pytest.mark.parametrize("origin", ["https://evil.example", None])
async def test_foreign_or_missing_origin_is_refused_with_403(stack: Stack, origin: str | None) -> None:
    """Cross-site WebSocket hijacking: the cookies are there, the Origin is not ours (or absent)."""
    browser = await stack.logged_in()
    with nothing_goes_upstream(stack), pytest.raises(InvalidStatus) as refused:
        async with open_socket(browser, "echo", origin=origin):
            pass
    assert refused.value.response.status_code == 403
    assert b'"csrf_failed"' in (refused.value.response.body or b"")


async def test_a_path_leaving_the_api_is_refused(stack: Stack) -> None:
    """The same URL containment as for HTTP: 400, nothing upstream."""
    browser = await stack.logged_in()
    with nothing_goes_upstream(stack), pytest.raises(InvalidStatus) as refused:
        async with open_socket(browser, "a/%2e%2e/%2e%2e/admin"):
            pass
    assert refused.value.response.status_code == 400


async def test_the_apis_refusal_passes_through(stack: Stack) -> None:
    """A path the API has no WebSocket for: the browser gets the API's own status (403 from Starlette)."""
    browser = await stack.logged_in()
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(browser, "no-such-socket"):
            pass
    assert refused.value.response.status_code == 403
    assert len(handshakes(stack)) == 1


async def test_logout_closes_an_open_socket_with_4401(stack: Stack) -> None:
    """The session ends while the socket is open: the gateway closes it with SESSION_ENDED."""
    browser = await stack.logged_in()
    async with open_socket(browser, "ticks?every=0.05") as socket:
        await socket.recv()
        answer = await browser.request("POST", "/api/auth/logout")
        assert answer.status == 200
        assert await closed_with(socket) == SESSION_ENDED
        assert socket.close_reason == "session ended"


async def test_the_apis_close_code_reaches_the_browser(stack: Stack) -> None:
    """The API closes with 4000 and a reason: the browser sees both."""
    browser = await stack.logged_in()
    async with open_socket(browser, "ws-close/4000") as socket:
        assert await closed_with(socket) == 4000
        assert socket.close_reason == "closed by the API"


async def test_ten_mib_binary_echo_arrives_intact(stack: Stack) -> None:
    """A 10 MiB binary message goes up and comes back byte for byte."""
    browser = await stack.logged_in()
    payload = os.urandom(10 * MIB)
    async with open_socket(browser, "echo", max_size=16 * MIB) as socket:
        await socket.send(payload)
        assert await socket.recv() == payload


async def test_a_message_over_the_limit_closes_with_1009(make_stack: StackFactory) -> None:
    """BFF_WS_MAX_MESSAGE_BYTES: a bigger message, the browser's or the API's, ends the socket with 1009."""
    async with make_stack(bff_ws_max_message_bytes=4096) as stack:
        browser = await stack.logged_in()
        async with open_socket(browser, "echo") as socket:
            await socket.send(b"x" * 4096)
            assert await socket.recv() == b"x" * 4096
            await socket.send(b"x" * 4097)
            assert await closed_with(socket) == MESSAGE_TOO_BIG
        async with open_socket(browser, "flood?count=1&size=4097") as socket:  # the API's, too big
            assert await closed_with(socket) == MESSAGE_TOO_BIG


async def test_sockets_per_session_are_limited(make_stack: StackFactory) -> None:
    """BFF_WS_MAX_PER_SESSION=2: the third socket is closed with 4429 without reaching the API; once
    one closes, a new one opens."""
    async with make_stack(bff_ws_max_per_session=2) as stack:
        browser = await stack.logged_in()
        other = await stack.logged_in()  # another session is not affected
        async with open_socket(browser, "echo") as first, open_socket(browser, "echo"):
            with nothing_goes_upstream(stack):
                async with open_socket(browser, "echo") as third:
                    assert await closed_with(third) == TOO_MANY_SOCKETS
            async with open_socket(other, "echo") as fine:
                await fine.send("ok")
                assert await fine.recv() == "ok"
            await first.close()
        async with open_socket(browser, "echo") as again:
            await again.send("again")
            assert await again.recv() == "again"


async def test_sockets_per_process_are_limited(make_stack: StackFactory) -> None:
    """BFF_WS_MAX_PER_PROCESS=1: a second socket, of any session, is closed with 4429."""
    async with make_stack(bff_ws_max_per_process=1) as stack:
        one, two = await stack.logged_in(), await stack.logged_in()
        async with open_socket(one, "echo"), open_socket(two, "echo") as refused:
            assert await closed_with(refused) == TOO_MANY_SOCKETS


async def test_an_expired_token_is_refreshed_for_the_handshake(make_stack: StackFactory) -> None:
    """The access token is refreshed (once) before the handshake goes upstream; the new cookies come
    back on the 101 answer."""
    async with make_stack(access_ttl=1.0) as stack:
        browser = await stack.logged_in()
        browser.forget_access_cookie()
        async with open_socket(browser, "echo") as socket:
            await socket.send("fresh")
            assert await socket.recv() == "fresh"
            assert socket.response is not None
            set_cookies = socket.response.headers.get_all("Set-Cookie")
        assert stack.api.refresh_calls == 1
        assert any("accessTokenEtls" in cookie for cookie in set_cookies)


async def test_token_expiry_mid_connection_does_not_cut_the_socket(make_stack: StackFactory) -> None:
    """The API judged the token at the handshake; the gateway keeps the socket past the token's end."""
    async with make_stack(access_ttl=1.0, bff_refresh_skew=0) as stack:
        browser = await stack.logged_in()
        async with open_socket(browser, "ticks?every=0.05") as socket:
            token = handshakes(stack)[0].headers["authorization"].removeprefix("Bearer ")
            while stack.api.verify_access_token(token) is not None:
                await socket.recv()
            for _ in range(5):  # still flowing after the token expired
                await socket.recv()
            assert socket.close_code is None


async def test_the_absolute_session_lifetime_closes_the_socket(make_stack: StackFactory) -> None:
    """BFF_SESSION_ABSOLUTE reached while the socket is open: closed with 4401."""
    async with make_stack(bff_session_absolute=5) as stack:
        browser = await stack.logged_in()
        async with open_socket(browser, "ticks?every=0.1") as socket:
            assert await closed_with(socket) == SESSION_ENDED


async def test_a_logout_on_another_instance_closes_the_socket(make_stack: StackFactory) -> None:
    """Redis store, two gateway instances: the socket is on one, the logout on the other; the socket's
    instance learns of it at its next session check and closes with 4401."""
    async with make_stack(
        bff_session_store="redis",
        redis_url=f"redis://127.0.0.1:6379/{REDIS_DB}",
        bff_ws_session_check=0.2,
    ) as stack:
        browser = await stack.logged_in()
        async with serve(create_app(stack.settings)) as other_instance:
            elsewhere = Browser(stack.http, other_instance, dict(browser.cookies))
            async with open_socket(browser, "ticks?every=0.05") as socket:
                await socket.recv()
                assert (await elsewhere.request("POST", "/api/auth/logout")).status == 200
                assert await closed_with(socket) == SESSION_ENDED


async def test_a_slow_reader_holds_back_the_api(stack: Stack) -> None:
    """The browser reads nothing: the API's sends stall after a bounded amount (back-pressure through
    the gateway), and every message still arrives intact once the browser reads."""
    browser = await stack.logged_in()
    count, size = 128, MIB  # 128 MiB the API would like to send
    # Uncompressed, so that the bytes counted are the bytes on the wire (the pattern deflates well).
    options: dict[str, Any] = {"max_size": 2 * MIB, "max_queue": 1, "compression": None}
    async with open_socket(browser, f"flood?count={count}&size={size}", **options) as socket:
        stalled_at = await until_stalled(stack)
        # What left the API sits in socket buffers, the gateway's queues and the client's queue.
        assert stalled_at < 48 * MIB, f"the API sent {stalled_at / MIB:.0f} MiB to a reader that read nothing"
        received = 0
        for number in range(count):
            message = await socket.recv()
            assert isinstance(message, bytes) and len(message) == size
            assert message[:4] == bytes((number + i) % 256 for i in range(4))
            received += 1
        assert received == count


async def until_stalled(stack: Stack) -> int:
    """The bytes the API had sent once its sends stopped making progress (sampled until steady)."""
    last, steady = -1, 0
    while steady < 5:
        await asyncio.sleep(0.2)
        sent = stack.recorder.flood_sent
        steady = steady + 1 if sent == last and sent > 0 else 0
        last = sent
    return last


async def test_metrics_count_open_sockets(stack: Stack) -> None:
    """bffgate_websockets_open goes up while a socket is open; closes are counted by reason."""
    browser = await stack.logged_in()

    async def metric(name: str) -> float:
        answer = await stack.browser().request("GET", "/metrics", csrf=False)
        for line in answer.body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = await metric("bffgate_websockets_open")
    async with open_socket(browser, "echo") as socket:
        await socket.send("x")
        await socket.recv()
        assert await metric("bffgate_websockets_open") == before + 1
    for _ in range(200):  # the gateway's side of the close finishes after the client's
        if await metric("bffgate_websockets_open") == before:
            break
        await asyncio.sleep(0.05)
    assert await metric("bffgate_websockets_open") == before


async def test_logout_everywhere_closes_the_sockets_of_the_users_other_sessions(
    make_stack: StackFactory,
) -> None:
    """Redis store: a logout with {"everywhere": true} in one session ends the user's other sessions;
    their open sockets close with 4401 at the next session check (the session is gone from the store)."""
    async with make_stack(
        bff_session_store="redis",
        redis_url=f"redis://127.0.0.1:6379/{REDIS_DB}",
        bff_ws_session_check=0.2,
    ) as stack:
        laptop, phone = await stack.logged_in(), await stack.logged_in()
        async with open_socket(laptop, "ticks?every=0.05") as socket:
            await socket.recv()
            answer = await phone.request("POST", "/api/auth/logout", json_body={"everywhere": True})
            assert answer.status == 200 and answer.json()["endedSessions"] >= 2
            assert await closed_with(socket) == SESSION_ENDED


async def test_a_refused_handshake_still_carries_the_rotated_cookies(make_stack: StackFactory) -> None:
    """The token was refreshed for the handshake, then the API refused it: the 403 still sets the new
    session cookies, so the browser never presents the rotated-away refresh token."""
    async with make_stack(access_ttl=1.0) as stack:
        browser = await stack.logged_in()
        browser.forget_access_cookie()
        old_refresh = {k: v for k, v in browser.cookies.items() if "refreshTokenEtls" in k}
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(browser, "no-such-socket"):
                pass
        answer = refused.value.response
        assert answer.status_code == 403
        assert stack.api.refresh_calls == 1
        browser.absorb(answer.headers.get_all("Set-Cookie"))
        assert {k: v for k, v in browser.cookies.items() if "refreshTokenEtls" in k} != old_refresh
        assert (await browser.request("GET", "/api/rest/proxy/me")).status == 200
        assert stack.api.reuse_detected == 0  # the old refresh token was never presented again


async def test_an_api_401_on_the_handshake_refreshes_once_and_retries_once(stack: Stack) -> None:
    """The API refuses the first handshake with 401: one forced refresh, one retry with the new token."""
    browser = await stack.logged_in()
    async with open_socket(browser, "ws-401-once") as socket:
        assert await socket.recv() == "accepted"
    first, second = handshakes(stack)
    assert stack.api.refresh_calls == 1
    assert first.headers["authorization"] != second.headers["authorization"]
