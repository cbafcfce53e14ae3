"""Hostile input: every request gets a clear answer (never a 500, a traceback or a token) and loses nothing.

Each test logs a browser in, sends something hostile — with the browser's own cookies, or with cookies
an attacker made up — and then checks that the same browser's session still works.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from starlette.responses import JSONResponse, Response
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
    nothing_goes_upstream,
    parse_set_cookie,
    running_gateway,
    settings_for,
)

PROBLEM = "application/problem+json"
OTHER_SECRET_A = "x" * 16 + "-another-gateway-access-0123456789"
OTHER_SECRET_R = "y" * 16 + "-another-gateway-refresh-0123456789"


# -- helpers --------------------------------------------------------------------------------------


async def send(
    browser: Browser,
    method: str,
    target: str,
    *,
    cookie_header: str | None = None,
    headers: Mapping[str, str] | None = None,
    data: Any = None,
    json_body: Any = None,
    expect100: bool = False,
) -> Answer:
    """A request sent exactly as written: the target is not normalised, the Cookie header may be forged.

    With the browser's own cookies, the answer's Set-Cookie headers are kept as a browser would; a
    forged ``cookie_header`` is someone else's request and leaves the browser alone.
    """
    sent = {"X-CSRF": "1", **(headers or {})}
    cookie = cookie_header if cookie_header is not None else own_cookies(browser)
    if cookie:
        sent["Cookie"] = cookie
    async with browser.http.request(
        method,
        URL(browser.base + target, encoded=True),
        headers=sent,
        data=data,
        json=json_body,
        allow_redirects=False,
        expect100=expect100,
    ) as response:
        answer = Answer(response.status, response.headers, await response.read())
    if cookie_header is None:
        browser.absorb(answer.set_cookies)
    return answer


def own_cookies(browser: Browser) -> str:
    return "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


def cleared(answer: Answer) -> set[str]:
    """Names of the cookies an answer deletes (Max-Age=0)."""
    parsed = (parse_set_cookie(header) for header in answer.set_cookies)
    return {name for name, _, attributes in parsed if attributes.get("max-age") == "0"}


def issued_refresh_tokens(stack: Stack) -> set[str]:
    """Every refresh token the demo API ever issued (it keeps them all for reuse detection)."""
    return set(stack.api._refresh_owner)


def assert_clean_problem(answer: Answer, stack: Stack, status: int, code: str) -> None:
    """An RFC 9457 answer with the expected status and code, and nothing in it that must not be."""
    assert answer.status == status, answer.body[:300]
    assert answer.headers["Content-Type"].startswith(PROBLEM)
    body = answer.json()
    assert body["code"] == code
    assert body["status"] == status
    assert_nothing_leaks(answer, stack)


def assert_nothing_leaks(answer: Answer, stack: Stack) -> None:
    """No traceback and no token (JWT access token or issued refresh token) in the body or headers."""
    visible = answer.body + "\n".join(answer.headers.values()).encode("latin-1", "replace")
    assert b"Traceback" not in visible
    assert b"eyJ" not in answer.body  # a JWT (the demo's access tokens) or a sealed value
    for token in issued_refresh_tokens(stack):
        assert token.encode() not in visible
    for recorded in stack.recorder.requests:
        _, _, token = recorded.headers.get("authorization", "").partition(" ")
        if token:
            assert token.encode() not in visible


async def assert_still_works(browser: Browser, stack: Stack) -> None:
    """The browser's session survived: the API answers it, and no token was ever reused."""
    answer = await browser.request("GET", "/api/rest/proxy/me")
    assert answer.status == 200, answer.body[:300]
    assert answer.json() == dict(DEMO_USER)
    assert stack.api.reuse_detected == 0


def jwe_like(header: dict[str, Any]) -> str:
    """Five dot-separated segments whose first is ``header``: a forged compact JWE."""
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return ".".join([encoded, "AAAA", "AAAAAAAAAAAAAAAA", "AAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAA"])


async def chunked(sizes: list[int]) -> AsyncIterator[bytes]:
    """A request body without Content-Length (sent chunked), growing chunk by chunk."""
    for size in sizes:
        yield b"x" * size


@pytest.fixture
async def browser(stack: Stack) -> Browser:
    return await stack.logged_in()


# -- cookies --------------------------------------------------------------------------------------

