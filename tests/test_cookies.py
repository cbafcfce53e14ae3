"""Set-Cookie building: attributes, prefix, chunking and clearing."""

from __future__ import annotations

import pytest

from bffgate.cookies import CHUNK_SIZE, MAX_CHUNKS, CookieJar, CookieTooLarge

from .harness import parse_set_cookie


def test_secure_cookies_have_every_attribute() -> None:
    """A session cookie is HttpOnly, Secure, SameSite=Strict, Path=/, has a Max-Age and no Domain."""
    jar = CookieJar(secure=True)
    name, value, attributes = parse_set_cookie(jar.set(jar.name("accessTokenEtls"), "v", 60))
    assert (name, value) == ("__Host-accessTokenEtls", "v")
    assert attributes == {"max-age": "60", "path": "/", "httponly": "", "secure": "", "samesite": "Strict"}


def test_insecure_mode_drops_prefix_and_secure() -> None:
    """With BFF_COOKIE_SECURE=false the __Host- prefix (which requires Secure) is dropped too."""
    jar = CookieJar(secure=False)
    name, _, attributes = parse_set_cookie(jar.set(jar.name("accessTokenEtls"), "v", 60))
    assert name == "accessTokenEtls"
    assert "secure" not in attributes


def test_large_values_are_chunked_and_read_back() -> None:
    """A value over the chunk size is split into name_0, name_1, ... each under 4096 bytes, and joins back."""
    jar = CookieJar()
    value = "v" * (CHUNK_SIZE * 2 + 10)
    headers = jar.write({}, "__Host-x", value, 60)
    cookies = dict(parse_set_cookie(h)[:2] for h in headers)
    assert sorted(cookies) == ["__Host-x_0", "__Host-x_1", "__Host-x_2"]
    assert all(len(f"{n}={v}") <= 4096 for n, v in cookies.items())
    assert jar.read(cookies, "__Host-x") == value


def test_writing_a_smaller_value_expires_stale_chunks() -> None:
    """When a value shrinks, the chunks the browser still holds are expired."""
    jar = CookieJar()
    browser = {"__Host-x_0": "a", "__Host-x_1": "b", "__Host-x_2": "c"}
    headers = jar.write(browser, "__Host-x", "small", 60)
    parsed = [parse_set_cookie(h) for h in headers]
    assert ("__Host-x", "small") in [(n, v) for n, v, _ in parsed]
    expired = sorted(n for n, _, a in parsed if a["max-age"] == "0")
    assert expired == ["__Host-x_0", "__Host-x_1", "__Host-x_2"]


def test_chunk_count_is_bounded() -> None:
    """A value that would need more than MAX_CHUNKS cookies is refused."""
    with pytest.raises(CookieTooLarge):
        CookieJar().write({}, "__Host-x", "v" * (CHUNK_SIZE * MAX_CHUNKS + 1), 60)


def test_clear_expires_the_cookie_and_all_its_chunks() -> None:
    """Clearing expires name and every name_N the browser sent, but not other cookies."""
    jar = CookieJar()
    headers = jar.clear({"__Host-x_0": "a", "__Host-x_1": "b", "__Host-xy": "c", "other": "d"}, "__Host-x")
    assert sorted(parse_set_cookie(h)[0] for h in headers) == ["__Host-x", "__Host-x_0", "__Host-x_1"]
