"""Forward-auth with routes (``BFF_ROUTES``), with the real nginx and Caddy in front: the decision
follows the route of the original URI, and the front proxy sends the API exactly the token bffgate
handed over (none at all when the route's rule gives none)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from .fronts import FRONTS, Front, assert_no_token, front_stack

RULES = (("/api/open/", "user-or-none"), ("/api/pub/", "none"))


@pytest.fixture(params=FRONTS)
async def front(request: pytest.FixtureRequest, http: aiohttp.ClientSession) -> AsyncIterator[Front]:
    async with front_stack(request.param, http, rules=RULES) as started:
        yield started


def last_sent(front: Front, path: str) -> dict[str, str]:
    """The headers of the API's last request for ``path`` (the route's prefix replaced by /status)."""
    sent = front.recorder.requests[-1]
    assert sent.raw_path == path, sent.raw_path
    return dict(sent.headers)


async def test_a_user_or_none_route_sends_no_authorization_without_a_session_and_the_users_with_one(
    front: Front,
) -> None:
    anonymous = front.browser()
    got = await anonymous.request(
        "GET", "/api/open/200?q=1", csrf=False, headers={"Authorization": "Bearer forged"}
    )
    assert got.status == 200, got.body
    assert "authorization" not in last_sent(front, "/status/200"), str(
        last_sent(front, "/status/200").get("authorization")
    )
    posted = await anonymous.request("POST", "/api/open/200", json_body={})
    assert posted.status == 200, posted.body
    assert "authorization" not in last_sent(front, "/status/200")
    refused = await anonymous.request("POST", "/api/open/200", csrf=False, json_body={})
    assert (refused.status, refused.code) == (403, "csrf_failed"), "CSRF holds on every route"

    browser = await front.logged_in()
    signed_in = await browser.request("GET", "/api/open/200?q=1", csrf=False)
    assert signed_in.status == 200, signed_in.body
    token = last_sent(front, "/status/200")["authorization"].removeprefix("Bearer ")
    assert front.api.verify_access_token(token) is not None, "the user's own token"
    again = await anonymous.request("GET", "/api/open/200?q=1", csrf=False)
    assert "authorization" not in last_sent(front, "/status/200"), "a cached yes is not another's"
    assert_no_token(front, got, posted, refused, signed_in, again)


async def test_a_none_route_never_receives_the_users_token(front: Front) -> None:
    browser = await front.logged_in()
    for method in ("GET", "POST"):
        got = await browser.request(method, "/api/pub/200", json_body={} if method == "POST" else None)
        assert got.status == 200, got.body
        assert "authorization" not in last_sent(front, "/status/200")
        assert_no_token(front, got)
    # The same session on a path outside every route: the user's token, as without routes.
    default = await browser.request("GET", "/api/echo/things", csrf=False)
    assert default.status == 200, default.body
    assert last_sent(front, "/echo/things")["authorization"].startswith("Bearer ")
    anonymous = await front.browser().request("GET", "/api/echo/things")
    assert (anonymous.status, anonymous.code) == (401, "unauthenticated"), "outside routes: a session"


async def test_a_path_that_normalizes_into_another_location_is_refused(front: Front) -> None:
    """``/api/pub/%2E%2E/status/200`` is ``/api/status/200`` to the front proxy (the default API,
    which needs a session); judged by the ``none`` route's prefix it would pass without one."""
    before = len(front.recorder.requests)
    url = URL(front.url + "/api/pub/%2E%2E/status/200", encoded=True)  # sent as written
    async with front.http.get(url, allow_redirects=False) as response:
        status, body = response.status, await response.read()
    assert (status, json.loads(body)["code"]) == (400, "invalid_request"), body
    assert front.recorder.requests[before:] == [], "never forwarded"


async def test_a_cached_decision_of_one_route_never_answers_another(front: Front) -> None:
    """nginx keys cached decisions on the URI's path too: the same request to a ``none`` route and
    then to a ``user-or-none`` one gets each route's own answer, in both orders."""
    browser = await front.logged_in()
    for first, second in (("/api/pub/200", "/api/open/200"), ("/api/open/200", "/api/pub/200")):
        for path in (first, second, first, second):
            got = await browser.request("GET", path, csrf=False)
            assert got.status == 200, got.body
            sent = last_sent(front, "/status/200")
            assert ("authorization" in sent) == (path == "/api/open/200"), path
