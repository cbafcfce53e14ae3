"""The refresh storm: many concurrent requests of one session after expiry cause exactly one refresh."""

from __future__ import annotations

import asyncio

import pytest

from .harness import Stack

STORM = 50


@pytest.mark.slow
async def test_storm_of_50_requests_refreshes_once_and_every_cookie_set_keeps_working(stack: Stack) -> None:
    """50 concurrent requests with an expired access token: all succeed, the API counts one refresh.

    The demo API revokes the whole token family when a rotated refresh token is used again, so any
    second refresh would turn into failures here. Afterwards every response's cookies keep working,
    and so do the superseded cookies the browser held before the storm (grace window).
    """
    browser = await stack.logged_in()
    browser.forget_access_cookie()
    before_storm = browser.clone()
    clones = [browser.clone() for _ in range(STORM)]
    answers = await asyncio.gather(*(c.request("GET", "/api/rest/proxy/items") for c in clones))

    assert [a.status for a in answers] == [200] * STORM
    assert stack.api.refresh_calls == 1
    assert stack.api.reuse_detected == 0
    assert all(a.set_cookies for a in answers)

    follow_ups = await asyncio.gather(*(c.request("GET", "/api/rest/proxy/me") for c in clones))
    assert [a.status for a in follow_ups] == [200] * STORM
    late = await before_storm.request("GET", "/api/rest/proxy/me")
    assert late.status == 200
    assert stack.api.refresh_calls == 1
    assert stack.api.reuse_detected == 0
