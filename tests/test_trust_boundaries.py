"""Issue 11, items 5-8: what a browser's request may make the API believe, and what a shared cache may keep.

Path parameters that servlet-style APIs strip before resolving dot segments, browser headers that
routing and trust layers interpret, ``returnTo`` targets a browser resolves to another origin, and
per-user answers a shared cache in front of the gateway could store. Raw sockets where the exact bytes
matter; the recording upstream says what reached the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from yarl import URL

from bffgate import header_filter
from bffgate.header_filter import forwardable_request_headers, is_dropped_request_header

from .harness import Stack

BASE = "http://api.test/v1"


@dataclass
class RawAnswer:
    status: int
    head: bytes
    body: bytes

    def header_values(self, name: str) -> list[str]:
        prefix = name.lower().encode() + b":"
        return [
            line[len(prefix) :].strip().decode("latin-1")
            for line in self.head.split(b"\r\n")[1:]
            if line.lower().startswith(prefix)
        ]


async def raw_exchange(
    base: str,
    target: str,
    cookies: dict[str, str],
    *,
    method: str = "GET",
    extra_lines: Sequence[str] = (),
    body: bytes = b"",
) -> RawAnswer:
    """One request written byte for byte (duplicate headers kept, nothing normalised), read to EOF."""
    url = URL(base)
    assert url.host is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {url.host}:{url.port}",
        "Connection: close",
        "X-CSRF: 1",
        f"Content-Length: {len(body)}",
        "Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()),
        *extra_lines,
    ]
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, rest = data.partition(b"\r\n\r\n")
    return RawAnswer(int(head.split(b" ", 2)[1]), head, rest)


# === Item 5: path parameters never hide a dot segment =============================================
# Owned by the security suite (requirement 19 beside requirement 6): test_security.py's
# PATH_PARAMETER_ESCAPES in its hostile proxy paths and customfetch URLs, and the control
# test_ordinary_path_parameters_still_reach_the_api; ApiUrls.join's own refusal in tests/unit/test_api_url.py.


# === Items 7 and 15: returnTo as the browser resolves it ============================================


# === Item 6: headers that routing and trust layers interpret never reach the API ===================


# The names of the issue, other members of each family, and made-up spellings the rule must catch.
TRUSTED_HOP_HEADERS = [
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Prefix",
    "X-Forwarded-Port",
    "X-Forwarded-Server",
    "X-Forwarded-Scheme",
    "X-Forwarded-Uri",
    "X-Forwarded-Method",
    "X-Forwarded-Ssl",
    "X-Forwarded-Anything-New",
    "Forwarded",
    "X-Original-URL",
    "X-Original-URI",
    "X-Original-Method",
    "X-Original-Host",
    "X-Rewrite-URL",
    "X-Envoy-Original-Path",
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    "X-Acme-Method-Override",
    "True-Client-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "X-Real-IP",
    "CF-Connecting-IP",
    "CF-Connecting-IPv6",
    "Fastly-Client-IP",
    "Client-IP",
    "X-Remote-IP",
    "X-Originating-IP",
    "WL-Proxy-Client-IP",
    "X-Acme-Viewer-IP",
    "X-Azure-ClientIP",
    "X-Host",
    "X-Scheme",
    "X-Url-Scheme",
    "Front-End-Https",
]
# Look-alikes that are ordinary application headers and must still arrive.
APPLICATION_HEADERS = {
    "X-Payment-Method": "card",
    "X-Tip": "5",
    "X-Originator": "app",
    "X-End-To-End": "kept",
}


def _hostile_lines() -> list[str]:
    return [f"{name}: hostile-{index}" for index, name in enumerate(TRUSTED_HOP_HEADERS)]


async def test_trusted_hop_headers_from_the_browser_never_reach_the_api(stack: Stack) -> None:
    """Every X-Forwarded-*, rewrite, method-override and client-IP header is dropped; others pass."""
    browser = await stack.logged_in()
    extra = _hostile_lines() + [f"{name}: {value}" for name, value in APPLICATION_HEADERS.items()]
    answer = await raw_exchange(
        stack.gateway_url, "/api/rest/proxy/echo/hop", browser.cookies, extra_lines=extra
    )
    assert answer.status == 200, answer.body
    received = stack.recorder.to("/echo/hop")[-1].headers
    reached = sorted(name for name in TRUSTED_HOP_HEADERS if name.lower() in received)
    assert reached == []
    assert "hostile-" not in str(received)
    for name, value in APPLICATION_HEADERS.items():
        assert received[name.lower()] == value


async def test_trusted_hop_headers_in_customfetch_never_reach_the_api(stack: Stack) -> None:
    """The customfetch envelope's headers pass the same rule."""
    browser = await stack.logged_in()
    headers = {name: f"hostile-{index}" for index, name in enumerate(TRUSTED_HOP_HEADERS)}
    envelope = {"url": "/echo/cf-hop", "options": {"headers": {**headers, **APPLICATION_HEADERS}}}
    answer = await browser.request("POST", "/api/rest/customfetch", json_body=envelope)
    assert answer.status == 200, answer.body
    received = stack.recorder.to("/echo/cf-hop")[-1].headers
    assert "hostile-" not in str(received)
    for name, value in APPLICATION_HEADERS.items():
        assert received[name.lower()] == value