_RANDOM = random.Random(1234)
JUNK_VALUES = {
    "garbage": "not-a-sealed-value",
    "random": base64.urlsafe_b64encode(_RANDOM.randbytes(600)).decode(),
    "oversized-8kb": "A" * 8192,
    "oversized-jwe-shape": ".".join(["B" * 2000] * 5),
    "non-ascii": "żółć-€-🙂",
    "five-empty-segments": "....",
    "five-junk-segments": "a.b.c.d.e",
    "quoted": '"quoted value"',
    "percent-escapes": "%00%0d%0a%ff",
    "alg-none": jwe_like({"alg": "none", "enc": "A256GCM"}),
    "pbes2-huge-iterations": jwe_like(
        {"alg": "PBES2-HS512+A256KW", "enc": "A256GCM", "p2s": "AAAAAAAAAAA", "p2c": 2**31}
    ),
    "zip-bomb-header": jwe_like({"alg": "dir", "enc": "A256GCM", "zip": "DEF"}),
    "header-is-a-list": jwe_like({"alg": ["dir"], "enc": ["A256GCM"], "kid": [1]}),
}


@pytest.mark.parametrize("junk", list(JUNK_VALUES.values()), ids=list(JUNK_VALUES))
async def test_junk_session_cookies_are_no_session(stack: Stack, browser: Browser, junk: str) -> None:
    """Junk under the session cookies' names is "no session": 401 on every endpoint, never a 500."""
    forged = "; ".join(f"{name}={junk}" for name in SESSION_COOKIES)
    for method, path, body in (
        ("GET", "/api/rest/proxy/items", None),
        ("POST", "/api/rest/customfetch", {"url": "/items"}),
        ("POST", "/api/rest/refreshresttokens", None),
        ("GET", "/api/auth/user", None),
    ):
        answer = await send(browser, method, path, cookie_header=forged, json_body=body)
        assert_clean_problem(answer, stack, 401, "unauthenticated")
    assert stack.recorder.to("/items") == []
    assert stack.api.refresh_calls == 0
    await assert_still_works(browser, stack)


JUNK_NEXT_TO_SESSION = {
    "many-cookies": "; ".join(f"junk{i}={_RANDOM.getrandbits(64):x}" for i in range(300)),
    "oversized-8kb": "big=" + "C" * 8192,
    "non-ascii": "ünïcödé=€🙂",
    "no-value": "lonely; =; ;;",
    "chunk-decoys": f"{ACCESS}_0=junk; {REFRESH}_0=junk; {REFRESH}_1=junk; {USER}_7=junk",
    "foreign-prefixes": "accessTokenEtls=junk; refreshTokenEtls=junk; accessToken=junk",
}


@pytest.mark.parametrize("junk", list(JUNK_NEXT_TO_SESSION.values()), ids=list(JUNK_NEXT_TO_SESSION))
async def test_junk_cookies_next_to_a_session_change_nothing(
    stack: Stack, browser: Browser, junk: str
) -> None:
    """Junk cookies beside valid session cookies are ignored: the call succeeds without a refresh."""
    answer = await send(browser, "GET", "/api/rest/proxy/me", cookie_header=f"{own_cookies(browser)}; {junk}")
    assert answer.status == 200, answer.body[:300]
    assert answer.json() == dict(DEMO_USER)
    assert answer.set_cookies == []
    assert stack.api.refresh_calls == 0
    await assert_still_works(browser, stack)


def _flip_middle(value: str) -> str:
    middle = len(value) // 2
    return value[:middle] + ("A" if value[middle] != "A" else "B") + value[middle + 1 :]


