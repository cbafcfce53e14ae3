"""What the rest provider's calls look like on the wire: the URL exactly as configured, a Content-Type
that names the body (JSON or form) and none on a call without a body.

Regression tests for issue 10: Django REST framework answered every login 415 (no Content-Type) and
its ``/api/token/`` was called as ``/api/token`` (the trailing slash was stripped).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from .harness import CREDENTIALS, Browser, running_gateway, settings_for
from .wire import WireAnswer, WireApi, WireRequest, wire_api

TOKENS = {"access": "access-1", "refresh": "refresh-1"}
ROTATED = {"access": "access-2", "refresh": "refresh-2"}


def token_api(request: WireRequest) -> WireAnswer:
    """An API in DRF + SimpleJWT's shape; anything that is not a token call gets an echo."""
    if request.target == "/api/token/":
        return WireAnswer(200, TOKENS)
    if request.target == "/api/token/refresh/":
        return WireAnswer(200, ROTATED)
    if request.target == "/api/me/":
        return WireAnswer(200, {"username": "demo"})
    return WireAnswer(200, {"ok": True})


@pytest.fixture
async def api() -> AsyncIterator[WireApi]:
    async with wire_api(token_api) as running:
        yield running


@contextlib.asynccontextmanager
async def browser_for(api: WireApi, http: aiohttp.ClientSession, **overrides: Any) -> AsyncIterator[Browser]:
    settings = settings_for(
        api.url,
        bff_access_token_field="access",
        bff_refresh_token_field="refresh",
        **overrides,
    )
    async with running_gateway(settings) as gateway_url:
        yield Browser(http, gateway_url)


async def test_absolute_endpoint_urls_keep_their_trailing_slash_and_json_is_labelled(
    api: WireApi, http: aiohttp.ClientSession
) -> None:
    """BFF_LOGIN_URL=http://…/api/token/ is called as POST /api/token/ with Content-Type application/json."""
    async with browser_for(
        api, http, bff_login_url=api.url + "/api/token/", bff_refresh_url=api.url + "/api/token/refresh/"
    ) as browser:
        await browser.login()
        browser.forget_access_cookie()
        answer = await browser.request("GET", "/api/rest/proxy/items/?page=2")
        assert answer.status == 200

    login, refresh, proxied = api.requests
    assert login.request_line == "POST /api/token/ HTTP/1.1"
    assert login.content_type == "application/json"
    assert login.json() == CREDENTIALS
    assert refresh.request_line == "POST /api/token/refresh/ HTTP/1.1"
    assert refresh.content_type == "application/json"
    assert refresh.json() == {"refresh": "refresh-1"}
    assert proxied.request_line == "GET /items/?page=2 HTTP/1.1"
    assert proxied.headers["authorization"] == "Bearer access-2"


async def test_endpoint_paths_join_remote_api_without_doubled_or_lost_slashes(
    api: WireApi, http: aiohttp.ClientSession
) -> None:
    """REMOTE_API with a trailing slash plus BFF_LOGIN_URL=/api/token/ is POST /api/token/; the GET to
    BFF_USERINFO_URL has no body and so no Content-Type."""
    async with browser_for(
        api,
        http,
        remote_api=api.url + "/",
        bff_login_url="/api/token/",
        bff_refresh_url="/api/token/refresh/",
        bff_userinfo_url="/api/me/",
    ) as browser:
        answer = await browser.login()
        assert answer.json() == {"user": {"username": "demo"}}

    login, userinfo = api.requests
    assert login.request_line == "POST /api/token/ HTTP/1.1"
    assert login.content_type == "application/json"
    assert userinfo.request_line == "GET /api/me/ HTTP/1.1"
    assert "content-type" not in userinfo.headers
    assert userinfo.body == b""
