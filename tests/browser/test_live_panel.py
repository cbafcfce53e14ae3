"""The demo page's live panel in Chromium: a ticking counter over a WebSocket through the gateway,
closed by the gateway with 4401 when the session is logged out."""

from __future__ import annotations

from playwright.async_api import BrowserContext, WebSocket, expect

from .conftest import DemoFactory, Screenshots
from .test_demo_page import log_in, page_fetch

LOGOUT = """async () => {
  const response = await fetch("/api/auth/logout", { method: "POST", headers: { "X-CSRF": "1" } });
  return response.status;
}"""


async def test_live_panel_ticks_over_a_websocket_and_ends_with_the_session(
    demo_factory: DemoFactory, context: BrowserContext, screenshots: Screenshots
) -> None:
    """After login the counter ticks (the demo API's /ticks through /api/rest/proxy); a logout that
    bypasses the page's own code still ends the socket (4401) and the page shows the login form."""
    async with demo_factory() as demo:
        page = await context.new_page()
        sockets: list[WebSocket] = []
        page.on("websocket", lambda socket: sockets.append(socket))
        await page.goto(demo.url + "/")
        await log_in(page)
        await expect(page.locator("#live-status")).to_have_text("connected")
        await page.wait_for_function('Number(document.querySelector("#live-count").textContent) >= 3')
        await screenshots.take(page, "live-panel-ticking")
        assert [s.url for s in sockets] == [demo.url.replace("http://", "ws://") + "/api/rest/proxy/ticks"]

        # Logged out behind the page's back (as another tab or instance would): the gateway closes.
        assert await page.evaluate(LOGOUT) == 200
        await expect(page.locator("#live-status")).to_have_text("closed (4401)")
        await expect(page.locator("#login-form")).to_be_visible()
        await expect(page.locator("#session-note")).to_have_text(
            "Your session has ended. Please log in again."
        )
        await screenshots.take(page, "live-panel-session-ended")
        assert (await page_fetch(page, "/api/auth/user"))["status"] == 401