MUTATIONS = {
    "flipped-character": _flip_middle,
    "truncated": lambda value: value[:-10],
    "half": lambda value: value[: len(value) // 2],
    "segment-dropped": lambda value: ".".join(value.split(".")[:4]),
    "segments-swapped": lambda value: ".".join(reversed(value.split("."))),
    "tag-emptied": lambda value: value.rsplit(".", 1)[0] + ".",
    "header-replaced": lambda value: jwe_like({"alg": "dir", "enc": "A256GCM"})[:20] + value[20:],
    "doubled": lambda value: value + value,
}


@pytest.mark.parametrize("mutation", list(MUTATIONS.values()), ids=list(MUTATIONS))
async def test_tampered_or_truncated_cookies_are_no_session(
    stack: Stack, browser: Browser, mutation: Any
) -> None:
    """A tampered or truncated session cookie never opens: 401 and cleared cookies, never a 500."""
    forged = "; ".join(f"{name}={mutation(browser.cookies[name])}" for name in SESSION_COOKIES)
    answer = await send(browser, "GET", "/api/rest/proxy/items", cookie_header=forged)
    assert_clean_problem(answer, stack, 401, "unauthenticated")
    assert cleared(answer) >= set(SESSION_COOKIES)
    assert stack.api.refresh_calls == 0

    # Only the access cookie broken: the refresh cookie still holds the session, which refreshes.
    half_broken = browser.clone()
    half_broken.cookies[ACCESS] = mutation(half_broken.cookies[ACCESS])
    rescued = await half_broken.request("GET", "/api/rest/proxy/me")
    assert rescued.status == 200
    assert stack.api.refresh_calls == 1
    await assert_still_works(browser, stack)


async def test_cookies_swapped_between_purposes_are_no_session(stack: Stack, browser: Browser) -> None:
    """A sealed value moved to another cookie's name does not open (keys are per purpose)."""
    values = browser.cookies
    forged = f"{ACCESS}={values[REFRESH]}; {REFRESH}={values[USER]}; {USER}={values[ACCESS]}"
    answer = await send(browser, "GET", "/api/rest/proxy/items", cookie_header=forged)
    assert_clean_problem(answer, stack, 401, "unauthenticated")
    assert stack.recorder.to("/items") == []
    await assert_still_works(browser, stack)


async def test_cookies_of_another_gateway_are_no_session(stack: Stack, browser: Browser) -> None:
    """Cookies with the right names but sealed by a gateway with other secrets are "no session"."""
    other = settings_for(stack.api_url, etls_access=OTHER_SECRET_A, etls_refresh=OTHER_SECRET_R)
    async with running_gateway(other) as other_url:
        stranger = Browser(stack.http, other_url)
        await stranger.login()
        assert (await stranger.request("GET", "/api/rest/proxy/me")).status == 200  # valid there
    foreign = "; ".join(f"{name}={stranger.cookies[name]}" for name in SESSION_COOKIES)

    answer = await send(browser, "GET", "/api/rest/proxy/items", cookie_header=foreign)

    assert_clean_problem(answer, stack, 401, "unauthenticated")
    assert cleared(answer) >= set(SESSION_COOKIES)
    assert stack.recorder.to("/items") == []
    assert stack.api.refresh_calls == 0

    # A foreign access cookie beside our own refresh cookie is simply not ours: we refresh our session.
    mixed = browser.clone()
    mixed.cookies[ACCESS] = stranger.cookies[ACCESS]
    mixed.cookies[USER] = stranger.cookies[USER]
    assert (await mixed.request("GET", "/api/rest/proxy/me")).status == 200
    assert stack.api.refresh_calls == 1
    await assert_still_works(browser, stack)


# -- the customfetch envelope ---------------------------------------------------------------------


def _envelope(value: Any) -> bytes:
    return json.dumps(value).encode()


ENVELOPES = [
    pytest.param(b"{url: /items}", "invalid_request", id="not-json"),
    pytest.param(b"", "invalid_request", id="empty"),
    pytest.param(b'{"url": "/items\xff"}', "invalid_request", id="invalid-utf8"),
    pytest.param(b'["/items"]', "invalid_request", id="a-list"),
    pytest.param(b'"/items"', "invalid_request", id="a-string"),
    pytest.param(b"null", "invalid_request", id="null"),
    pytest.param(b"42", "invalid_request", id="a-number"),
    pytest.param(b"[" * 5000 + b"]" * 5000, "invalid_request", id="deeply-nested"),
    pytest.param(
        b'{"url": "/echo/x", "options": {"body": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
        "invalid_request",
        id="deeply-nested-body",
    ),
    pytest.param(_envelope({}), "invalid_request", id="url-missing"),
    pytest.param(_envelope({"options": {"method": "GET"}}), "invalid_request", id="only-options"),
    pytest.param(_envelope({"url": 42}), "invalid_request", id="url-number"),
    pytest.param(_envelope({"url": None}), "invalid_request", id="url-null"),
    pytest.param(_envelope({"url": ["/items"]}), "invalid_request", id="url-list"),
    pytest.param(_envelope({"url": {"path": "/items"}}), "invalid_request", id="url-object"),
    pytest.param(_envelope({"url": ""}), "invalid_url", id="url-empty"),
    pytest.param(_envelope({"url": "items"}), "invalid_url", id="url-relative-no-slash"),
    pytest.param(_envelope({"url": "http://evil.example/items"}), "invalid_url", id="absolute"),
    pytest.param(_envelope({"url": "HTTPS://127.0.0.1:1/items"}), "invalid_url", id="absolute-upper"),
    pytest.param(_envelope({"url": "//evil.example/items"}), "invalid_url", id="scheme-relative"),
    pytest.param(_envelope({"url": "/\\evil.example/items"}), "invalid_url", id="slash-backslash"),
    pytest.param(_envelope({"url": "\\\\evil.example/items"}), "invalid_url", id="backslashes"),
    pytest.param(_envelope({"url": "javascript:alert(1)"}), "invalid_url", id="javascript"),
    pytest.param(_envelope({"url": "data:text/html,<script>"}), "invalid_url", id="data-url"),
    pytest.param(_envelope({"url": "@evil.example/items"}), "invalid_url", id="userinfo"),
    pytest.param(_envelope({"url": "/../auth/refresh"}), "invalid_url", id="dot-dot"),
    pytest.param(_envelope({"url": "/%2e%2e/auth/refresh"}), "invalid_url", id="encoded-dot-dot"),
    pytest.param(_envelope({"url": "/%252e%252e/auth/refresh"}), "invalid_url", id="double-encoded"),
    pytest.param(_envelope({"url": "/items\r\nX-Injected: 1"}), "invalid_url", id="crlf-in-url"),
    pytest.param(_envelope({"url": "/items\x00"}), "invalid_url", id="nul-in-url"),
    pytest.param(_envelope({"url": "/items%zz"}), "invalid_url", id="bad-percent"),
    pytest.param(_envelope({"url": "/items", "options": "GET"}), "invalid_request", id="options-string"),
    pytest.param(_envelope({"url": "/items", "options": []}), "invalid_request", id="options-list"),
    pytest.param(_envelope({"url": "/items", "options": 1}), "invalid_request", id="options-number"),
    pytest.param(_envelope({"url": "/items", "options": True}), "invalid_request", id="options-true"),
    *(
        pytest.param(
            _envelope({"url": "/items", "options": {"method": method}}),
            "invalid_request",
            id=f"method-{label}",
        )
        for label, method in (
            ("connect", "CONNECT"),
            ("trace", "TRACE"),
            ("crlf", "GET\r\nX-Injected: y"),
            ("space", "GET /admin"),
            ("empty", ""),
            ("null", None),
            ("number", 1),
            ("list", ["GET"]),
        )
    ),
    *(
        pytest.param(
            _envelope({"url": "/items", "options": {"headers": headers}}),
            "invalid_request",
            id=f"headers-{label}",
        )
        for label, headers in (
            ("crlf-value", {"X-A": "a\r\nX-Injected: 1"}),
            ("lf-value", {"X-A": "a\nX-Injected: 1"}),
            ("nul-value", {"X-A": "a\x00b"}),
            ("crlf-name", {"X-A\r\nX-Injected": "1"}),
            ("space-name", {"X A": "1"}),
            ("colon-name", {"X-A:": "1"}),
            ("empty-name", {"": "1"}),
            ("number-value", {"X-A": 1}),
            ("null-value", {"X-A": None}),
            ("list-value", {"X-A": ["1"]}),
            ("object-value", {"X-A": {"v": "1"}}),
            ("bool-value", {"X-A": True}),
            ("a-list", [["X-A", "1"]]),
            ("a-string", "X-A: 1"),
        )
    ),
]


@pytest.mark.parametrize(("raw", "code"), ENVELOPES)
async def test_hostile_customfetch_envelope_is_a_400_problem(
    stack: Stack, browser: Browser, raw: bytes, code: str
) -> None:
    """A malformed or hostile customfetch envelope gets a 400 problem and nothing goes upstream."""
    with nothing_goes_upstream(stack):
        answer = await send(
            browser, "POST", "/api/rest/customfetch", data=raw, headers={"Content-Type": "application/json"}
        )
        assert_clean_problem(answer, stack, 400, code)
    assert cleared(answer) == set()
    await assert_still_works(browser, stack)


@pytest.mark.parametrize(
    ("body", "headers", "content_type"),
    [
        ("plain text ✓", None, None),
        ({"name": "ü", "nested": {"list": [1, 2.5, None, True]}}, None, "application/json"),
        ([1, "two", {"three": 3}], None, "application/json"),
        (42, None, "application/json"),
        (False, None, "application/json"),
        ({"csv": True}, {"Content-Type": "text/csv"}, "text/csv"),
        (None, None, None),
    ],
    ids=["string", "object", "list", "number", "bool", "own-content-type", "null"],
)
async def test_customfetch_body_types_reach_the_api_intact(
    stack: Stack, browser: Browser, body: Any, headers: dict[str, str] | None, content_type: str | None
) -> None:
    """Every JSON type is accepted as a customfetch body: a string is sent as is, anything else as JSON."""
    options: dict[str, Any] = {"method": "POST", "body": body}
    if headers:
        options["headers"] = headers
    answer = await browser.request(
        "POST", "/api/rest/customfetch", json_body={"url": "/echo/body", "options": options}
    )
    assert answer.status == 200, answer.body[:300]
    [received] = stack.recorder.bodies
    if body is None:
        assert received == b""
    elif isinstance(body, str):
        assert received == body.encode()
    else:
        assert json.loads(received) == body
    assert stack.recorder.to("/echo/body")[0].headers.get("content-type") == content_type
    await assert_still_works(browser, stack)


# -- proxy paths and methods ----------------------------------------------------------------------

ESCAPING_PATHS = [
    "..",
    "../auth/refresh",
    "echo/../../auth/refresh",
    "./items",
    "items/./x",
    "%2e%2e/auth/refresh",
    "%2E%2E/auth/refresh",
    ".%2e/auth/refresh",
    "%2e./auth/refresh",
    "..%2fauth%2frefresh",
    "..%2Fauth/refresh",
    "echo%2f..%2f..%2fauth/refresh",
    "%252e%252e/auth/refresh",
    "%252fauth/refresh",
    "..%5cauth/refresh",
    "echo%5c..%5c..%5cauth",
    "echo\\..\\..\\auth",
    "items%00.json",
    "//evil.example/items",
    "items//x",
    "@evil.example/items",
    "user:pass@evil.example/items",
    "items%zz",
    "items?q=%zz",
]


@pytest.mark.parametrize("raw_path", ESCAPING_PATHS)
async def test_hostile_proxy_path_is_400_invalid_url(stack: Stack, browser: Browser, raw_path: str) -> None:
    """A proxy path that could leave REMOTE_API (raw, un-normalised on the wire) is refused upstream-free."""
    with nothing_goes_upstream(stack):
        answer = await send(browser, "GET", "/api/rest/proxy/" + raw_path)
        assert_clean_problem(answer, stack, 400, "invalid_url")
    await assert_still_works(browser, stack)


@pytest.mark.parametrize(
    ("raw_path", "upstream_path", "upstream_query"),
    [
        ("echo/%40evil.example/x", "/echo/%40evil.example/x", ""),
        ("echo/caf%C3%A9", "/echo/caf%C3%A9", ""),
        ("echo/a;b=c,d", "/echo/a;b=c,d", ""),
        ("echo/%3Fnot-a-query?real=1", "/echo/%3Fnot-a-query", "real=1"),
        ("echo/x?next=//evil.example&u=a@evil.example", "/echo/x", "next=//evil.example&u=a@evil.example"),
        ("echo/x?a=%0D%0AX-Injected:%201", "/echo/x", "a=%0D%0AX-Injected:%201"),
    ],
    ids=["encoded-at", "utf8", "sub-delims", "encoded-question", "urls-in-query", "crlf-query"],
)
async def test_odd_but_harmless_proxy_paths_stay_under_the_api(
    stack: Stack, browser: Browser, raw_path: str, upstream_path: str, upstream_query: str
) -> None:
    """Odd characters that cannot escape are forwarded still encoded, to the API's own host and path."""
    answer = await send(browser, "GET", "/api/rest/proxy/" + raw_path)
    assert answer.status == 200, answer.body[:300]
    [recorded] = stack.recorder.to("/echo")
    assert recorded.raw_path == upstream_path
    assert recorded.query == upstream_query
    assert recorded.headers["host"] == URL(stack.api_url).raw_authority
    assert "x-injected" not in recorded.headers
    await assert_still_works(browser, stack)


@pytest.mark.parametrize(
    "raw_path", ["echo/a%0D%0AX-Injected:%201", "echo/a%0AX-Injected:%201", "echo/%0D%0A"]
)
async def test_encoded_line_breaks_in_the_path_never_split_headers(
    stack: Stack, browser: Browser, raw_path: str
) -> None:
    """An encoded CR/LF in the path is either refused with a 4xx problem or forwarded still encoded."""
    answer = await send(browser, "GET", "/api/rest/proxy/" + raw_path)
    assert_nothing_leaks(answer, stack)
    recorded = stack.recorder.to("/echo")
    if answer.status == 200:
        assert [r.raw_path for r in recorded] == ["/" + raw_path]
    else:
        # The gateway refuses encoded control characters in paths (400 invalid_url).
        assert 400 <= answer.status < 500
        assert answer.headers["Content-Type"].startswith(PROBLEM)
        assert recorded == []
    assert all("x-injected" not in r.headers for r in stack.recorder.requests)
    await assert_still_works(browser, stack)


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "MKCOL", "PURGE"])
async def test_unsupported_proxy_method_is_405(stack: Stack, browser: Browser, method: str) -> None:
    """A method the proxy does not forward gets a 405 problem and nothing goes upstream."""
    with nothing_goes_upstream(stack):
        answer = await send(browser, method, "/api/rest/proxy/echo/x")
        assert_clean_problem(answer, stack, 405, "method_not_allowed")
    await assert_still_works(browser, stack)


