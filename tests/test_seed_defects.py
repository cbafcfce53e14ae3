"""The seed's fourteen defects (../shared/seed/README.md), showing bffgate has none of them: one test
each, except 12 and 13, which are security requirements and tested once, in test_security.py.

Every test runs a real gateway in front of a real upstream (the demo API with refresh-token rotation
and reuse detection, plus recording endpoints) and looks only at what a browser and the API see.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import time_machine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from yarl import URL

from bffgate.demo.api import DEMO_USER

from .conftest import StackFactory
from .harness import (
    ACCESS,
    REFRESH,
    SESSION_COOKIES,
    USER,
    Answer,
    Browser,
    Stack,
    closed_port,
    parse_set_cookie,
    running_gateway,
    serve,
    settings_for,
)
from .upstream import Recorded

COOKIE_ATTRIBUTES = {"max-age", "path", "httponly", "secure", "samesite"}
SEVEN_DAYS = 7 * 24 * 3600


# -- helpers --------------------------------------------------------------------------------------


def bearer(recorded: Recorded) -> str:
    """The token the upstream received in ``Authorization: Bearer``."""
    scheme, _, token = recorded.headers.get("authorization", "").partition(" ")
    assert scheme == "Bearer", recorded.headers
    return token


def cookies_set(answer: Answer) -> dict[str, tuple[str, dict[str, str]]]:
    """``name -> (value, attributes)`` for every Set-Cookie header of an answer."""
    parsed = (parse_set_cookie(header) for header in answer.set_cookies)
    return {name: (value, attributes) for name, value, attributes in parsed}


def cleared(answer: Answer) -> set[str]:
    """Names of the cookies an answer deletes (Max-Age=0)."""
    return {name for name, (_, attrs) in cookies_set(answer).items() if attrs.get("max-age") == "0"}


def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


async def send_raw(browser: Browser, method: str, raw_target: str, *, data: Any = None) -> Answer:
    """A request whose path goes on the wire exactly as written (no client-side normalisation)."""
    headers = {"X-CSRF": "1", "Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}
    url = URL(browser.base + raw_target, encoded=True)
    async with browser.http.request(
        method, url, headers=headers, data=data, allow_redirects=False
    ) as response:
        return Answer(response.status, response.headers, await response.read())


# -- 1 ------------------------------------------------------------------------------------------


async def test_defect_01_refresh_route_works(stack: Stack) -> None:
    """Defect 1: "`parse` is used in the refresh route but never imported" — the route must actually work."""
    browser = await stack.logged_in()
    answer = await browser.request("POST", "/api/rest/refreshresttokens")
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["message"] == "Tokens refreshed"
    assert time.time() + 10 < body["expiresAt"] <= time.time() + 21
    assert stack.api.refresh_calls == 1
    assert set(cookies_set(answer)) >= set(SESSION_COOKIES)
    assert (await browser.request("GET", "/api/rest/proxy/me")).json() == dict(DEMO_USER)
    assert stack.api.refresh_calls == 1
    assert stack.api.reuse_detected == 0


# -- 2 ------------------------------------------------------------------------------------------


async def test_defect_02_one_set_cookie_header_per_cookie(stack: Stack) -> None:
    """Defect 2: "three cookies are joined into one Set-Cookie header with ', '" — each needs its own header."""
    browser = stack.browser()
    login = await browser.login()
    await browser.request("POST", "/api/rest/refreshresttokens")
    browser.forget_access_cookie()
    refreshed = await browser.request("GET", "/api/rest/proxy/items")
    assert refreshed.status == 200
    for answer in (login, refreshed):
        headers = answer.headers.getall("Set-Cookie")
        assert len(headers) == 3, headers
        names = [parse_set_cookie(header)[0] for header in headers]
        assert sorted(names) == sorted(SESSION_COOKIES)
        for header in headers:
            _, value, attributes = parse_set_cookie(header)
            assert "," not in value
            assert set(attributes) <= COOKIE_ATTRIBUTES, header


# -- 3 ------------------------------------------------------------------------------------------


async def test_defect_03_upstream_receives_the_refreshed_token(stack: Stack) -> None:
    """Defect 3: "the refreshed token is never used and the API gets `Bearer undefined`" — it gets the new one."""
    browser = await stack.logged_in()
    assert (await browser.request("GET", "/api/rest/proxy/echo/before")).status == 200
    before = bearer(stack.recorder.to("/echo/before")[0])
    browser.forget_access_cookie()

    answer = await browser.request("GET", "/api/rest/proxy/echo/after")

    assert answer.status == 200
    calls = stack.recorder.to("/echo/after")
    assert len(calls) == 1  # the first attempt already carried a valid token: no 401, no retry
    after = bearer(calls[0])
    assert after not in ("undefined", "null", "", before)
    old_claims = stack.api.verify_access_token(before)
    new_claims = stack.api.verify_access_token(after)
    assert old_claims is not None
    assert new_claims is not None
    assert new_claims.fam == old_claims.fam  # the same login, rotated once
    assert new_claims.jti != old_claims.jti
    assert stack.api.refresh_calls == 1


# -- 4 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "envelope"),
    [
        ("GET", "/api/rest/proxy/echo/x", None),
        ("POST", "/api/rest/customfetch", {"url": "/echo/x"}),
    ],
    ids=["proxy", "customfetch"],
)
async def test_defect_04_refreshed_cookies_reach_the_browser_on_the_response_itself(
    stack: Stack, method: str, path: str, envelope: dict[str, Any] | None
) -> None:
    """Defect 4: "the new cookies land on a server-to-server response" — they come with the API's answer."""
    browser = await stack.logged_in()
    old_refresh = browser.cookies[REFRESH]
    browser.forget_access_cookie()

    answer = await browser.request(method, path, json_body=envelope)

    assert answer.status == 200
    assert answer.headers["X-Upstream"] == "yes"  # the API's own answer, not a refresh route's
    assert answer.headers["Cache-Control"] == "no-store"
    new = cookies_set(answer)
    assert set(new) == set(SESSION_COOKIES)
    assert new[REFRESH][0] != old_refresh
    assert stack.api.refresh_calls == 1
    # The browser now holds working tokens: the next call needs no refresh at all.
    assert (await browser.request("GET", "/api/rest/proxy/me")).status == 200
    assert stack.api.refresh_calls == 1
    # And the refresh route answers without tokens: nothing for JavaScript to read.
    forced = await browser.request("POST", "/api/rest/refreshresttokens")
    assert set(forced.json()) == {"message", "expiresAt"}


