"""What a shared cache in front of the gateway may keep of an answer to a session-authenticated call.

The API sees ``Authorization: Bearer …`` and may rightly call a per-user answer cacheable; a CDN or
proxy in front of the gateway sees only a cookie, and no ``Authorization`` header that would stop it
from storing the answer (RFC 9111 3.5). So unless the API said ``public`` (an answer that is the same
for everyone), the browser gets the API's ``Cache-Control`` with ``private`` added (and the
shared-cache-only ``s-maxage`` removed): the browser's own cache keeps working, shared caches store
nothing. ``no-store`` and a bare ``private`` are already safe and pass unchanged. Answers that set
cookies are ``no-store`` (``header_filter.browser_response_headers``).
"""

from __future__ import annotations

PRIVATE = b"private"


def _directive_names(value: bytes) -> set[bytes]:
    """The directive names of a Cache-Control value, lower case (``private="x"`` counts as ``private=``)."""
    names = set()
    for directive in value.split(b","):
        name, equals, _ = directive.strip().partition(b"=")
        names.add(name.strip().lower() + equals)
    return names


def for_shared_caches(values: list[bytes]) -> bytes:
    """The Cache-Control value to send for the API's ``values`` (all its Cache-Control headers)."""
    if not values:
        return PRIVATE
    value = b", ".join(values)
    names = _directive_names(value)
    if names & {b"public", b"no-store", b"private"}:
        return value
    if b'"' not in value:  # unquoted: s-maxage can be dropped safely (it only speaks to shared caches)
        kept = [d.strip() for d in value.split(b",") if not d.strip().lower().startswith(b"s-maxage")]
        value = b", ".join(d for d in kept if d)
    return PRIVATE + b", " + value if value.strip() else PRIVATE
