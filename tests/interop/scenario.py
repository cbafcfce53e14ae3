"""The one scenario every peer of the conformance matrix runs (peers: see ``peer.py``).

A browser behind bffgate in front of a real framework's API, configured only through the settings
the peer's README recipe gives: login, a proxied GET with a query string, a POST echo, access expiry
then a storm of 20 concurrent requests (exactly one refresh reaches the API, none is rejected), the
API refusing an access token the gateway still trusts (401 → refresh → retry), logout (revocation
where the framework has it), and a refused refresh ending the session with 401 ``session_expired``.

An OpenID Connect provider's peer signs in through the provider's own pages and counts refresh grants
at its token endpoint (the hooks in ``peer.py``); the steps are the same.

The gateway's wall clock is frozen for the whole run: it never refreshes on its own, so every refresh
the API sees is one the scenario caused; the API's tokens meanwhile expire in real time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import time_machine

from bffgate import Settings, create_app, load_settings

from ..harness import SECRET_A, SECRET_R, SESSION_COOKIES, Answer, Browser, bind_loopback, serve
from .peer import Peer, RunningPeer
from .proxy import ProxyRecord, recording_proxy

STORM = 20


@dataclass(frozen=True)
class StormFigures:
    """What the API saw of the storm (reported in the issue's closing note)."""

    refresh_calls: int
    rejected: int


def gateway_settings(peer: RunningPeer, remote_api: str, public_url: str) -> Settings:
    """The peer's documented environment, as ``bffgate serve`` would read it."""
    return settings_from_environment({"BFF_PUBLIC_URL": public_url, **peer.settings}, remote_api)


def settings_from_environment(recipe: dict[str, str], remote_api: str) -> Settings:
    """A recipe's ``BFF_*`` variables with ``REMOTE_API`` and the secrets, read as ``bffgate serve`` would."""
    environment = {
        "REMOTE_API": remote_api,
        "ETLS_ACCESS": SECRET_A,
        "ETLS_REFRESH": SECRET_R,
        **recipe,
    }
    values: dict[str, Any] = {name.lower(): value for name, value in environment.items()}
    return load_settings(**values)


async def run_scenario(peer: Peer, tmp: Path, http: aiohttp.ClientSession) -> StormFigures:
    async with peer.start(tmp) as api, recording_proxy(api.url) as record:
        sock = bind_loopback()  # the gateway's URL is known before it starts: BFF_PUBLIC_URL
        settings = gateway_settings(api, record.url, f"http://127.0.0.1:{sock.getsockname()[1]}")
        with time_machine.travel(time.time(), tick=False):
            async with serve(create_app(settings), sock=sock) as gateway_url:
                return await _steps(api, record, settings, Browser(http, gateway_url))


async def _steps(api: RunningPeer, record: ProxyRecord, settings: Settings, browser: Browser) -> StormFigures:
    refresh_path = _path(settings.refresh_url, record.url)
    echo = "/api/rest/proxy" + api.echo_path

    async def refreshes() -> int:
        """Refresh calls the API (or the OIDC provider's token endpoint) has seen so far."""
        if api.refresh_calls is not None:
            return await api.refresh_calls()
        return record.count("POST", refresh_path)

    # Login, then a GET with a query string and a POST whose JSON body arrives intact.
    await _sign_in(api, browser)
    # Only the gateway's sealed cookies reach the browser (never an API's own refresh cookie).
    assert set(browser.cookies) <= set(SESSION_COOKIES), browser.cookies
    got = await browser.request("GET", echo + "?q=caf%C3%A9&page=2")
    assert got.status == 200, got.body
    assert got.json()["method"] == "GET"
    assert got.json()["query"] == "q=caf%C3%A9&page=2", got.json()
    posted = await browser.request("POST", echo, json_body={"note": "hello", "n": [1, 2]})
    assert posted.status == 200, posted.body
    assert (posted.json()["method"], posted.json()["json"]) == ("POST", {"note": "hello", "n": [1, 2]})

    # Access expiry (the browser drops the access cookie with its Max-Age), then a storm.
    browser.forget_access_cookie()
    before = await refreshes()
    storm = await asyncio.gather(*(b.request("GET", echo) for b in [browser.clone() for _ in range(STORM)]))
    figures = StormFigures(
        refresh_calls=await refreshes() - before,
        rejected=sum(1 for answer in storm if answer.status != 200),
    )
    assert figures == StormFigures(refresh_calls=1, rejected=0), [a.status for a in storm]
    browser.absorb(storm[-1].set_cookies)

    # The API refuses an access token the gateway still trusts: one refresh, the request retried.
    await _until_api_refuses(api, record, echo_path=api.echo_path)
    before = await refreshes()
    retried = await browser.request("GET", echo + "?after=401")
    assert retried.status == 200, retried.body
    assert await refreshes() - before == 1
    assert [e.status for e in record.to(api.echo_path)][-2:] == [401, 200]

    # Logout: the session ends at the gateway, and at the API where it revokes.
    out = await browser.request("POST", "/api/auth/logout")
    assert out.status == 200
    assert browser.cookies == {}
    assert (await browser.request("GET", echo)).code == "unauthenticated"
    if settings.logout_url:
        logout_path = _path(settings.logout_url, record.url)
        assert 200 <= record.to(logout_path)[-1].status < 300, "the API refused the logout"
    if api.check_logout is not None:
        await api.check_logout(out)

    # A refused refresh ends the session: 401 session_expired, cookies cleared.
    await _refused_refresh_ends_the_session(api, browser, echo)
    return figures


async def _refused_refresh_ends_the_session(api: RunningPeer, first: Browser, echo: str) -> None:
    browser = Browser(first.http, first.base)
    await _sign_in(api, browser)
    kept = browser.clone()
    if api.revokes_at_logout:
        assert (await browser.request("POST", "/api/auth/logout")).status == 200
    else:
        assert api.reject_refresh is not None, "a peer that does not revoke at logout gives reject_refresh"
        await api.reject_refresh()
    kept.forget_access_cookie()
    ended: Answer = await kept.request("GET", echo)
    assert (ended.status, ended.code) == (401, "session_expired"), ended.body
    assert not any(name.endswith("Etls") for name in kept.cookies)


async def _sign_in(api: RunningPeer, browser: Browser) -> None:
    """A login: the credentials posted to the gateway, or the peer's own pages (an OIDC provider)."""
    if api.sign_in is not None:
        await api.sign_in(browser)
        return
    login = await browser.request("POST", "/api/auth/login", json_body=api.credentials)
    assert login.status == 200, login.body


async def _until_api_refuses(api: RunningPeer, record: ProxyRecord, *, echo_path: str) -> None:
    """Wait (polling the API directly) until it refuses the access token the gateway last sent."""
    bearer = next(e.authorization for e in reversed(record.to(echo_path)) if e.authorization)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + api.access_lifetime + 10
    async with aiohttp.ClientSession() as direct:
        while loop.time() < deadline:
            async with direct.get(api.url + echo_path, headers={"Authorization": bearer}) as answer:
                if answer.status == 401:
                    return
            await asyncio.sleep(0.2)  # polling for the API's verdict, not a fixed wait
    raise AssertionError(f"the API still accepts the access token {api.access_lifetime + 10:g} s later")


def _path(url: str, base: str) -> str:
    return url.removeprefix(base)