# -- oversize bodies and headers ------------------------------------------------------------------

LIMIT = 1000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/rest/proxy/echo/x", b"x" * (LIMIT + 1)),
        ("/api/rest/proxy/upload", b"x" * 10 * LIMIT),
        ("/api/rest/customfetch", _envelope({"url": "/echo/x", "options": {"body": "y" * 100_000}})),
        ("/api/auth/login", _envelope({"username": "demo", "password": "p" * 100_000})),
    ],
    ids=["proxy-just-over", "proxy-10x", "customfetch-envelope", "login"],
)
async def test_declared_content_length_over_the_limit_is_413_before_the_body_is_read(
    make_stack: StackFactory, path: str, body: bytes
) -> None:
    """A Content-Length over the limit gets 413 at once (the body is not even sent) and nothing goes upstream."""
    async with make_stack(bff_max_body_bytes=LIMIT) as stack:
        browser = await stack.logged_in()
        with nothing_goes_upstream(stack):
            answer = await send(
                browser,
                "POST",
                path,
                data=body,
                headers={"Content-Type": "application/json"},
                expect100=True,  # the client waits for "100 Continue", which a 413 replaces
            )
            assert_clean_problem(answer, stack, 413, "payload_too_large")
        assert stack.recorder.bodies == []
        await assert_still_works(browser, stack)


