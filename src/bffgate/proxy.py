"""The proxy mechanics: safe upstream URLs, header filtering, request bodies, streaming answers.

Nothing here knows about sessions; ``gateway.py`` decides which token to attach and when to retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope, Send
from yarl import URL

from .cache_control import for_shared_caches as cache_control_for_shared_caches
from .errors import HeadersTooLarge, InvalidRequest, InvalidUrl, PayloadTooLarge
from .transport import ApiAnswer, TransportError

log = logging.getLogger("bffgate.proxy")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Browser headers that proxies, routers and frameworks behind us take as the word of a trusted hop:
# where the request came from (client IP), what URL or method it "really" had (rewrites and method
# overrides), and how it reached us (scheme, host, port, prefix). A browser may send any of them, so
# none reaches the API. Whole families go by rule, so a vendor's next spelling is covered too:
# - every name starting with one of TRUSTED_HOP_PREFIXES (X-Forwarded-For/-Host/-Proto/-Prefix/-Port/
#   -Server/-Scheme/-Uri/-Method/-Ssl…, X-Original-URL/-URI/-Method/-Host, X-Rewrite-URL,
#   X-Envoy-Original-Path and Envoy's other control headers);
# - every name ending with one of TRUSTED_HOP_SUFFIXES: client-IP headers (X-Real-IP, True-Client-IP,
#   X-Client-IP, X-Cluster-Client-IP, CF-Connecting-IP, Fastly-Client-IP, Client-IP, X-Remote-IP,
#   X-Originating-IP, WL-Proxy-Client-IP, CF-Connecting-IPv6…) and method overrides
#   (X-HTTP-Method-Override, X-Method-Override);
# - and the names of TRUSTED_HOP_NAMES, which fit no family.
TRUSTED_HOP_PREFIXES = ("x-forwarded-", "x-original-", "x-rewrite-", "x-envoy-")
TRUSTED_HOP_SUFFIXES = ("-ip", "-ipv6", "method-override")
TRUSTED_HOP_NAMES = frozenset(
    {
        "forwarded",
        "x-forwarded",
        "x-http-method",
        "x-host",
        "x-scheme",
        "x-url-scheme",
        "x-arr-ssl",
        "front-end-https",
        "x-azure-clientip",
        "x-azure-socketip",
    }
)
# Never forwarded from the browser: its credentials for *us*, our own CSRF header and the framing
# we set ourselves (plus the trusted-hop families above, checked by rule).
REQUEST_DROP = (
    HOP_BY_HOP
    | {
        "host",
        "cookie",
        "authorization",
        "x-csrf",
        "content-length",
        "expect",
    }
    | TRUSTED_HOP_NAMES
)
# The server in front of the browser writes its own Date; the upstream's would be a duplicate.
RESPONSE_DROP_KEEP_COOKIES = HOP_BY_HOP | {"date"}
RESPONSE_DROP = RESPONSE_DROP_KEEP_COOKIES | {"set-cookie"}
RESPONSE_DROP_BYTES = frozenset(name.encode() for name in RESPONSE_DROP)
RESPONSE_DROP_KEEP_COOKIES_BYTES = frozenset(name.encode() for name in RESPONSE_DROP_KEEP_COOKIES)
REQUEST_DROP_BYTES = frozenset(name.encode() for name in REQUEST_DROP)
_TRUSTED_HOP_PREFIXES_BYTES = tuple(prefix.encode() for prefix in TRUSTED_HOP_PREFIXES)
_TRUSTED_HOP_SUFFIXES_BYTES = tuple(suffix.encode() for suffix in TRUSTED_HOP_SUFFIXES)

BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})
# A body on these is never forwarded: an API (or a cache) that ignores it would read it as the start of
# the next request on the connection.
NO_BODY_ALLOWED = frozenset({"GET", "HEAD"})
NO_BODY_STATUSES = frozenset({204, 304})
# The ASGI server (httptools) sets no limit of its own; APIs behind us commonly reject above 8-64 KB.
MAX_REQUEST_HEADER_BYTES = 64 * 1024

# Path characters RFC 3986 allows as they are; anything else is percent-encoded before checking.
_PATH_SAFE = "/%-._~!$&'()*+,;=:@"
_QUERY_SAFE = _PATH_SAFE + "?"
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------
# Upstream URLs


class UpstreamBase:
    """``REMOTE_API`` and the check that every URL we build stays under it."""

    def __init__(self, remote_api: str) -> None:
        self.base = remote_api.rstrip("/")
        parsed = URL(self.base)
        self._origin = (parsed.scheme, parsed.host, parsed.port)
        self._path_prefix = parsed.raw_path.rstrip("/") + "/"
        # Apps call the same few paths over and over: checking each once is enough (bounded).
        self.join = functools.lru_cache(maxsize=4096)(self._join)  # type: ignore[method-assign]

    def join(self, relative_path: str, query: str = "") -> URL:
        """``REMOTE_API/relative_path?query``; raises ``InvalidUrl`` if it would leave REMOTE_API."""
        return self._join(relative_path, query)

    def _join(self, relative_path: str, query: str = "") -> URL:
        """``REMOTE_API/relative_path?query``; raises ``InvalidUrl`` if it would leave REMOTE_API."""
        path = normalize_path(relative_path)
        query = quote(query, safe=_QUERY_SAFE) if query else ""
        if _BAD_PERCENT.search(query):
            raise InvalidUrl("the query has a malformed percent-escape")
        url = URL(f"{self.base}/{path}" + (f"?{query}" if query else ""), encoded=True)
        # Belt and braces: whatever the checks above missed, the parsed URL must still be ours.
        if (url.scheme, url.host, url.port) != self._origin or not (url.raw_path + "/").startswith(
            self._path_prefix
        ):
            raise InvalidUrl()
        return url

    def join_relative_url(self, relative_url: str) -> URL:
        """For the customfetch envelope: ``relative_url`` must be a path like ``/items?q=1``."""
        if not isinstance(relative_url, str) or not relative_url.startswith("/"):
            raise InvalidUrl("url must be a path starting with /")
        if relative_url.startswith(("//", "/\\")):
            raise InvalidUrl("url must not be scheme-relative")
        path, _, query = relative_url.partition("#")[0].partition("?")
        return self.join(path[1:], query)


def normalize_path(relative_path: str) -> str:
    """The percent-encoded path, or ``InvalidUrl`` for traversal, encoded separators and authority tricks."""
    if any(ch in relative_path for ch in "\\\x00\r\n\t"):
        raise InvalidUrl("the path contains a backslash or a control character")
    path = quote(relative_path, safe=_PATH_SAFE)
    if _BAD_PERCENT.search(path):
        raise InvalidUrl("the path has a malformed percent-escape")
    segments = path.split("/")
    if "@" in segments[0]:
        raise InvalidUrl("the path must not start with userinfo")
    for index, segment in enumerate(segments):
        if segment == "" and index != len(segments) - 1:
            raise InvalidUrl("the path must not contain empty segments (//)")
        decoded = unquote(segment)
        if any(ch in decoded for ch in "/\\"):
            raise InvalidUrl("the path must not contain encoded separators")
        if _is_dot_segment(segment, decoded):
            raise InvalidUrl("the path must not contain dot segments (also with ;parameters)")
        if _CONTROL.search(decoded):  # %0D%0A and friends: header splitting in naive upstreams
            raise InvalidUrl("the path must not contain encoded control characters")
        if _ENCODED_SEPARATOR.search(decoded):  # double-encoded: %252e%252e
            raise InvalidUrl("the path must not contain double-encoded separators")
    return path


def _is_dot_segment(segment: str, decoded: str) -> bool:
    """``.`` or ``..`` as any server behind us may read ``segment``, path parameters included.

    Servlet containers (Tomcat, Jetty, Spring) drop ``;…`` from a segment before resolving dot
    segments, so ``..;x`` climbs up there; some strip it before percent-decoding (``%2e%2e;``), some
    after (``..%3b``). Judging both readings refuses whichever one an API uses.
    """
    return (
        decoded in (".", "..")
        or unquote(segment.partition(";")[0]) in (".", "..")
        or decoded.partition(";")[0] in (".", "..")
    )


# ---------------------------------------------------------------------------------------------------
# Headers


def header_value(raw_headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes) in ASGI's raw list, or None.

    On the proxy path this replaces Starlette's ``Headers.get``, whose misses go through a KeyError.
    """
    for key, value in raw_headers:
        if key == name:
            return value.decode("latin-1")
    return None


