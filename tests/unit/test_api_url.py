"""``api_url.py``: every URL built stays under REMOTE_API (the security suite's requirements 6 and 19
seen from the joiner itself, so that every caller of ``ApiUrls.join`` is covered)."""

from __future__ import annotations

import random

import pytest
from yarl import URL

from bffgate.api_url import ApiUrls
from bffgate.errors import InvalidUrl

BASE = "http://api.test/v1"


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("items", "", "http://api.test/v1/items"),
        ("items/1", "q=1&r=a%20b", "http://api.test/v1/items/1?q=1&r=a%20b"),
        ("items/7", "q=a b", "http://api.test/v1/items/7?q=a%20b"),
        ("a b", "", "http://api.test/v1/a%20b"),
        ("x", "a=../..", "http://api.test/v1/x?a=../.."),
        ("x", "a=1#frag", "http://api.test/v1/x?a=1%23frag"),
        ("users/me@example.com", "", "http://api.test/v1/users/me@example.com"),
        ("files/a%2Fb.txt".replace("%2F", "-"), "", "http://api.test/v1/files/a-b.txt"),
        ("", "", "http://api.test/v1/"),
    ],
)
def test_join_keeps_ordinary_paths_under_the_base(path: str, query: str, expected: str) -> None:
    """Ordinary paths and queries are joined under REMOTE_API's base path."""
    assert str(ApiUrls(BASE).join(path, query)) == expected
    assert str(ApiUrls(BASE + "/").join(path, query)) == expected


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../x",
        "../admin",
        "a/%2e%2e/b",
        "../../x",
        "a/../../x",
        "a/..",
        ".",
        "%2e%2e",
        "%2E%2e/x",
        "a/%2e%2e/%2e%2e/x",
        "..%2f..%2fx",
        "%2f..%2fx",
        "a%2fb",
        "%252e%252e/x",
        "a/%252f/x",
        "a/%255c",
        "a\\..\\..\\x",
        "a\\b",
        "%5c",
        "/evil.example",
        "//evil.example/x",
        "@evil.example",
        "user@evil.example/x",
        "user@evil/x",
        "a//b",
        "a/%00",
        "a\x00b",
        "a\r\nHost: evil",
        "a\tb",
        "%",
        "%g0",
    ],
)
def test_join_refuses_escapes(path: str) -> None:
    """Every traversal or authority trick raises InvalidUrl instead of building a URL."""
    with pytest.raises(InvalidUrl):
        ApiUrls(BASE).join(path)


def test_join_relative_url_refuses_non_paths() -> None:
    """customfetch's joiner accepts ``/path?q`` only."""
    api = ApiUrls(BASE)
    assert str(api.join_relative_url("/items?q=1")) == "http://api.test/v1/items?q=1"
    assert str(api.join_relative_url("/items#frag")) == "http://api.test/v1/items"
    assert str(api.join_relative_url("/items?q=1#top")) == "http://api.test/v1/items?q=1"
    for url in (
        "items",
        "//evil.example",
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "@evil",
        "/../x",
    ):
        with pytest.raises(InvalidUrl):
            api.join_relative_url(url)


FUZZ_PIECES = [
    "..",
    ".",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "/",
    "@",
    "%252e",
    "%252f",
    "%25",
    "a",
    ":",
    "%00",
    "%",
    "evil.example",
    "%40",
    ";",
    "?",
    "#",
    "~",
]


def test_join_fuzz_never_leaves_the_base() -> None:
    """Thousands of random hostile combinations: InvalidUrl, or a URL that is still under /v1/ after decoding."""
    api = ApiUrls(BASE)
    rng = random.Random(20240611)
    accepted = 0
    for _ in range(5000):
        path = "".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randint(1, 7)))
        try:
            url = api.join(path, "q=" + path)
        except InvalidUrl:
            continue
        accepted += 1
        assert (url.scheme, url.host, url.port) == ("http", "api.test", 80), path
        assert url.raw_path.startswith("/v1/"), path
        reparsed = URL(str(url))  # what another client would make of it (dot segments resolved)
        assert reparsed.host == "api.test"
        assert reparsed.path.startswith("/v1/"), path
        for segment in url.raw_path.split("/"):
            once = URL.build(path="/" + segment, encoded=True).path[1:]
            twice = (
                URL.build(path="/" + once.replace("/", ""), encoded=True).path[1:] if "%" in once else once
            )
            for decoded in (once, twice):
                assert decoded not in (".", ".."), path
                assert "\\" not in decoded, path
    assert accepted > 100  # the fuzz also exercises the accepting branch


@pytest.mark.parametrize("path", ["a/..;/x", "a/%2e%2e;/x", "..;", ".;", "a/..%3b/x", "a/.%2E;p/x"])
def test_join_refuses_dot_segments_with_parameters(path: str) -> None:
    """The joiner itself refuses dot segments hidden by ``;`` parameters (requirement 19)."""
    with pytest.raises(InvalidUrl):
        ApiUrls(BASE).join(path)
