"""Page navigations versus fetch/XHR calls, and safe ``returnTo`` targets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

# A local path: one leading slash, then no slash or backslash right after it, no scheme, no control
# characters or whitespace anywhere (browsers strip some of them and could read "/\t/evil" as "//evil").
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\\\x00-\x20\x7f]*")


def is_navigation(headers: Mapping[str, str]) -> bool:
    """True for a top-level page load, which should be redirected rather than answered with JSON."""
    if headers.get("sec-fetch-mode") == "navigate":
        return True
    return "text/html" in headers.get("accept", "")


def safe_return_to(value: str | None) -> str:
    """``value`` when it is a same-origin path (``/x``), else ``/``."""
    if value and _LOCAL_PATH.fullmatch(value):
        return value
    return "/"


def login_redirect_location(login_page: str, return_to: str) -> str:
    separator = "&" if "?" in login_page else "?"
    return f"{login_page}{separator}returnTo={quote(safe_return_to(return_to), safe='')}"