def is_dropped_request_header(name: bytes) -> bool:
    """True for a browser header (lower-case name) that must not reach the API; see REQUEST_DROP."""
    return (
        name in REQUEST_DROP_BYTES
        or name.startswith(_TRUSTED_HOP_PREFIXES_BYTES)
        or name.endswith(_TRUSTED_HOP_SUFFIXES_BYTES)
    )


# The verdict per header name, remembered: browsers send the same dozen names on every request, so
# the filter costs one dict lookup per header, as the plain set lookup it replaces did (a miss, the
# first time a name is seen, goes through ``_judge``). Bounded, so random names cannot grow it.
_VERDICTS: dict[bytes, bool] = {name: True for name in REQUEST_DROP_BYTES}
_MAX_VERDICTS = 2048


def _judge(name: bytes) -> bool:
    verdict = is_dropped_request_header(name)
    if len(_VERDICTS) < _MAX_VERDICTS:
        _VERDICTS[name] = verdict
    return verdict


def forwardable_request_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The browser's end-to-end headers, in one pass (plus a rare second for Connection-named ones).

    Every ``Connection`` header counts: a list split over several of them names hop-by-hop headers
    just as one header would (RFC 9110 5.3).
    """
    kept: list[tuple[str, str]] = []
    connection_named: list[str] = []
    size = 0
    for name, value in raw_headers:
        size += len(name) + len(value)
        try:
            dropped = _VERDICTS[name]
        except KeyError:
            dropped = _judge(name)
        if dropped:
            if name == b"connection":
                connection_named += [t.strip().lower() for t in value.decode("latin-1").split(",")]
            continue
        kept.append((name.decode("latin-1"), value.decode("latin-1")))
    if size > MAX_REQUEST_HEADER_BYTES:
        raise HeadersTooLarge(f"the request headers are larger than {MAX_REQUEST_HEADER_BYTES} bytes")
    if connection_named:
        kept = [(n, v) for n, v in kept if n not in connection_named]
    return kept


def browser_response_headers(
    upstream: ApiAnswer, *, pass_cookies: bool, set_cookies: list[str], bodiless: bool = False
) -> list[tuple[bytes, bytes]]:
    """The upstream's end-to-end head fields for the browser (never its trailers), plus our Set-Cookie.

    CORS headers are dropped too: the browser talks to the gateway's origin, which never approves
    cross-origin requests, so an API's ``Access-Control-*`` answer has no meaning there. The answer
    is to a session-authenticated call, so its Cache-Control keeps shared caches out (``cache_control``).
    ``bodiless``: the API's answer has no body although the browser's answer will (customfetch with
    ``"method": "HEAD"``), so its Content-Length does not describe what the browser gets.
    """
    drop = RESPONSE_DROP_KEEP_COOKIES_BYTES if pass_cookies else RESPONSE_DROP_BYTES
    if bodiless or upstream.status in NO_BODY_STATUSES:
        # The server in front frames the browser's answer itself: a 204 must not declare a length
        # (RFC 9110 8.6), and one declared for a body that is not sent would cut the connection.
        drop = drop | {b"content-length"}
    headers: list[tuple[bytes, bytes]] = []
    connection_named: set[bytes] = set()
    cache_control: list[bytes] = []
    for name, value in upstream.raw_headers:
        lower = name.lower()
        if lower == b"connection":  # every Connection header counts, not only the last one
            connection_named.update(token.strip().lower() for token in value.split(b","))
        elif lower == b"cache-control":
            cache_control.append(value)
        elif lower not in drop and not lower.startswith(b"access-control-"):
            headers.append((lower, value))
    if connection_named:
        headers = [(name, value) for name, value in headers if name not in connection_named]
    if set_cookies:
        headers.append((b"cache-control", b"no-store"))
        headers.extend((b"set-cookie", cookie.encode("latin-1")) for cookie in set_cookies)
    else:  # every proxied call is session-authenticated: no shared cache may keep its answer
        headers.append((b"cache-control", cache_control_for_shared_caches(cache_control)))
    return headers


# ---------------------------------------------------------------------------------------------------
# Request bodies


@dataclass(slots=True)
class RequestBody:
    """A request body: whole in memory when it fits the replay buffer, else streamed once."""

    data: bytes | None = None
    rest: AsyncIterator[bytes] | None = None
    length: int | None = None

    @property
    def replayable(self) -> bool:
        return self.rest is None

    def payload(self) -> bytes | AsyncIterator[bytes] | None:
        return self.data if self.rest is None else self.rest


async def read_body(request: Request, *, max_bytes: int, replay_bytes: int) -> RequestBody:
    """Read up to ``replay_bytes`` into memory; beyond that, stream the rest (not replayable)."""
    raw_headers = request.scope["headers"]
    declared = header_value(raw_headers, b"content-length")
    length = int(declared) if declared and declared.isdigit() else None
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    if length in (None, 0) and header_value(raw_headers, b"transfer-encoding") is None:
        return RequestBody(data=b"" if request.method not in BODYLESS_METHODS else None)
    refuse_body_on(request.method)
    stream = _body_pieces(request)
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
        if size > replay_bytes:
            return RequestBody(rest=_continue(chunks, stream, size, max_bytes), length=length)
    return RequestBody(data=b"".join(chunks))


def refuse_body_on(method: str) -> None:
    """``InvalidRequest`` for a GET or HEAD that carries a body (it is never forwarded)."""
    if method in NO_BODY_ALLOWED:
        raise InvalidRequest(f"a {method} request must not have a body")


async def _body_pieces(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives; a client that closes before its end is its error, not a traceback of ours."""
    try:
        async for piece in request.stream():
            yield piece
    except ClientDisconnect:
        raise InvalidRequest("the connection closed before the request body ended") from None


