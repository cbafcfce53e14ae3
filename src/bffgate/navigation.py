"""Page navigations versus fetch/XHR calls, and safe ``returnTo`` targets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

# A local path: one leading slash, then no slash or backslash right after it, no scheme, no control
# characters or whitespace anywhere (browsers strip some of them and could read "/\t/evil" as "//evil").
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\\\x00-\x20\x7f]*")
# What the WHATWG URL parser takes for "." and ".." segments (ASCII case-insensitive).
_SINGLE_DOT = frozenset({".", "%2e"})
_DOUBLE_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})


def is_navigation(headers: Mapping[str, str]) -> bool:
    """True for a top-level page load, which should be redirected rather than answered with JSON."""
    if headers.get("sec-fetch-mode") == "navigate":
        return True
    return "text/html" in headers.get("accept", "")


def safe_return_to(value: str | None) -> str:
    """``value`` when it is a same-origin path (``/x``), else ``/``.

    Judged as the browser will read it: ``/..//evil.example`` and ``/%2e%2e//evil.example`` have the
    pathname ``//evil.example`` once dot segments are removed, which any router that re-emits the
    pathname turns into a redirect to another origin. A router that percent-decodes first
    (``/..%2f/evil.example``) is covered by judging the decoded path the same way.
    """
    if not value or not _LOCAL_PATH.fullmatch(value):
        return "/"
    path = value.partition("#")[0].partition("?")[0]
    for reading in (path, unquote(path).replace("\\", "/")):
        if unquote(browser_pathname(reading)).startswith(("//", "/\\")):
            return "/"
    return value


def browser_pathname(path: str) -> str:
    """The pathname a browser makes of ``path`` (which starts with ``/``): dot segments removed.

    The WHATWG URL standard's path state: ``..`` drops the previous segment, ``.`` is skipped, and a
    dot segment at the end leaves an empty one behind. Percent-encoded dots count as dots.
    """
    segments = path[1:].split("/")
    kept: list[str] = []
    for index, segment in enumerate(segments):
        at_end = index == len(segments) - 1
        lowered = segment.lower()
        if lowered in _DOUBLE_DOT:
            if kept:
                kept.pop()
            if at_end:
                kept.append("")
        elif lowered in _SINGLE_DOT:
            if at_end:
                kept.append("")
        else:
            kept.append(segment)
    return "/" + "/".join(kept)


def login_redirect_location(login_page: str, return_to: str) -> str:
    separator = "&" if "?" in login_page else "?"
    return f"{login_page}{separator}returnTo={quote(safe_return_to(return_to), safe='')}"