@pytest.mark.parametrize(
    ("path", "max_bytes", "replay_bytes", "sizes"),
    [
        ("/api/rest/proxy/echo/x", LIMIT, 1024 * 1024, [200] * 6),
        ("/api/rest/proxy/echo/x", LIMIT, 1024 * 1024, [LIMIT, 1]),
        ("/api/rest/proxy/echo/x", 100_000, 1000, [10_000] * 11),
        ("/api/rest/customfetch", LIMIT, 1024 * 1024, [10_000] * 7),
        ("/api/auth/login", LIMIT, 1024 * 1024, [10_000] * 7),
    ],
    ids=["buffered", "one-byte-over", "already-streaming", "customfetch", "login"],
)
async def test_chunked_body_growing_over_the_limit_is_413(
    make_stack: StackFactory, path: str, max_bytes: int, replay_bytes: int, sizes: list[int]
) -> None:
    """A body without Content-Length that grows over the limit gets 413 and no complete body goes upstream."""
    async with make_stack(bff_max_body_bytes=max_bytes, bff_replay_bytes=replay_bytes) as stack:
        browser = await stack.logged_in()
        logins = stack.api.login_calls
        answer = await send(
            browser, "POST", path, data=chunked(sizes), headers={"Content-Type": "application/json"}
        )
        assert_clean_problem(answer, stack, 413, "payload_too_large")
        assert stack.recorder.bodies == []  # the echo endpoint records only bodies it received whole
        assert stack.api.login_calls == logins
        await assert_still_works(browser, stack)


