"""Header filters: which browser headers reach the API, and which of the API's reach the browser.

A leaf module: raw ASGI header lists in, filtered lists out; no sessions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from .cache_control import for_shared_caches as cache_control_for_shared_caches
from .errors import HeadersTooLarge
from .problems import session_cookie_headers
from .transport import ApiAnswer

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
        "x-request-id",  # the gateway sends the request's own id (``requestlog``)
    }
    | TRUSTED_HOP_NAMES
)
# The server in front of the browser writes its own Date; the upstream's would be a duplicate. The
# browser gets the request's own X-Request-ID (``requestlog``), never a second one from the API.
RESPONSE_DROP_KEEP_COOKIES = HOP_BY_HOP | {"date", "x-request-id"}
RESPONSE_DROP = RESPONSE_DROP_KEEP_COOKIES | {"set-cookie"}
RESPONSE_DROP_BYTES = frozenset(name.encode() for name in RESPONSE_DROP)
RESPONSE_DROP_KEEP_COOKIES_BYTES = frozenset(name.encode() for name in RESPONSE_DROP_KEEP_COOKIES)
REQUEST_DROP_BYTES = frozenset(name.encode() for name in REQUEST_DROP)
_TRUSTED_HOP_PREFIXES_BYTES = tuple(prefix.encode() for prefix in TRUSTED_HOP_PREFIXES)
_TRUSTED_HOP_SUFFIXES_BYTES = tuple(suffix.encode() for suffix in TRUSTED_HOP_SUFFIXES)

NO_BODY_STATUSES = frozenset({204, 304})
# The ASGI server (httptools) sets no limit of its own; APIs behind us commonly reject above 8-64 KB.
MAX_REQUEST_HEADER_BYTES = 64 * 1024


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


def is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether these (lower-case) answer headers declare ``text/event-stream``; only asked of answers
    without a Content-Length, so the usual answer costs nothing here."""
    for name, value in headers:
        if name == b"content-type":
            return value[:17].lower() == b"text/event-stream"
    return False


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
    if upstream.content_length is None and is_event_stream(headers):
        # Server-sent events: a buffering proxy in front (nginx) would hold the events back.
        headers.append((b"x-accel-buffering", b"no"))
    if set_cookies:
        headers += session_cookie_headers(set_cookies)
    else:  # every proxied call is session-authenticated: no shared cache may keep its answer
        headers.append((b"cache-control", cache_control_for_shared_caches(cache_control)))
    return headers
