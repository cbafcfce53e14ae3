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

import pytest
from yarl import URL

from bffgate.errors import InvalidUrl
from bffgate.navigation import browser_pathname, login_redirect_location, safe_return_to
from bffgate.proxy import UpstreamBase

from .harness import Stack, nothing_goes_upstream

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


# === Item 5: path parameters never hide a dot segment ===============================================


PATH_PARAMETER_ESCAPES = [
    "..;/auth/refresh",
    "..;x=1/auth/refresh",
    "echo/..;/..;/auth/refresh",
    "echo/..;jsessionid=abc/..;/auth/refresh",
    "%2e%2e;/auth/refresh",
    "%2E%2E;a=b/auth/refresh",
    ".%2e;/auth/refresh",
    "%2e.;/auth/refresh",
    "echo/.;/x",
    "echo/%2e;/x",
    "..%3b/auth/refresh",
    "..%3Bx/auth/refresh",
    "%2e%2e%3b/auth/refresh",
    "echo/..;",
]


@pytest.mark.parametrize("path", PATH_PARAMETER_ESCAPES)
async def test_path_parameters_cannot_hide_dot_segments_from_the_proxy(stack: Stack, path: str) -> None:
    """``..;`` and its encodings (Tomcat/Jetty/Spring climb up on them) are 400 invalid_url, never forwarded."""
    browser = await stack.logged_in()
    with nothing_goes_upstream(stack):
        answer = await raw_exchange(stack.gateway_url, "/api/rest/proxy/" + path, browser.cookies)
    assert answer.status == 400, answer.body
    assert b'"code": "invalid_url"' in answer.body


@pytest.mark.parametrize("path", PATH_PARAMETER_ESCAPES)
async def test_path_parameters_cannot_hide_dot_segments_from_customfetch(stack: Stack, path: str) -> None:
    """The customfetch envelope's ``url`` is judged by the same rule."""
    browser = await stack.logged_in()
    with nothing_goes_upstream(stack):
        answer = await browser.request("POST", "/api/rest/customfetch", json_body={"url": "/" + path})
    assert answer.status == 400, answer.body
    assert answer.code == "invalid_url"


@pytest.mark.parametrize("path", ["a/..;/x", "a/%2e%2e;/x", "..;", ".;", "a/..%3b/x", "a/.%2E;p/x"])
def test_join_refuses_dot_segments_with_parameters(path: str) -> None:
    """The joiner itself refuses them (so every caller of ``UpstreamBase.join`` is covered)."""
    with pytest.raises(InvalidUrl):
        UpstreamBase(BASE).join(path)


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("echo/a;b=1/c", "/echo/a;b=1/c"),
        ("echo/..a;/c", "/echo/..a;/c"),
        ("echo/a..;/c", "/echo/a..;/c"),
        ("echo/;x/c", "/echo/;x/c"),
    ],
)
async def test_ordinary_path_parameters_still_reach_the_api(stack: Stack, path: str, raw_path: str) -> None:
    """Control: ``;`` in a segment that is not a dot segment is forwarded unchanged."""
    browser = await stack.logged_in()
    answer = await raw_exchange(stack.gateway_url, "/api/rest/proxy/" + path, browser.cookies)
    assert answer.status == 200, answer.body
    assert stack.recorder.to("/echo")[-1].raw_path == raw_path


# === Items 7 and 15: returnTo as the browser resolves it ============================================


ESCAPING_RETURN_TO = [
    "/..//evil.example",
    "/.//evil.example",
    "/../..//evil.example/x",
    "/a/../..//evil.example",
    "/a/..//evil.example",
    "/%2e%2e//evil.example",
    "/%2E%2E//evil.example",
    "/.%2e//evil.example",
    "/%2e.//evil.example",
    "/%2e//evil.example",
    "/%2E//evil.example?x=1",
    "/..//evil.example#frag",
    "/a/b/../../..//evil.example",
    "/%2f/evil.example",
    "/%2F%2Fevil.example",
    "/..%2f/evil.example",
    "/%5cevil.example",
    "/../%5c/evil.example",
]


@pytest.mark.parametrize("value", ESCAPING_RETURN_TO)
def test_return_to_that_a_browser_resolves_to_another_origin_becomes_root(value: str) -> None:
    """After dot-segment removal (percent-encoded dots too) the path must not start with // or /\\."""
    assert safe_return_to(value) == "/"


@pytest.mark.parametrize("value", ESCAPING_RETURN_TO)
def test_login_redirect_never_carries_an_escaping_return_to(value: str) -> None:
    """The login page's ``returnTo`` (what the login redirect hands on) is ``/`` for each of them."""
    assert login_redirect_location("/login", value) == "/login?returnTo=%2F"


@pytest.mark.parametrize(
    "value",
    ["/x/../y", "/a/./b", "/..", "/../x", "/%2e%2e/x", "/a/b/..//c", "/x?next=//evil.example", "/x#//evil"],
)
def test_local_paths_with_dot_segments_stay_accepted(value: str) -> None:
    """Control: dot segments that resolve to an ordinary local path are kept as they were."""
    assert safe_return_to(value) == value


@pytest.mark.parametrize(
    ("path", "pathname"),
    [
        ("/..//evil.example", "//evil.example"),
        ("/.//evil.example", "//evil.example"),
        ("/%2e%2e//evil.example", "//evil.example"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/%2E/b", "/a/b"),
        ("/a/..//b", "//b"),
        ("/..", "/"),
        ("/", "/"),
    ],
)
def test_browser_pathname_follows_the_url_standard(path: str, pathname: str) -> None:
    """The pathname ``new URL(path, origin).pathname`` gives in a browser (checked with Node 20's URL)."""
    assert browser_pathname(path) == pathname