async def test_customfetch_inner_body_over_the_limit_is_413(make_stack: StackFactory) -> None:
    """A customfetch ``options.body`` over BFF_MAX_BODY_BYTES gets 413, like the same body proxied."""
    async with make_stack(bff_max_body_bytes=LIMIT) as stack:
        browser = await stack.logged_in()
        envelope = {"url": "/echo/x", "options": {"method": "POST", "body": "y" * (5 * LIMIT)}}
        answer = await browser.request("POST", "/api/rest/customfetch", json_body=envelope)
        assert_clean_problem(answer, stack, 413, "payload_too_large")
        assert stack.recorder.to("/echo") == []


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"X-Big": "h" * 100_000}, True),
        ({f"X-Many-{i}": str(i) for i in range(500)}, False),
        ({"X-Big": "h" * 8192, "Cookie-Like": "a=" + "b" * 8192}, False),
    ],
    ids=["one-100kb-header", "500-headers", "two-8kb-headers"],
)
async def test_oversize_headers_are_refused_or_forwarded_whole(
    stack: Stack, browser: Browser, headers: dict[str, str], refused: bool
) -> None:
    """Headers over 64 KB get 431 headers_too_large with nothing sent upstream; smaller ones arrive whole."""
    answer = await send(browser, "GET", "/api/rest/proxy/echo/headers", headers=headers)
    assert_nothing_leaks(answer, stack)
    if refused:
        assert_clean_problem(answer, stack, 431, "headers_too_large")
        assert stack.recorder.to("/echo") == []
    else:
        assert answer.status == 200
        [recorded] = stack.recorder.to("/echo/headers")
        for name, value in headers.items():
            assert recorded.headers[name.lower()] == value
    await assert_still_works(browser, stack)