async def test_every_connection_header_of_the_browser_is_honoured(stack: Stack) -> None:
    """Headers named in any of several ``Connection`` headers are hop-by-hop, not only the last one's."""
    browser = await stack.logged_in()
    extra = [
        "Connection: X-Hop-A",
        "Connection: X-Hop-B, X-Hop-C",
        "Connection: keep-alive",
        "X-Hop-A: secret-a",
        "X-Hop-B: secret-b",
        "X-Hop-C: secret-c",
        "X-End-To-End: kept",
    ]
    answer = await raw_exchange(
        stack.gateway_url, "/api/rest/proxy/echo/conn", browser.cookies, extra_lines=extra
    )
    assert answer.status == 200, answer.body
    received = stack.recorder.to("/echo/conn")[-1].headers
    assert not {"x-hop-a", "x-hop-b", "x-hop-c"} & set(received), received
    assert received["x-end-to-end"] == "kept"


async def test_every_connection_header_of_the_api_is_honoured(stack: Stack) -> None:
    """Response headers the API names over several ``Connection`` headers never reach the browser."""
    browser = await stack.logged_in()
    answer = await raw_exchange(stack.gateway_url, "/api/rest/proxy/split-connection", browser.cookies)
    assert answer.status == 200, answer.body
    assert b"secret-" not in answer.head
    assert answer.header_values("x-end-to-end") == ["kept"]


# === Item 8: per-user answers are never storable by a shared cache =================================


def _storable_by_shared_cache(cache_control: str | None) -> bool:
    """RFC 9111 3 and 5.2.2, for a 200 to a GET without Authorization (what a CDN sees in front of us).

    Storable unless ``no-store`` or a bare ``private`` is present; with no Cache-Control at all a
    cache may still store it and use a heuristic freshness (4.2.2), so that counts as storable.
    """
    if cache_control is None:
        return True
    names = {d.strip().partition("=")[0].strip().lower() for d in cache_control.split(",")}
    bare_private = any(d.strip().lower() == "private" for d in cache_control.split(","))
    return "no-store" not in names and not bare_private


PER_USER_CACHE_CONTROLS = [
    [],
    ["max-age=600"],
    ["s-maxage=600"],
    ["max-age=60, s-maxage=600"],
    ["no-cache"],
    ["must-revalidate, max-age=0"],
    ['private="set-cookie", max-age=600'],
    ["max-age=600", "stale-while-revalidate=30"],
]


@pytest.mark.parametrize("values", PER_USER_CACHE_CONTROLS, ids=lambda v: " | ".join(v) or "none")
@pytest.mark.parametrize("via", ["proxy", "customfetch"])
async def test_per_user_answers_are_not_storable_by_shared_caches(
    stack: Stack, values: list[str], via: str
) -> None:
    """Unless the API said ``public``, the browser's answer keeps every shared cache from storing it."""
    browser = await stack.logged_in()
    target = "/cache-control" + ("?" + urlencode([("value", v) for v in values]) if values else "")
    if via == "proxy":
        answer = await browser.request("GET", "/api/rest/proxy" + target)
    else:
        answer = await browser.request("POST", "/api/rest/customfetch", json_body={"url": target})
    assert answer.status == 200, answer.body
    assert answer.set_cookies == []
    cache_controls = answer.headers.getall("Cache-Control", [])
    assert len(cache_controls) <= 1
    assert not _storable_by_shared_cache(cache_controls[0] if cache_controls else None), cache_controls
    assert "s-maxage" not in str(cache_controls)


@pytest.mark.parametrize(
    ("values", "sent"),
    [
        (["public, max-age=3600"], "public, max-age=3600"),
        (["no-store"], "no-store"),
        (["private, max-age=60"], "private, max-age=60"),
        (["max-age=600"], "private, max-age=600"),
        (["no-cache"], "private, no-cache"),
    ],
)
async def test_the_browsers_own_cache_keeps_the_apis_directives(
    stack: Stack, values: list[str], sent: str
) -> None:
    """``public`` answers and already-safe ones pass unchanged; the others keep their directives."""
    browser = await stack.logged_in()
    answer = await browser.request("GET", "/api/rest/proxy/cache-control?" + urlencode({"value": values[0]}))
    assert answer.headers.getall("Cache-Control") == [sent]


async def test_user_object_is_no_store(stack: Stack) -> None:
    """``/api/auth/user`` is ``no-store``, also when no cookie changes on the way."""
    browser = await stack.logged_in()
    answer = await browser.request("GET", "/api/auth/user")
    assert answer.status == 200
    assert answer.set_cookies == []
    assert answer.headers.getall("Cache-Control") == ["no-store"]


def test_header_rule_holds_however_often_a_name_is_seen() -> None:
    """Verdicts are remembered within a bound (random names cannot grow the memory), and a
    trusted-hop name is dropped on every request, whether its verdict was remembered or not."""
    noise = [(f"x-random-{n}".encode(), b"v") for n in range(header_filter._MAX_VERDICTS + 500)]
    for _ in range(2):
        kept = forwardable_request_headers([*noise, (b"x-forwarded-prefix", b"/admin"), (b"x-real-ip", b"1")])
        assert len(kept) == len(noise)
        assert len(header_filter._VERDICTS) <= header_filter._MAX_VERDICTS


@pytest.mark.parametrize("name", [n.lower() for n in TRUSTED_HOP_HEADERS])
def test_is_dropped_request_header_names_every_family(name: str) -> None:
    """The rule itself, name by name (the README's table lists the same families)."""
    assert is_dropped_request_header(name.encode())
