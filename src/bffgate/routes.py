"""The route table: which API a proxied path goes to, with which token rule and which extra headers.

``/api/rest/proxy/…`` → ``REMOTE_API`` with the rule ``user`` is the default route (``default_route``),
routed by a prefix test before anything else, so its cost does not depend on the table. The other
routes (``ROUTES``) are found by ``RouteTable.match``: one dict lookup per distinct prefix depth
(prefixes never overlap, ``route_settings``), whatever the number of routes.

Each route has its own URL containment (``api_url.ApiUrls`` on its ``upstream``: nothing escapes
that base URL) and the headers it adds on top of the browser's filtered ones:

* ``claim_headers``: user claims of the session as headers (``X-User-Id: <sub>``). Whatever the route,
  a browser's header of any configured claim-header name is dropped (``RouteTable.claim_header_names``);
* ``forward_client_address``: ``X-Forwarded-For`` and ``Forwarded`` naming the client's address as
  ``client_address`` finds it: the socket's peer, or, when that peer is one of ``BFF_TRUSTED_PROXIES``,
  the nearest address of its ``X-Forwarded-For`` that is not a trusted proxy. An untrusted hop's
  word is never taken.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from .api_url import ApiUrls
from .config import Settings
from .route_settings import USER_TOKEN_RULES, RouteSettings, TokenRule
from .tokens import visible_claims

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PREFIX = "/api/rest/proxy/"
# Claim values travel as header values: printable ASCII passes as is, anything else (and %) is
# percent-encoded UTF-8 (RFC 3986), so a name such as "Zoë" can neither break nor smuggle a header.
_CLAIM_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a base URL: connections are pooled per origin."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def pool_key(url: str, stream_idle_timeout: float | None = None) -> str:
    """The connection pool a route's calls take: one per origin, and one more per origin and
    ``stream_idle_timeout`` for routes with an idle limit of their own (the pool applies it)."""
    origin = origin_of(url)
    return origin if stream_idle_timeout is None else f"{origin} idle={stream_idle_timeout:g}"


class ApiRoute:
    """One route as the proxied call uses it (built once, read on every request)."""

    __slots__ = (
        "api_target",
        "claim_headers",
        "forward_client_address",
        "origin",
        "pool",
        "prefix",
        "rule",
        "settings",
        "urls",
        "user_token",
    )

    def __init__(
        self,
        prefix: str,
        urls: ApiUrls,
        rule: TokenRule,
        settings: RouteSettings | None = None,
    ) -> None:
        self.prefix = prefix
        self.urls = urls
        self.rule = rule
        self.user_token = rule in USER_TOKEN_RULES
        self.origin = origin_of(urls.base)
        self.pool = pool_key(urls.base, settings.stream_idle_timeout if settings else None)
        self.settings = settings
        self.forward_client_address = settings.forward_client_address if settings else False
        self.claim_headers = tuple(settings.claim_headers.items()) if settings else ()
        # A user route that names its API sends that API's own token (api_tokens.py), never the session's.
        self.api_target = settings.api_target() if settings else None

    def __repr__(self) -> str:
        return f"ApiRoute({self.prefix!r} -> {self.urls.base!r}, token={self.rule!r})"

    def claim_values(self, user: Mapping[str, Any], allowed: frozenset[str]) -> list[tuple[str, str]]:
        """The claim headers for the session's user (a claim it does not have: no header)."""
        claims = visible_claims(dict(user), allowed)
        headers = []
        for name, claim in self.claim_headers:
            value = claims.get(claim)
            if value is not None and value != "":
                headers.append((name, header_value(value)))
        return headers


def header_value(value: Any) -> str:
    """A claim as a header value: lists comma-joined, booleans lower-case, non-ASCII percent-encoded."""
    if isinstance(value, list | tuple):
        return ",".join(header_value(item) for item in value)
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return quote(text, safe=_CLAIM_SAFE)


class RouteTable:
    """The configured routes by prefix; ``match`` costs one dict lookup per distinct prefix depth."""

    def __init__(self, routes: Sequence[ApiRoute]) -> None:
        self.routes = tuple(routes)
        self._by_prefix = {route.prefix: route for route in routes}
        # "/api/billing/" has depth 3: path.split("/", 3)[:3] rebuilds it from "/api/billing/x".
        self._depths = tuple(sorted({route.prefix.count("/") for route in routes}))
        self.claim_header_names = frozenset(
            name.lower() for route in routes for name, _ in route.claim_headers
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RouteTable:
        return cls([ApiRoute(s.prefix, ApiUrls(s.upstream), s.token, s) for s in settings.routes])

    def __bool__(self) -> bool:
        return bool(self.routes)

    def match(self, path: str) -> ApiRoute | None:
        """The route whose prefix ``path`` starts with, if any (prefixes never overlap)."""
        for depth in self._depths:
            parts = path.split("/", depth)
            if len(parts) > depth:
                route = self._by_prefix.get("/".join(parts[:depth]) + "/")
                if route is not None:
                    return route
        return None


def client_address(scope: Mapping[str, Any], trusted: Sequence[Network]) -> str | None:
    """The browser's address: the socket's peer, or what trusted proxies in front of it say.

    ``X-Forwarded-For`` is read right to left (each proxy appends the peer it saw) only while the hop
    that wrote an entry is trusted; the first address that is not a trusted proxy is the client.
    An entry that is not an address ends the walk with no answer (a trusted proxy would not write it).
    """
    peer = scope.get("client")
    if not peer:
        return None
    address = _ip(str(peer[0]))
    if address is None:
        return None
    if not _trusted(address, trusted):
        return str(address)
    for hop in reversed(_forwarded_for(scope["headers"])):
        address = _ip(hop)
        if address is None:
            return None
        if not _trusted(address, trusted):
            break
    return str(address)


def forwarded_headers(address: str) -> list[tuple[str, str]]:
    """``X-Forwarded-For`` and RFC 7239 ``Forwarded`` naming ``address`` (and nothing else)."""
    node = f'"[{address}]"' if ":" in address else address
    return [("X-Forwarded-For", address), ("Forwarded", f"for={node}")]


def _forwarded_for(raw_headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    hops: list[str] = []
    for name, value in raw_headers:
        if name == b"x-forwarded-for":
            hops += [hop.strip() for hop in value.decode("latin-1").split(",")]
    return hops


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)