async def test_oversize_cookie_header_is_never_a_500(stack: Stack, browser: Browser) -> None:
    """A 100 KB Cookie header beside a valid session neither breaks the session nor causes a 500."""
    forged = f"{own_cookies(browser)}; huge={'z' * 100_000}"
    answer = await send(browser, "GET", "/api/rest/proxy/me", cookie_header=forged)
    assert_nothing_leaks(answer, stack)
    assert answer.status < 500
    await assert_still_works(browser, stack)


# -- login ----------------------------------------------------------------------------------------

LOGIN_BODIES = [
    pytest.param(b"username=demo&password=demo", 400, "invalid_request", id="form-encoded"),
    pytest.param(b"", 400, "invalid_request", id="empty"),
    pytest.param(b"\xff\xfe{}", 400, "invalid_request", id="invalid-utf8"),
    pytest.param(b"[]", 400, "invalid_request", id="a-list"),
    pytest.param(b'["demo", "demo"]', 400, "invalid_request", id="credentials-list"),
    pytest.param(b'"demo"', 400, "invalid_request", id="a-string"),
    pytest.param(b"null", 400, "invalid_request", id="null"),
    pytest.param(b"3.14", 400, "invalid_request", id="a-number"),
    pytest.param(b"[" * 5000 + b"]" * 5000, 400, "invalid_request", id="deeply-nested"),
    pytest.param(
        b'{"username": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        400,
        "invalid_request",
        id="deeply-nested-field",
    ),
    pytest.param(
        _envelope({"username": "demo", "password": "p" * 200_000}), 413, "payload_too_large", id="huge"
    ),
]


@pytest.mark.parametrize(("raw", "status", "code"), LOGIN_BODIES)
async def test_hostile_login_body_is_a_problem_and_keeps_the_session(
    stack: Stack, browser: Browser, raw: bytes, status: int, code: str
) -> None:
    """A login body that is not a small JSON object is refused before the API, and the old session stays."""
    answer = await send(
        browser,
        "POST",
        "/api/auth/login",
        data=raw,
        headers={"Content-Type": "application/json"},
        expect100=True,
    )
    assert_clean_problem(answer, stack, status, code)
    assert answer.set_cookies == []
    assert stack.api.login_calls == 1  # the browser's own login only
    await assert_still_works(browser, stack)


