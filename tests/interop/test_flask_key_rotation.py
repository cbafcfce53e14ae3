"""Flask-JWT-Extended answers 422 (not 401) to a token it cannot decode: a refresh token signed with a
key the API no longer has must end the session, not leave it failing with 503 on every request."""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp
import pytest

from ..harness import Browser, running_gateway
from .peer import free_port
from .peers.flask.peer import PASSWORD, SETTINGS, USER, gunicorn
from .scenario import settings_from_environment


@pytest.mark.slow
async def test_refresh_refused_with_422_after_the_api_changed_its_key_ends_the_session(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    settings = settings_from_environment(SETTINGS, f"http://127.0.0.1:{port}")
    async with running_gateway(settings) as gateway_url:
        browser = Browser(http, gateway_url)
        async with gunicorn(tmp_path, port=port, secret_key=secrets.token_urlsafe(48)):
            login = await browser.request(
                "POST", "/api/auth/login", json_body={"username": USER, "password": PASSWORD}
            )
            assert login.status == 200, login.body
        # Redeployed with a new JWT_SECRET_KEY at the same address: the old tokens are unreadable (422).
        async with gunicorn(tmp_path, port=port, secret_key=secrets.token_urlsafe(48)):
            browser.forget_access_cookie()
            ended = await browser.request("GET", "/api/rest/proxy/api/echo")
            assert (ended.status, ended.code) == (401, "session_expired"), ended.body
            assert not any(name.endswith("Etls") for name in browser.cookies)
