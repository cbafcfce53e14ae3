"""``api_url.py``: every URL built stays under REMOTE_API."""

from __future__ import annotations

import pytest

from bffgate.api_url import ApiUrls
from bffgate.errors import InvalidUrl

BASE = "https://api.example.com/v1"


def test_a_path_and_query_are_joined_under_the_base() -> None:
    assert str(ApiUrls(BASE).join("items/7", "q=a b")) == "https://api.example.com/v1/items/7?q=a%20b"


@pytest.mark.parametrize("path", ["../admin", "a/%2e%2e/b", "a//b", "a%2fb", "user@evil/x", "a\\b"])
def test_paths_that_could_leave_the_base_are_refused(path: str) -> None:
    with pytest.raises(InvalidUrl):
        ApiUrls(BASE).join(path)


@pytest.mark.parametrize("url", ["items", "//evil.example/x", "/\\evil.example"])
def test_an_envelope_url_must_be_a_plain_absolute_path(url: str) -> None:
    with pytest.raises(InvalidUrl):
        ApiUrls(BASE).join_relative_url(url)


def test_an_envelope_url_keeps_its_query_and_drops_its_fragment() -> None:
    joined = ApiUrls(BASE).join_relative_url("/items?q=1#top")
    assert str(joined) == "https://api.example.com/v1/items?q=1"