async def test_login_fields_of_the_wrong_type_are_the_apis_own_400(stack: Stack, browser: Browser) -> None:
    """A JSON object with odd field types goes to the API, whose 400 is passed through; the session stays."""
    answer = await browser.request(
        "POST", "/api/auth/login", json_body={"username": ["demo"], "password": {"$ne": None}}
    )
    assert answer.status == 400
    assert answer.json() == {"error": "invalid_request"}
    assert answer.set_cookies == []
    assert stack.api.login_calls == 2
    await assert_still_works(browser, stack)


LEAKY = "leaky-refresh-token-value-0123456789"
BROKEN_ANSWERS = [
    pytest.param(Response(b"{not json", media_type="application/json"), id="not-json"),
    pytest.param(Response(b"<html>hello</html>", media_type="text/html"), id="html"),
    pytest.param(Response(b"", media_type="application/json"), id="empty"),
    pytest.param(JSONResponse([1, 2, 3]), id="a-list"),
    pytest.param(JSONResponse({}), id="empty-object"),
    pytest.param(JSONResponse({"accessToken": 42, "refreshToken": LEAKY}), id="token-not-a-string"),
    pytest.param(JSONResponse({"accessToken": "", "refreshToken": LEAKY}), id="token-empty"),
    pytest.param(JSONResponse({"access_token": "x", "refreshToken": LEAKY}), id="wrong-field"),
    pytest.param(JSONResponse({"error": "boom", "refreshToken": LEAKY}, 500), id="server-error"),
    pytest.param(Response(b'{"accessToken": "' + b"a" * (2 * 1024 * 1024) + b'"}'), id="two-megabytes"),
]


@pytest.mark.parametrize("broken", BROKEN_ANSWERS)
async def test_broken_login_answer_is_502_and_keeps_the_old_session(
    stack: Stack, browser: Browser, broken: Response
) -> None:
    """A login endpoint answering garbage gives 502 upstream_unavailable; no cookies, no leak, old session kept."""
    stack.recorder.login_answer = broken
    answer = await browser.request(
        "POST", "/api/auth/login", json_body={"username": "demo", "password": "demo"}
    )
    assert_clean_problem(answer, stack, 502, "upstream_unavailable")
    assert LEAKY.encode() not in answer.body
    assert answer.set_cookies == []
    await assert_still_works(browser, stack)


@pytest.mark.parametrize("broken", BROKEN_ANSWERS)
async def test_broken_refresh_answer_is_503_and_keeps_the_session(
    stack: Stack, browser: Browser, broken: Response
) -> None:
    """A refresh endpoint answering garbage gives 503 refresh_unavailable; the same cookies work afterwards."""
    browser.forget_access_cookie()
    held = dict(browser.cookies)
    stack.recorder.refresh_answer = broken

    answer = await browser.request("GET", "/api/rest/proxy/items")

    assert_clean_problem(answer, stack, 503, "refresh_unavailable")
    assert LEAKY.encode() not in answer.body
    assert cleared(answer) == set()
    assert browser.cookies == held
    assert stack.recorder.to("/items") == []
    stack.recorder.refresh_answer = None
    await assert_still_works(browser, stack)
    assert stack.api.refresh_calls == 1


# -- an upstream that dies mid-answer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "envelope"),
    [
        ("GET", "/api/rest/proxy/broken-stream", None),
        ("POST", "/api/rest/customfetch", {"url": "/broken-stream"}),
    ],
    ids=["proxy", "customfetch"],
)
async def test_upstream_dying_mid_stream_breaks_only_that_answer(
    stack: Stack, browser: Browser, method: str, path: str, envelope: dict[str, Any] | None
) -> None:
    """An API answer that breaks off mid-body reaches the browser as a broken answer; the gateway carries on."""
    with pytest.raises(aiohttp.ClientPayloadError):
        await browser.request(method, path, json_body=envelope)
    assert len(stack.recorder.to("/broken-stream")) == 1
    await assert_still_works(browser, stack)
    # And a fresh connection, too: the gateway process is alive, not just one kept-alive socket.
    other = await stack.logged_in()
    await assert_still_works(other, stack)