# -- 5 ------------------------------------------------------------------------------------------


async def test_defect_05_cookie_names_written_and_read_agree(stack: Stack) -> None:
    """Defect 5: "cookie names disagree (`accessToken` vs `accessTokenEtls`)" — one set of names throughout."""
    browser = stack.browser()
    login = await browser.login()
    assert set(cookies_set(login)) == set(SESSION_COOKIES)

    # The names it writes are the names it reads: the access cookie is used, no refresh needed.
    assert (await browser.request("GET", "/api/rest/proxy/items")).status == 200
    assert stack.api.refresh_calls == 0

    # A cookie under the seed's other name is not mistaken for the access token.
    renamed = browser.clone()
    renamed.cookies["accessToken"] = renamed.cookies.pop(ACCESS)
    assert (await renamed.request("GET", "/api/rest/proxy/items")).status == 200
    assert stack.api.refresh_calls == 1

    # Logout clears the very same names.
    logout = await browser.request("POST", "/api/auth/logout")
    assert logout.status == 200
    assert cleared(logout) >= set(SESSION_COOKIES)


# -- 6 ------------------------------------------------------------------------------------------


async def test_defect_06_fetch_without_session_gets_401_json_not_a_redirect(stack: Stack) -> None:
    """Defect 6: "a redirect is the wrong answer to a fetch() call" — a fetch gets a 401 problem."""
    fetch_headers = {"Accept": "*/*", "Sec-Fetch-Mode": "cors"}
    browser = stack.browser()
    for method, path, body in (
        ("GET", "/api/rest/proxy/items", None),
        ("POST", "/api/rest/customfetch", {"url": "/items"}),
        ("GET", "/api/auth/user", None),
    ):
        answer = await browser.request(method, path, headers=fetch_headers, json_body=body)
        assert answer.status == 401, (path, answer.status)
        assert "Location" not in answer.headers
        assert answer.code == "unauthenticated"

    # A session the provider ends is the same kind of answer, not the login page.
    browser = await stack.logged_in()
    browser.forget_access_cookie()
    stack.recorder.refresh_answer = JSONResponse({"error": "invalid_grant"}, 400)
    ended = await browser.request("GET", "/api/rest/proxy/items", headers=fetch_headers)
    assert ended.status == 401
    assert "Location" not in ended.headers
    assert ended.code == "session_expired"
    assert stack.recorder.to("/items") == []


