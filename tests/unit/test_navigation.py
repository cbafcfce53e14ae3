"""``navigation.py``: ``returnTo`` keeps only same-origin paths, judged as a browser resolves them."""

from __future__ import annotations

import pytest
from yarl import URL

from bffgate.navigation import browser_pathname, login_redirect_location, safe_return_to


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/x", "/x"),
        ("/dashboard?tab=2#top", "/dashboard?tab=2#top"),
        ("/a/b/../c", "/a/b/../c"),
        ("/", "/"),
        ("//x", "/"),
        ("//evil.example/path", "/"),
        ("/\\x", "/"),
        ("/\\\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("/x\\y", "/"),
        ("https://evil", "/"),
        ("http://127.0.0.1:8000/x", "/"),
        ("http:/evil", "/"),
        ("javascript:alert(1)", "/"),
        ("JaVaScRiPt:alert(1)", "/"),
        ("data:text/html,hi", "/"),
        ("/\tx", "/"),
        ("/\t/evil.example", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("/x\n", "/"),
        ("/x y", "/"),
        (" /x", "/"),
        ("/\x00x", "/"),
        ("x", "/"),
        ("evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_safe_return_to_accepts_only_local_paths(value: str | None, expected: str) -> None:
    """``returnTo`` keeps a same-origin path and turns anything else into ``/``."""
    assert safe_return_to(value) == expected


@pytest.mark.parametrize(
    "target", ["//evil.example", "https://evil.example/x", "/\\evil.example", "/ok?next=1"]
)
def test_login_redirect_location_stays_local(target: str) -> None:
    """The login redirect's ``returnTo`` is always a percent-encoded local path."""
    location = login_redirect_location("/login", target)
    assert location.startswith("/login?returnTo=%2F")
    returned = URL(location).query["returnTo"]
    assert returned == safe_return_to(target)
    assert returned.startswith("/")
    assert not returned.startswith(("//", "/\\"))


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
