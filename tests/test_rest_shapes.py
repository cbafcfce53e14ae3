"""The rest provider against APIs of other shapes, as each sees it on the wire.

Form logins (FastAPI's OAuth2PasswordRequestForm), the refresh token as a form field, as
``Authorization: Bearer`` (Flask-JWT-Extended) or in the API's own cookie (a common Express pattern),
tokens nested in the answer and an absolute expiry.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import time_machine

from bffgate.errors import InvalidRequest, RefreshRejected
from bffgate.providers import LoginRefusal
from bffgate.providers.http import create_http_client
from bffgate.providers.rest import RestProvider
from bffgate.session import Session
from bffgate.tokens import TokenSet

from .harness import CREDENTIALS, Browser, running_gateway, settings_for
from .wire import WireAnswer, WireApi, WireRequest, wire_api

FLAT = {"access": "access-1", "refresh": "refresh-1"}


@contextlib.asynccontextmanager
async def provider_for(api: WireApi, **overrides: Any) -> AsyncIterator[RestProvider]:
    values = {
        "bff_login_url": "/token/",
        "bff_refresh_url": "/token/refresh/",
        "bff_access_token_field": "access",
        "bff_refresh_token_field": "refresh",
        **overrides,
    }
    settings = settings_for(api.url, **values)
    async with create_http_client(connect_timeout=5.0) as http:
        yield RestProvider(settings, http)


def answering(body: Any, *, status: int = 200, set_cookie: str | None = None) -> Any:
    headers = [("Set-Cookie", set_cookie)] if set_cookie else []
    return lambda request: WireAnswer(status, body, headers)


async def test_form_login_and_form_refresh() -> None:
    """BFF_LOGIN_BODY=form and BFF_REFRESH_TOKEN_IN=form send application/x-www-form-urlencoded."""
    async with (
        wire_api(answering(FLAT)) as api,
        provider_for(
            api, bff_login_body="form", bff_refresh_token_in="form", bff_refresh_request_field="refresh_token"
        ) as provider,
    ):
        tokens, _ = await signed_in(provider, {"username": "ann", "password": "p&ss=word"})
        await provider.refresh(tokens.refresh_token or "")
    login, refresh = api.requests
    assert login.content_type == "application/x-www-form-urlencoded"
    assert login.form() == {"username": "ann", "password": "p&ss=word"}
    assert refresh.request_line == "POST /token/refresh/ HTTP/1.1"
    assert refresh.content_type == "application/x-www-form-urlencoded"
    assert refresh.form() == {"refresh_token": "refresh-1"}


async def test_form_login_refuses_nested_credentials() -> None:
    """A form has no nesting: such credentials are a 400 from the gateway, nothing goes upstream."""
    async with wire_api(answering(FLAT)) as api, provider_for(api, bff_login_body="form") as provider:
        with pytest.raises(InvalidRequest):
            await provider.login({"username": "ann", "password": {"nested": True}})
    assert api.requests == []


async def test_refresh_token_as_bearer_has_no_body_and_no_content_type() -> None:
    """BFF_REFRESH_TOKEN_IN=header: Authorization: Bearer <refresh>, an empty body, no Content-Type."""
    async with wire_api(answering(FLAT)) as api, provider_for(api, bff_refresh_token_in="header") as provider:
        await provider.refresh("refresh-1")
    (refresh,) = api.requests
    assert refresh.headers["authorization"] == "Bearer refresh-1"
    assert refresh.body == b""
    assert "content-type" not in refresh.headers


async def test_refresh_token_in_the_apis_own_cookie_is_captured_and_sent_back() -> None:
    """BFF_REFRESH_TOKEN_IN=cookie: the refresh token is the API's Set-Cookie (login and rotation)."""
    answers = iter(
        [
            WireAnswer(200, {"access": "access-1"}, [("Set-Cookie", "rt=first; HttpOnly; Path=/token")]),
            WireAnswer(200, {"access": "access-2"}, [("Set-Cookie", "rt=second; HttpOnly; Path=/token")]),
        ]
    )

    def handler(request: WireRequest) -> WireAnswer:
        return next(answers)

    async with (
        wire_api(handler) as api,
        provider_for(api, bff_refresh_token_in="cookie", bff_refresh_cookie_name="rt") as provider,
    ):
        tokens, _ = await signed_in(provider, CREDENTIALS)
        assert tokens.refresh_token == "first"
        rotated = await provider.refresh("first")
        assert rotated.refresh_token == "second"
    _, refresh = api.requests
    assert refresh.cookies() == {"rt": "first"}
    assert refresh.body == b""
    assert "content-type" not in refresh.headers