async def _continue(
    head: list[bytes], stream: AsyncIterator[bytes], size: int, max_bytes: int
) -> AsyncIterator[bytes]:
    """The body read so far, then the rest; ``PayloadTooLarge`` (413) once it passes ``max_bytes``."""
    for chunk in head:
        yield chunk
    async for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
        yield chunk


# ---------------------------------------------------------------------------------------------------
# Sending and streaming


class UpstreamResponse:
    """An ASGI response that streams the API's answer to the browser and always releases it."""

    SMALL_BODY = 64 * 1024  # read at once and sent in one ASGI message

    def __init__(
        self,
        upstream: ApiAnswer,
        headers: list[tuple[bytes, bytes]],
        browser_method: str,
        *,
        write_timeout: float | None = None,
    ) -> None:
        self.upstream = upstream
        self.status_code = upstream.status
        self.raw_headers = headers
        self._browser_method = browser_method
        self._write_timeout = write_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        upstream = self.upstream
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            if self._browser_method == "HEAD":
                upstream.release()
                await send({"type": "http.response.body", "body": b""})
                return
            length = upstream.content_length
            if (length is not None and length <= self.SMALL_BODY) or upstream.complete:
                body = await upstream.read()
                # The API's part is over: a browser that is slow to take the answer holds only its
                # own connection, never the API's.
                upstream.release()
                await send({"type": "http.response.body", "body": body})
                return
            await self._stream(receive, send)
        except TransportError as exc:
            # The status line is gone already: all we can do is cut the connection (the server
            # does, as the response is incomplete) so the browser sees a broken answer, not a
            # silently truncated one.
            log.warning("the remote API's answer broke off mid-stream (%s)", type(exc).__name__)
            upstream.close()
        finally:
            upstream.release()

    async def _stream(self, receive: Receive, send: Send) -> None:
        """A long answer, piece by piece, until its end or until the browser goes away.

        ASGI servers drop what we send after the browser has gone, so only ``receive`` tells: without
        this watch, a cancelled 1 GB download would still be pulled from the API to the last byte.
        A browser that stops reading (its window closed, the connection still open) gets each piece
        within the write timeout or is dropped, so the API's exchange is never pinned for ever.
        """
        upstream = self.upstream
        watch = asyncio.ensure_future(_until_disconnect(receive))

        def browser_left(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and not upstream.complete:
                upstream.close()  # wakes the read below with a TransportError

        watch.add_done_callback(browser_left)
        try:
            async for chunk in upstream.iter_chunks():
                async with asyncio.timeout(self._write_timeout):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except TimeoutError:
            log.info("the browser took no data for %g s; its answer was cut off", self._write_timeout)
            upstream.close()
        except TransportError:
            if not (watch.done() and not watch.cancelled()):
                raise
            log.debug("the browser went away mid-stream; the API's answer was dropped")
        finally:
            watch.cancel()


async def _until_disconnect(receive: Receive) -> None:
    # Whatever else arrives (the rest of a request body the API did not wait for) is dropped.
    while (await receive())["type"] != "http.disconnect":
        pass