# -- 7 ------------------------------------------------------------------------------------------


async def test_defect_07_user_data_is_encrypted_and_holds_the_user(stack: Stack) -> None:
    """Defect 7: "userDataEtls is always {}" and "only signed: readable base64" — it is encrypted and complete."""
    browser = await stack.logged_in()
    for name in SESSION_COOKIES:
        segments = browser.cookies[name].split(".")
        assert len(segments) == 5, name  # compact JWE, not a three-part JWS
        header = json.loads(b64decode(segments[0]))
        assert (header["alg"], header["enc"]) == ("dir", "A256GCM")
        for segment in segments:
            decoded = b64decode(segment)
            for secret_bit in (b"Demo User", b"demo@example.com", b'"sid"', b'"rt"'):
                assert secret_bit not in decoded, (name, secret_bit)

    browser.forget_access_cookie()  # the access and userData cookies' Max-Age ran out
    answer = await browser.request("GET", "/api/auth/user")
    assert answer.status == 200
    assert answer.json()["user"] == dict(DEMO_USER)
    assert stack.api.refresh_calls == 1
    assert USER in cookies_set(answer)

    again = await browser.request("GET", "/api/auth/user")  # from the refreshed userData cookie
    assert again.json()["user"] == dict(DEMO_USER)
    assert stack.api.refresh_calls == 1


# -- 8 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("envelope", "@evil.example/x"),
        ("envelope", "/../../items"),
        ("envelope", "/inside/../../../items"),
        ("envelope", "/%2e%2e/%2e%2e/items"),
        ("envelope", "/..%2f..%2fitems"),
        ("proxy", "@evil.example/x"),
        ("proxy", "../../items"),
        ("proxy", "%2e%2e/%2E%2E/items"),
        ("proxy", "..%2F..%2Fitems"),
    ],
)
async def test_defect_08_client_url_cannot_leave_the_api_base(stack: Stack, kind: str, target: str) -> None:
    """Defect 8: "`${REMOTE_API}${url}` with `@evil.example/x` or `/../`" — nothing leaves REMOTE_API's path."""
    browser = await stack.logged_in()
    base_path = "/echo/base"
    async with running_gateway(settings_for(stack.api_url + base_path)) as gateway_url:
        scoped = browser.clone()
        scoped.base = gateway_url
        inside = await scoped.request("POST", "/api/rest/customfetch", json_body={"url": "/inside"})
        assert inside.status == 200  # the control: a legitimate path reaches the API under its base
        if kind == "envelope":
            answer = await scoped.request("POST", "/api/rest/customfetch", json_body={"url": target})
        else:
            answer = await send_raw(scoped, "GET", "/api/rest/proxy/" + target)
    assert answer.status == 400
    assert answer.code == "invalid_url"
    proxied = [r.raw_path for r in stack.recorder.requests if not r.raw_path.startswith("/auth/")]
    assert proxied == [base_path + "/inside"]


