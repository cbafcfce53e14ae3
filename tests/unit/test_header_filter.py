"""``header_filter.py``: what crosses the gateway in each direction."""

from __future__ import annotations

import pytest

from bffgate.errors import HeadersTooLarge
from bffgate.header_filter import (
    MAX_REQUEST_HEADER_BYTES,
    browser_response_headers,
    forwardable_request_headers,
    header_value,
)

from .memory_transport import MemoryAnswer


def test_credentials_for_the_gateway_and_trusted_hop_headers_stay_behind() -> None:
    raw = [
        (b"accept", b"application/json"),
        (b"cookie", b"__Host-bff=x"),
        (b"authorization", b"Bearer browser"),
        (b"x-csrf", b"1"),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"x-vendor-client-ip", b"10.0.0.2"),
        (b"connection", b"x-secret"),
        (b"x-secret", b"hop"),
    ]
    assert forwardable_request_headers(raw) == [("accept", "application/json")]


def test_oversized_request_heads_are_refused() -> None:
    with pytest.raises(HeadersTooLarge):
        forwardable_request_headers([(b"x-big", b"v" * (MAX_REQUEST_HEADER_BYTES + 1))])


def test_header_value_finds_the_first_value_or_none() -> None:
    raw = [(b"a", b"1"), (b"a", b"2")]
    assert (header_value(raw, b"a"), header_value(raw, b"b")) == ("1", None)


def test_the_api_cannot_set_cookies_or_cors_and_its_answer_is_kept_out_of_shared_caches() -> None:
    answer = MemoryAnswer(
        200,
        [
            (b"Content-Type", b"text/plain"),
            (b"Set-Cookie", b"api=1"),
            (b"Access-Control-Allow-Origin", b"*"),
            (b"Date", b"yesterday"),
            (b"Cache-Control", b"max-age=60, s-maxage=600"),
        ],
    )
    headers = browser_response_headers(answer, pass_cookies=False, set_cookies=[])
    names = [name for name, _ in headers]
    assert b"set-cookie" not in names and b"access-control-allow-origin" not in names
    assert b"date" not in names
    assert dict(headers)[b"cache-control"] == b"private, max-age=60"


def test_new_session_cookies_make_the_answer_no_store() -> None:
    headers = browser_response_headers(MemoryAnswer(200), pass_cookies=False, set_cookies=["a=1"])
    assert (b"set-cookie", b"a=1") in headers
    assert (b"cache-control", b"no-store") in headers
