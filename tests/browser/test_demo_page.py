"""The demo page in a real browser: login, data, expiry, a burst of calls, reload, logout, cookies."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.async_api import BrowserContext, Page, Response, expect

from .conftest import SESSION_COOKIES, DemoFactory, Screenshots

ACCESS_TTL = 3.0  # seconds; short so the test can watch the token expire
FIRE_RESULT = re.compile(r"^20/20 succeeded in \d+ ms$")
# An access token of the demo API is a JWT, and every JWT (its JSON header) starts with "eyJ".
JWT_PREFIX = "eyJ"
READABLE = {"document", "script", "fetch", "xhr"}  # answers whose body the page's script can read

FETCH_JSON = """async (path) => {
  const response = await fetch(path, { headers: { "X-CSRF": "1", Accept: "application/json" } });
  return { status: response.status, text: await response.text() };
}"""


async def log_in(page: Page) -> None:
    await expect(page.locator("#login-form")).to_be_visible()
    await page.fill("#username", "demo")
    await page.fill("#password", "demo")
    await page.click("#login-button")
    await expect(page.locator("#user-panel")).to_be_visible()
    await expect(page.locator("#user-name")).to_have_text("Demo User")


async def page_fetch(page: Page, path: str) -> dict[str, Any]:
    """``fetch(path)`` from the page's own JavaScript, as the page's code could do it."""
    answer: dict[str, Any] = await page.evaluate(FETCH_JSON, path)
    return answer


async def test_login_expiry_burst_reload_and_logout_in_chromium(
    demo_factory: DemoFactory, context: BrowserContext, screenshots: Screenshots
) -> None:
    """A user logs in, the token expires, 20 parallel calls cause one refresh, reload keeps, logout ends."""
    async with demo_factory(access_ttl=ACCESS_TTL) as demo:
        page = await context.new_page()
        await page.goto(demo.url + "/")
        await expect(page.locator("#login-form")).to_be_visible()
        await screenshots.take(page, "login-form")

        await log_in(page)
        await expect(page.locator("#user-email")).to_have_text("demo@example.com")
        await page.click("#load-items")
        rows = page.locator("#items tbody tr")
        await expect(rows).to_have_count(5)
        await expect(rows.first).to_contain_text("Keyboard")
        await expect(page.locator("#refresh-count")).to_have_text("0")
        await screenshots.take(page, "logged-in-with-items")

        # Wait for expiry as the gateway reports it: its expiresAt has passed in the page's clock,
        # and the page's own countdown says so.
        session = await page_fetch(page, "/api/auth/user")
        assert session["status"] == 200
        expires_at = json.loads(session["text"])["expiresAt"]
        await page.wait_for_function(
            """(expiresAt) => Date.now() / 1000 >= expiresAt
                && document.querySelector("#expires-in").textContent === "0 s" """,
            arg=expires_at,
        )
        await screenshots.take(page, "access-token-expired")
        assert demo.state.refresh_calls == 0, "nothing may have refreshed before the burst"

        await page.click("#fire-20")
        await expect(page.locator("#fire-result")).to_have_text(FIRE_RESULT)
        assert demo.state.refresh_calls == 1
        assert demo.state.reuse_detected == 0
        await expect(page.locator("#refresh-count")).to_have_text("1")
        await screenshots.take(page, "twenty-calls-one-refresh")

        await page.reload()
        await expect(page.locator("#user-panel")).to_be_visible()
        await expect(page.locator("#user-name")).to_have_text("Demo User")
        await expect(page.locator("#login-form")).to_be_hidden()
        await screenshots.take(page, "reloaded-still-logged-in")

        await page.click("#logout")
        await expect(page.locator("#login-form")).to_be_visible()
        await expect(page.locator("#user-panel")).to_be_hidden()
        assert [c["name"] for c in await context.cookies() if c["name"] in SESSION_COOKIES] == []
        await screenshots.take(page, "logged-out")

        # A protected call from script gets 401; a protected page load is sent to the login form.
        call = await page_fetch(page, "/api/rest/proxy/items")
        assert call["status"] == 401
        assert json.loads(call["text"])["code"] == "unauthenticated"
        await page.goto(demo.url + "/api/rest/proxy/items")
        assert page.url == demo.url + "/?returnTo=%2Fapi%2Frest%2Fproxy%2Fitems"
        await expect(page.locator("#login-form")).to_be_visible()
        await expect(page.locator("#user-panel")).to_be_hidden()
        await screenshots.take(page, "protected-page-sends-to-login")


async def test_session_cookies_are_httponly_secure_strict_and_invisible_to_javascript(
    demo_factory: DemoFactory, context: BrowserContext, screenshots: Screenshots
) -> None:
    """Chromium stores every session cookie HttpOnly, Secure, SameSite=Strict and no script sees a token."""
    async with demo_factory() as demo:
        page = await context.new_page()
        responses: list[Response] = []
        page.on("response", lambda response: responses.append(response))
        await page.goto(demo.url + "/")
        await log_in(page)
        await page.click("#load-items")
        await expect(page.locator("#items tbody tr")).to_have_count(5)
        await screenshots.take(page, "logged-in")

        cookies = {c["name"]: c for c in await context.cookies()}
        assert sorted(cookies) == sorted(SESSION_COOKIES)  # Secure cookies on http://127.0.0.1 are kept
        for name, cookie in cookies.items():
            assert cookie["httpOnly"] is True, name
            assert cookie["secure"] is True, name
            assert cookie["sameSite"] == "Strict", name
            assert cookie["path"] == "/", name
            assert cookie["domain"] == "127.0.0.1", name  # host-only: no Domain attribute
            assert cookie["expires"] > 0, name  # a Max-Age, not a browser-session cookie

        assert await page.evaluate("document.cookie") == ""
        user = await page_fetch(page, "/api/auth/user")
        assert user["status"] == 200
        assert set(json.loads(user["text"])) == {"user", "expiresAt", "sessionExpiresAt"}

        # Everything script can read: storage, the DOM, the user answer, every response body and header.
        visible = await page.evaluate(
            """() => JSON.stringify({
                 cookie: document.cookie,
                 local: Object.entries(localStorage),
                 session: Object.entries(sessionStorage),
                 html: document.documentElement.outerHTML,
               })"""
        )
        bodies = [await r.text() for r in responses if r.request.resource_type in READABLE]
        assert len(bodies) >= 5  # the page, the helper, login, user, items, ...
        # Response headers too, except Set-Cookie, which fetch() never shows to script.
        headers = [
            f"{name}: {value}"
            for r in responses
            if r.request.resource_type in READABLE
            for name, value in (await r.all_headers()).items()
            if name != "set-cookie"
        ]
        texts = [visible, user["text"], *bodies, *headers]
        # Every refresh token the demo API handed out (DemoState keeps them to detect reuse).
        issued = list(demo.state._refresh_owner)
        assert issued
        for text in texts:
            assert JWT_PREFIX not in text
            for token in issued:
                assert token not in text
            for cookie in cookies.values():
                assert cookie["value"] not in text