# -- 9 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("envelope", "status", "method"),
    [
        ({"url": "/echo/x"}, 200, "GET"),
        ({"url": "/echo/x", "options": None}, 200, "GET"),
        ({"url": "/echo/x", "options": {}}, 200, "GET"),
        ({"url": "/echo/x", "options": {"method": "put", "body": "b"}}, 200, "PUT"),
        (
            {
                "url": "/echo/x",
                "options": {
                    "headers": {
                        "Authorization": "Bearer stolen",
                        "Cookie": "session=stolen",
                        "Host": "evil.example",
                        "X-Forwarded-For": "203.0.113.9",
                        "Connection": "close, X-Custom",
                        "X-Custom": "hop-named",
                        "X-Kept": "kept",
                    }
                },
            },
            200,
            "GET",
        ),
        ({"url": "/echo/x", "options": "POST"}, 400, None),
        ({"url": "/echo/x", "options": ["POST"]}, 400, None),
        ({"url": "/echo/x", "options": {"method": "CONNECT"}}, 400, None),
        ({"url": "/echo/x", "options": {"method": "GET\r\nX-Injected: 1"}}, 400, None),
        ({"url": "/echo/x", "options": {"method": 7}}, 400, None),
        ({"url": "/echo/x", "options": {"headers": {"X-A": "1\r\nX-Injected: 1"}}}, 400, None),
        ({"url": "/echo/x", "options": {"headers": {"X-A": 1}}}, 400, None),
        ({"url": "/echo/x", "options": {"headers": "X-A: 1"}}, 400, None),
    ],
    ids=[
        "missing",
        "null",
        "empty",
        "lower-case-method",
        "credential-headers",
        "options-string",
        "options-list",
        "connect",
        "crlf-method",
        "method-number",
        "crlf-header",
        "header-number",
        "headers-string",
    ],
)
async def test_defect_09_options_are_validated_and_may_be_missing(
    stack: Stack, envelope: dict[str, Any], status: int, method: str | None
) -> None:
    """Defect 9: "client-chosen options go straight into fetch; a missing options crashes" — neither happens."""
    browser = await stack.logged_in()
    answer = await browser.request("POST", "/api/rest/customfetch", json_body=envelope)
    assert answer.status == status, answer.body
    calls = stack.recorder.to("/echo")
    if method is None:
        assert answer.code == "invalid_request"
        assert calls == []
        return
    assert [c.method for c in calls] == [method]
    received = calls[0].headers
    assert stack.api.verify_access_token(bearer(calls[0])) is not None  # the session's, not "stolen"
    assert "cookie" not in received
    assert received["host"] == URL(stack.api_url).raw_authority
    assert "x-forwarded-for" not in received
    assert "x-injected" not in received
    if "headers" in (envelope.get("options") or {}):
        assert received["x-kept"] == "kept"
        assert "x-custom" not in received  # named by Connection: hop-by-hop


# -- 10 -----------------------------------------------------------------------------------------

BINARY = bytes(range(256)) * 1200  # 300 KiB: streamed, not read at once


def passthrough_api() -> Starlette:
    """An API whose answers are not 200 JSON: the gateway must hand them over as they are."""

    async def no_content(request: Request) -> Response:
        return Response(status_code=204, headers={"X-Kind": "nothing"})

    async def download(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(BINARY), 50_000):
                yield BINARY[start : start + 50_000]

        return StreamingResponse(
            chunks(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": 'attachment; filename="data.bin"', "X-Kind": "file"},
        )

    async def text(request: Request) -> Response:
        return PlainTextResponse("accepted, not JSON", 202, headers={"X-Kind": "text"})

    async def created(request: Request) -> Response:
        return JSONResponse({"id": 7}, 201, headers={"Location": "/things/7", "X-Kind": "created"})

    async def gone(request: Request) -> Response:
        return Response(b"<h1>Gone</h1>", 410, media_type="text/html", headers={"X-Kind": "gone"})

    return Starlette(
        routes=[
            Route("/no-content", no_content, methods=["DELETE", "GET"]),
            Route("/download", download),
            Route("/text", text, methods=["POST"]),
            Route("/created", created, methods=["POST"]),
            Route("/gone", gone),
        ]
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "content_type", "body", "extra_header"),
    [
        ("DELETE", "/no-content", 204, None, b"", None),
        ("GET", "/download", 200, "application/octet-stream", BINARY, "Content-Disposition"),
        ("POST", "/text", 202, "text/plain; charset=utf-8", b"accepted, not JSON", None),
        ("POST", "/created", 201, "application/json", b'{"id":7}', "Location"),
        ("GET", "/gone", 410, "text/html; charset=utf-8", b"<h1>Gone</h1>", None),
    ],
    ids=["204", "binary", "text-202", "created-201", "html-410"],
)
async def test_defect_10_status_headers_and_non_json_bodies_pass_through(
    stack: Stack,
    method: str,
    path: str,
    status: int,
    content_type: str | None,
    body: bytes,
    extra_header: str | None,
) -> None:
    """Defect 10: "every answer becomes 200 JSON; a file or a 204 becomes a 500" — all pass through intact."""
    async with serve(passthrough_api(), lifespan="off") as api_url:
        settings = settings_for(
            api_url,
            bff_login_url=stack.api_url + "/auth/login",
            bff_refresh_url=stack.api_url + "/auth/refresh",
        )
        async with running_gateway(settings) as gateway_url:
            browser = Browser(stack.http, gateway_url)
            await browser.login()
            for answer in (
                await browser.request(method, "/api/rest/proxy" + path),
                await browser.request(
                    "POST", "/api/rest/customfetch", json_body={"url": path, "options": {"method": method}}
                ),
            ):
                assert answer.status == status
                assert answer.body == body
                assert answer.headers.get("Content-Type") == content_type
                assert answer.headers["X-Kind"]
                if extra_header is not None:
                    assert extra_header in answer.headers


