"""The providers' HTTP client (aiohttp) and their JSON calls: login, refresh, discovery, JWKS, revocation.

aiohttp's exceptions are translated here into ``UpstreamError`` / ``UpstreamTimeout`` and nowhere
else. The client is created once per process, for every provider call, each on a connection of its
own. Proxied API calls, the hot path, go through ``http1.py`` instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from .. import tracing
from ..errors import UpstreamError, UpstreamTimeout

MAX_JSON_ANSWER = 1024 * 1024  # provider answers are small; a larger one is broken or hostile


def create_http_client(*, connect_timeout: float, read_timeout: float | None = None) -> aiohttp.ClientSession:
    """The process-wide client. Bodies pass through byte for byte (no decompression, no cookies kept).

    ``read_timeout`` bounds every wait for the upstream (its answer's start, then each pause while it
    streams): set once here rather than per request, which keeps the proxy path free of timers.
    """
    # One connection per call (force_close): aiohttp keeps bytes that arrive on an idle connection and
    # reads them as the answer to the connection's next request, so a provider (or a REST API's login
    # endpoint) sending more than its Content-Length a moment late could hand one user's tokens to the
    # next user who logs in or refreshes. Provider calls are rare enough not to need keep-alive.
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=60, enable_cleanup_closed=True, force_close=True)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout),
        # No Accept-Encoding of our own: the browser's is forwarded as it is, and provider answers
        # arrive uncompressed, so bodies never need inflating here. No automatic Content-Type either:
        # aiohttp would label a bodiless call application/octet-stream, which strict APIs answer 415;
        # call_json names the type of each body it sends.
        skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
        raise_for_status=False,
    )


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    status: int
    body: Any  # parsed JSON, or None when the answer was not JSON
    # The answer's Set-Cookie values by cookie name: some APIs hand out the refresh token that way.
    cookies: Mapping[str, str] = field(default_factory=dict)
    location: str | None = None  # a redirect's target (provider calls never follow redirects)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def call_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    timeout: float,
    json_body: Any = None,
    form: Mapping[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonAnswer:
    """Send a small request and parse its JSON answer; network failures raise ``UpstreamError``.

    A JSON body goes as ``application/json``, a form as ``application/x-www-form-urlencoded`` and a
    call without a body carries no Content-Type at all (DRF, Spring, Express and others refuse a body
    whose type they cannot read, and some a bodiless call that claims one).
    """
    with tracing.span(
        f"provider {method}", kind="client", http__request__method=method, url__full=url.partition("?")[0]
    ) as span:
        answer = await _call_json(http, method, url, timeout, json_body, form, headers)
        tracing.set_attributes(span, http__response__status_code=answer.status)
        return answer


async def _call_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    timeout: float,
    json_body: Any,
    form: Mapping[str, str] | None,
    headers: dict[str, str] | None,
) -> JsonAnswer:
    body, content_type = _encode_body(json_body, form)
    request_headers = {"Accept": "application/json", **(headers or {})}
    if content_type is not None:
        request_headers.setdefault("Content-Type", content_type)
    tracing.inject_dict(request_headers)  # W3C traceparent to the provider
    try:
        async with asyncio.timeout(timeout):
            async with http.request(
                method, url, data=body, headers=request_headers, allow_redirects=False
            ) as response:
                raw = await _read_capped(response)
                cookies = {name: morsel.value for name, morsel in response.cookies.items()}
                location = response.headers.get("Location")
                return JsonAnswer(response.status, _parse_json(raw), cookies, location)
    except TimeoutError as exc:
        raise UpstreamTimeout(f"{_where(url)} did not answer within {timeout:g} s") from exc
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise UpstreamError(f"{_where(url)} could not be reached ({type(exc).__name__})") from exc


def _encode_body(json_body: Any, form: Mapping[str, str] | None) -> tuple[bytes | None, str | None]:
    """The bytes to send and their Content-Type; (None, None) for a call without a body."""
    if json_body is not None:
        return json.dumps(json_body, separators=(",", ":")).encode(), "application/json"
    if form is not None:
        return urlencode(form).encode(), "application/x-www-form-urlencoded"
    return None, None


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_JSON_ANSWER:
            raise ValueError("answer too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return None


def _where(url: str) -> str:
    # Only scheme, host and path: a query might carry something secret.
    return url.split("?", 1)[0]