async def test_nested_tokens_and_absolute_expiry() -> None:
    """Dotted paths reach into the answer; BFF_EXPIRES_AT_FIELD (epoch seconds) sets the lifetime."""
    now = 1_900_000_000
    nested = {
        "data": {"tokens": {"accessToken": "access-1", "refreshToken": "refresh-1"}},
        "meta": {"expires_at": now + 120},
        "name": "Ann",
    }
    async with (
        wire_api(answering(nested)) as api,
        provider_for(
            api,
            bff_access_token_field="data.tokens.accessToken",
            bff_refresh_token_field="data.tokens.refreshToken",
            bff_expires_at_field="meta.expires_at",
        ) as provider,
    ):
        with time_machine.travel(now, tick=False):
            tokens, user = await signed_in(provider, CREDENTIALS)
            await provider.refresh("refresh-1")
    assert (tokens.access_token, tokens.refresh_token) == ("access-1", "refresh-1")
    assert tokens.expires_in == 120
    assert user == {"name": "Ann"}  # the token-holding "data" and the expiry's "meta" are not user data
    assert api.requests[1].json() == {"refreshToken": "refresh-1"}


async def test_refusal_is_terminal_whatever_the_shape() -> None:
    """A 401 from the refresh endpoint is a rejection in every transport of the refresh token."""
    async with (
        wire_api(answering({"detail": "no"}, status=401)) as api,
        provider_for(api, bff_refresh_token_in="header") as provider,
    ):
        with pytest.raises(RefreshRejected):
            await provider.refresh("refresh-1")


async def test_logout_presents_tokens_as_configured() -> None:
    """Logout: the access token as Bearer and the refresh token where BFF_REFRESH_TOKEN_IN says
    (with ``header`` the refresh token is the Bearer); BFF_LOGOUT_METHOD picks the method."""
    session = Session(
        sid="s", created_at=0, access_token="access-1", access_expires_at=2e9, refresh_token="refresh-1"
    )
    async with wire_api(answering(None, status=204)) as api:
        async with provider_for(api, bff_logout_url="/logout/", bff_refresh_token_in="form") as provider:
            await provider.revoke(session)
        async with provider_for(
            api, bff_logout_url="/logout/", bff_refresh_token_in="header", bff_logout_method="DELETE"
        ) as provider:
            await provider.revoke(session)
    as_form, as_header = api.requests
    assert as_form.request_line == "POST /logout/ HTTP/1.1"
    assert as_form.headers["authorization"] == "Bearer access-1"
    assert as_form.form() == {"refresh": "refresh-1"}
    assert as_header.request_line == "DELETE /logout/ HTTP/1.1"
    assert as_header.headers["authorization"] == "Bearer refresh-1"
    assert "content-type" not in as_header.headers


async def test_the_apis_refresh_cookie_never_reaches_the_browser(http: aiohttp.ClientSession) -> None:
    """The API's own refresh cookie stays in the gateway's session; the browser only gets bffgate's."""
    answer_with_cookie = answering({"access": "access-1"}, set_cookie="rt=secret-refresh; HttpOnly; Path=/")
    async with wire_api(answer_with_cookie) as api:
        settings = settings_for(
            api.url,
            bff_access_token_field="access",
            bff_refresh_token_in="cookie",
            bff_refresh_cookie_name="rt",
        )
        async with running_gateway(settings) as gateway_url:
            browser = Browser(http, gateway_url)
            login = await browser.login()
            browser.forget_access_cookie()
            assert (await browser.request("GET", "/api/rest/proxy/x")).status == 200
    assert not any("secret-refresh" in header for header in login.set_cookies)
    assert "rt" not in browser.cookies
    _, refresh, proxied = api.requests
    assert refresh.cookies() == {"rt": "secret-refresh"}
    assert "cookie" not in proxied.headers


async def signed_in(provider: RestProvider, credentials: dict[str, Any]) -> tuple[TokenSet, dict[str, Any]]:
    """The tokens and user of a login the API accepted (a refusal fails the test)."""
    outcome = await provider.login(credentials)
    assert not isinstance(outcome, LoginRefusal), outcome
    return outcome