# -- 11 -----------------------------------------------------------------------------------------


async def test_defect_11_network_glitch_during_refresh_is_503_and_keeps_the_session(
    make_stack: StackFactory,
) -> None:
    """Defect 11: "a network glitch during refresh logs the user out" — it answers 503 and the session lives."""
    unreachable = f"http://127.0.0.1:{closed_port()}/auth/refresh"
    async with make_stack(bff_refresh_url=unreachable) as stack:
        browser = await stack.logged_in()
        held = dict(browser.cookies)
        browser.forget_access_cookie()

        answer = await browser.request("GET", "/api/rest/proxy/items")

        assert answer.status == 503
        assert answer.code == "refresh_unavailable"
        assert cleared(answer) == set()
        assert browser.cookies[REFRESH] == held[REFRESH]
        assert stack.recorder.to("/items") == []
        # Once the refresh endpoint is reachable again, the very same cookies carry on.
        async with running_gateway(settings_for(stack.api_url)) as healthy_url:
            browser.base = healthy_url
            again = await browser.request("GET", "/api/rest/proxy/items")
        assert again.status == 200
        assert stack.api.refresh_calls == 1
        assert stack.api.reuse_detected == 0


# -- 12 and 13 ----------------------------------------------------------------------------------
# Owned by the security suite, whose requirements they are (one owner per behaviour):
# 12 "parallel requests with an expired token each refresh": requirement 9,
#    test_security.py::test_storm_after_expiry_refreshes_once_and_every_cookie_set_keeps_working;
# 13 "no CSRF defence beyond SameSite; cookies have no Max-Age": requirement 4,
#    test_proxy_without_csrf_is_403_and_nothing_goes_upstream, test_gateway_endpoints_without_csrf_are_403,
#    test_foreign_origin_is_403_even_with_csrf_header; requirement 1, test_login_cookie_lifetimes.


# -- 14 -----------------------------------------------------------------------------------------


async def test_defect_14_token_about_to_expire_is_refreshed_before_the_call(stack: Stack) -> None:
    """Defect 14: "no check of the access token's expiry: every expiry costs a failed upstream call"."""
    browser = await stack.logged_in()
    logged_in_at = time.time()

    with time_machine.travel(logged_in_at + 10, tick=True):  # 10 s left of 20: no reason to refresh
        assert (await browser.request("GET", "/api/rest/proxy/echo/early")).status == 200
    assert stack.api.refresh_calls == 0
    original = bearer(stack.recorder.to("/echo/early")[0])

    with time_machine.travel(logged_in_at + 17, tick=True):  # 3 s left, inside the 5 s skew
        assert stack.api.verify_access_token(original) is not None  # still valid: the refresh is early
        answer = await browser.request("GET", "/api/rest/proxy/echo/late")

    assert answer.status == 200
    assert stack.api.refresh_calls == 1
    calls = stack.recorder.to("/echo/late")
    assert len(calls) == 1  # one upstream call, no 401 first
    assert bearer(calls[0]) != original
    paths = [r.raw_path for r in stack.recorder.requests]
    assert paths.index("/auth/refresh") < paths.index("/echo/late")
