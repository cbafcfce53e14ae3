"""``customfetch.py``: the seed's envelope becomes the same ``ApiCall`` a proxy path would, or a 400."""

from __future__ import annotations

from typing import Any

import pytest

from bffgate.api_url import ApiUrls
from bffgate.customfetch import parse_envelope
from bffgate.errors import InvalidRequest, InvalidUrl, PayloadTooLarge

API = ApiUrls("http://api.test/v1")


def parse(envelope: Any, max_body_bytes: int = 1024) -> Any:
    return parse_envelope(envelope, API, max_body_bytes=max_body_bytes)


def test_without_options_it_is_a_plain_get() -> None:
    call = parse({"url": "/items?q=1"})
    assert (call.method, str(call.url), call.headers, call.body.data) == (
        "GET",
        "http://api.test/v1/items?q=1",
        [],
        None,
    )


def test_a_json_body_is_sent_as_json_unless_the_page_said_otherwise() -> None:
    call = parse({"url": "/items", "options": {"method": "post", "body": {"a": 1}}})
    assert (call.method, call.body.data) == ("POST", b'{"a": 1}')
    assert ("Content-Type", "application/json") in call.headers
    typed = parse(
        {"url": "/x", "options": {"method": "PUT", "body": {"a": 1}, "headers": {"Content-Type": "text/x"}}}
    )
    assert [v for n, v in typed.headers if n.lower() == "content-type"] == ["text/x"]


def test_a_string_body_is_sent_as_written() -> None:
    call = parse({"url": "/x", "options": {"method": "POST", "body": "a=1"}})
    assert call.body.data == b"a=1"
    assert not any(name.lower() == "content-type" for name, _ in call.headers)


def test_headers_pass_the_proxy_filter() -> None:
    """What the browser may not send through the proxy it may not send through the envelope either."""
    call = parse({"url": "/x", "options": {"headers": {"Authorization": "Bearer stolen", "X-App": "1"}}})
    assert [name.lower() for name, _ in call.headers] == ["x-app"]


@pytest.mark.parametrize(
    "envelope",
    [
        [],
        {"url": 7},
        {"url": "/x", "options": []},
        {"url": "/x", "options": {"method": "TRACE"}},
        {"url": "/x", "options": {"headers": ["a"]}},
        {"url": "/x", "options": {"headers": {"bad name": "1"}}},
        {"url": "/x", "options": {"headers": {"X-A": "a\r\nb"}}},
        {"url": "/x", "options": {"headers": {"X-A": 1}}},
        {"url": "/x", "options": {"method": "GET", "body": "on a GET"}},
    ],
)
def test_a_malformed_envelope_is_invalid_request(envelope: Any) -> None:
    with pytest.raises(InvalidRequest):
        parse(envelope)


def test_a_url_that_leaves_the_api_is_invalid_url() -> None:
    with pytest.raises(InvalidUrl):
        parse({"url": "//evil.example/x"})


def test_a_body_over_the_limit_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        parse({"url": "/x", "options": {"method": "POST", "body": "x" * 11}}, max_body_bytes=10)
