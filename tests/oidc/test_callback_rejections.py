"""Callbacks that must never create a session: each is refused with 400 login_failed."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest

from ..harness import Answer, Browser
from .conftest import OidcStack, query

TX_COOKIE = "__Host-oidcTxEtls"


def with_params(url: str, **changes: str) -> str:
    """``url`` with some query parameters replaced."""
    parts = urlsplit(url)
    return parts._replace(query=urlencode({**query(url), **changes})).geturl()


def assert_refused(answer: Answer, browser: Browser, reason: str) -> None:
    """400 login_failed naming ``reason``, no session cookie set, the transaction cookie cleared."""
    assert answer.status == 400, answer.body
    assert answer.code == "login_failed"
    assert reason in answer.json()["detail"]
    assert not any("refreshTokenEtls" in c or "accessTokenEtls" in c for c in answer.set_cookies)
    assert browser.cookies == {}
    assert answer.headers["Cache-Control"] == "no-store"


async def test_tampered_state_is_rejected(oidc: OidcStack) -> None:
    """A callback whose state differs from the transaction's is refused before any code exchange."""
    browser = oidc.browser()
    callback_url = await oidc.user().sign_in(await oidc.start_login(browser))
    tampered = with_params(callback_url, state=query(callback_url)["state"][:-2] + "xx")
    answer = await oidc.callback(browser, tampered)
    assert_refused(answer, browser, "state")
    assert await oidc.provider.stats(oidc.client.client_id) == {}  # the code was never exchanged


async def test_replayed_callback_is_rejected_even_with_the_transaction_cookie(oidc: OidcStack) -> None:
    """A callback used once cannot be used again, even by a copy of the browser that kept the cookie."""
    browser = oidc.browser()
    callback_url = await oidc.user().sign_in(await oidc.start_login(browser))
    copy = browser.clone()  # holds the transaction cookie, as an attacker's copy would
    assert TX_COOKIE in copy.cookies
    assert (await oidc.callback(browser, callback_url)).status == 302
    assert_refused(await oidc.callback(copy, callback_url), copy, "already used")
    replay = await oidc.callback(browser, callback_url)  # the real browser no longer has the cookie
    assert replay.status == 400
    assert replay.code == "login_failed"
    assert "no sign-in is in progress" in replay.json()["detail"]
    assert (await oidc.provider.stats(oidc.client.client_id)) == {"authorization_code 200": 1}


async def test_callback_in_another_browser_is_rejected(oidc: OidcStack) -> None:
    """A callback URL opened in a browser that did not start the login (login CSRF) is refused."""
    callback_url = await oidc.user().sign_in(await oidc.start_login(oidc.browser()))
    victim = oidc.browser()
    assert_refused(await oidc.callback(victim, callback_url), victim, "no sign-in is in progress")


async def test_wrong_nonce_is_rejected(oidc: OidcStack) -> None:
    """An ID token carrying another nonce than the transaction's is refused."""
    browser = oidc.browser()
    authorization_url = await oidc.start_login(browser)
    callback_url = await oidc.user().sign_in(with_params(authorization_url, nonce="not-the-gateways-nonce"))
    assert_refused(await oidc.callback(browser, callback_url), browser, "nonce")
    assert (await oidc.provider.stats(oidc.client.client_id)) == {"authorization_code 200": 1}


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("foreign-key", "signature does not verify"),
        ("unknown-kid", "key the provider does not publish"),
        ("alg-none", "algorithm 'none' is not allowed"),
        ("hs256-public-key", "algorithm 'HS256' is not allowed"),
    ],
)
async def test_id_token_not_signed_by_the_provider_is_rejected(
    oidc: OidcStack, mode: str, reason: str
) -> None:
    """An ID token signed by another key, with an unknown kid, unsigned, or HMAC'd with the public key is refused."""
    await oidc.provider.forge_next_id_token(oidc.client.client_id, mode)
    browser = oidc.browser()
    callback_url = await oidc.user().sign_in(await oidc.start_login(browser))
    assert_refused(await oidc.callback(browser, callback_url), browser, reason)
    answer = await oidc.login(browser)  # the next, genuine token is accepted
    assert answer.headers["Location"] == "/dashboard"


async def test_mixed_up_issuer_is_rejected(oidc: OidcStack) -> None:
    """A callback whose RFC 9207 iss names another issuer is refused."""
    browser = oidc.browser()
    callback_url = await oidc.user().sign_in(await oidc.start_login(browser))
    answer = await oidc.callback(browser, with_params(callback_url, iss="https://attacker.example"))
    assert_refused(answer, browser, "iss")


async def test_forged_code_is_rejected(oidc: OidcStack) -> None:
    """A code the provider did not issue fails the exchange and is refused."""
    browser = oidc.browser()
    callback_url = await oidc.user().sign_in(await oidc.start_login(browser))
    answer = await oidc.callback(browser, with_params(callback_url, code="forged-code"))
    assert_refused(answer, browser, "invalid_grant")


async def test_cancelled_login_shows_an_error_page_to_a_navigation(oidc: OidcStack) -> None:
    """When the user cancels at the provider, the callback (a page navigation) shows a 400 HTML page."""
    browser = oidc.browser()
    callback_url = await oidc.user().sign_in(await oidc.start_login(browser), cancel=True)
    assert query(callback_url)["error"] == "access_denied"
    path = callback_url.removeprefix(oidc.gateway_url)
    answer = await browser.request("GET", path, csrf=False, headers={"Sec-Fetch-Mode": "navigate"})
    assert answer.status == 400
    assert answer.headers["Content-Type"].startswith("text/html")
    assert b"access_denied" in answer.body
    assert b"login_failed" in answer.body
    assert browser.cookies == {}
