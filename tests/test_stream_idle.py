"""Server-sent events and long polls through the gateway: a streamed answer is cut by its own idle limit
(BFF_STREAM_IDLE_TIMEOUT), not by the per-read upstream timeout, and is never buffered.

The contract's case is an SSE stream with a heartbeat every 40 s behind a 30 s BFF_UPSTREAM_TIMEOUT;
these tests scale it down (1 s timeout, 2.5 s gaps) rather than wait minutes."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from .conftest import StackFactory
from .harness import serve
from .upstream import create_test_upstream


async def test_gaps_longer_than_the_upstream_timeout_do_not_cut_the_stream(make_stack: StackFactory) -> None:
    """BFF_UPSTREAM_TIMEOUT=1, events 2.5 s apart: all three arrive, unbuffered-marked for proxies."""
    async with make_stack(bff_upstream_timeout=1) as stack:
        browser = await stack.logged_in()
        headers = {"X-CSRF": "1", "Cookie": browser.cookie_header(), "Accept": "text/event-stream"}
        async with stack.http.get(
            stack.gateway_url + "/api/rest/proxy/events?count=3&gap=2.5", headers=headers
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert response.headers["X-Accel-Buffering"] == "no"
            body = await response.read()
        assert body.count(b"data: event") == 3


async def assert_cut_after_the_first_event(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> None:
    """``url`` (two events 2.5 s apart): the first event arrives, then the answer breaks off."""
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        assert await response.content.readuntil(b"\n\n") == b"id: 1\ndata: event 1\n\n"
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.content.read()


async def test_a_stream_silent_past_its_idle_limit_is_cut(make_stack: StackFactory) -> None:
    """BFF_STREAM_IDLE_TIMEOUT=1, a 2.5 s gap: the first event arrives, then the answer breaks off."""
    async with make_stack(bff_stream_idle_timeout=1) as stack:
        browser = await stack.logged_in()
        headers = {"X-CSRF": "1", "Cookie": browser.cookie_header()}
        url = stack.gateway_url + "/api/rest/proxy/events?count=2&gap=2.5"
        await assert_cut_after_the_first_event(stack.http, url, headers)


async def test_a_routes_own_stream_idle_limit(make_stack: StackFactory) -> None:
    """Two routes to the same API: the one with ``stream_idle_timeout = 1`` cuts a 2.5 s gap, the other
    (BFF_STREAM_IDLE_TIMEOUT's 300 s) lets the whole stream through."""
    upstream, _, _ = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url:
        routes = [
            {"prefix": "/api/short/", "upstream": api_url, "token": "none", "stream_idle_timeout": 1},
            {"prefix": "/api/long/", "upstream": api_url, "token": "none"},
        ]
        async with make_stack(routes=routes) as stack:
            headers = {"X-CSRF": "1"}
            path = "/events?count=2&gap=2.5"
            await assert_cut_after_the_first_event(
                stack.http, stack.gateway_url + "/api/short" + path, headers
            )
            async with stack.http.get(stack.gateway_url + "/api/long" + path, headers=headers) as response:
                assert (await response.read()).count(b"data: event") == 2


async def test_each_event_reaches_the_browser_before_the_next_is_sent(make_stack: StackFactory) -> None:
    """Never buffered: the API sends event 2 only after the browser has read event 1."""
    async with make_stack() as stack:
        browser = await stack.logged_in()
        headers = {"X-CSRF": "1", "Cookie": browser.cookie_header()}
        async with stack.http.get(
            stack.gateway_url + "/api/rest/proxy/events?count=3&gated", headers=headers
        ) as response:
            for number in (1, 2, 3):
                async with asyncio.timeout(20):  # a buffered event would never come: fail, not hang
                    event = await response.content.readuntil(b"\n\n")
                assert event == f"id: {number}\ndata: event {number}\n\n".encode()
                stack.recorder.release_event.set()
