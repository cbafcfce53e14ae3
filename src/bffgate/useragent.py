"""A user agent's summary for session administration: "Firefox 133 on Linux", never the raw header.

An operator deciding whether a session is the user's own needs the browser and the system, not the
header itself, which is long, fingerprintable and written by the client (anything may be in it). So
only known names and a major version are kept, from a bounded pattern: the summary is short and
holds nothing the client could smuggle in.
"""

from __future__ import annotations

import re

# (pattern, name): the first match names the browser. Order matters: Edge and Opera say "Chrome" too,
# Chrome says "Safari".
BROWSERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bEdg(?:e|A|iOS)?/(\d{1,4})"), "Edge"),
    (re.compile(r"\b(?:OPR|Opera)/(\d{1,4})"), "Opera"),
    (re.compile(r"\bSamsungBrowser/(\d{1,4})"), "Samsung Internet"),
    (re.compile(r"\b(?:HeadlessChrome|Chrome|CriOS|Chromium)/(\d{1,4})"), "Chrome"),
    (re.compile(r"\b(?:Firefox|FxiOS)/(\d{1,4})"), "Firefox"),
    (re.compile(r"\bVersion/(\d{1,4})[.\d]* (?:Mobile/\S+ )?Safari/"), "Safari"),
)
SYSTEMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:iPhone|iPad|iPod)\b"), "iOS"),
    (re.compile(r"\bAndroid\b"), "Android"),
    (re.compile(r"\bCrOS\b"), "ChromeOS"),
    (re.compile(r"\bWindows\b"), "Windows"),
    (re.compile(r"\b(?:Macintosh|Mac OS X)\b"), "macOS"),
    (re.compile(r"\bLinux\b"), "Linux"),
)
# Anything else (curl, an app's HTTP client): its first product token, name and major version.
PRODUCT = re.compile(r"([A-Za-z][A-Za-z0-9._-]{0,31})(?:/(\d{1,4}))?")


def summarize(user_agent: str | None) -> str:
    """``Firefox 133 on Linux``, ``Safari 17 on iOS``, ``curl 8``, or ``unknown``."""
    if not user_agent:
        return "unknown"
    head = user_agent[:512]  # a summary never needs more; bounds the regex work on hostile input
    browser = next((f"{name} {m[1]}" for pattern, name in BROWSERS if (m := pattern.search(head))), None)
    system = next((name for pattern, name in SYSTEMS if pattern.search(head)), None)
    if browser is None:
        product = PRODUCT.match(head)
        if product is None:
            return "unknown"
        browser = f"{product[1]} {product[2]}" if product[2] else product[1]
    return f"{browser} on {system}" if system else browser
