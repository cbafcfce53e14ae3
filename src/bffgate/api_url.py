"""The URL policy: every URL the gateway calls is ``REMOTE_API`` plus a path that cannot leave it.

A leaf module: no sessions, no I/O. ``ApiUrls.join`` builds the URL of a proxied path,
``join_relative_url`` the one of a customfetch envelope's ``url``; both refuse traversal, encoded
separators and authority tricks with ``InvalidUrl`` (400).
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote, unquote

from yarl import URL

from .errors import InvalidUrl

# Path characters RFC 3986 allows as they are; anything else is percent-encoded before checking.
_PATH_SAFE = "/%-._~!$&'()*+,;=:@"
_QUERY_SAFE = _PATH_SAFE + "?"
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)


class ApiUrls:
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
