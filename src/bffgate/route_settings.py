"""The route table's settings: which local path prefix goes to which API, with which token rule.

A leaf module of ``config.py``: the pydantic model of one route (``ROUTES`` / ``BFF_ROUTES`` as a JSON
list, or ``[[routes]]`` tables of a config file) and the checks that need the whole configuration
(``route_problems``), each naming the route's key path and the fix. The running table is
``routes.py``.

Why prefixes must not overlap (with each other or with the gateway's own paths): a request is routed
by a dict lookup per prefix depth (``routes.RouteTable``), so exactly one route can match, and no
route can ever shadow ``/api/auth/…``, the default proxy route or customfetch.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .api_target import ApiTarget
from .header_filter import HOP_BY_HOP, is_dropped_request_header

TokenRule = Literal["user", "user-or-none", "client", "none"]
USER_TOKEN_RULES = frozenset({"user", "user-or-none"})

# The gateway's own paths: a route prefix may neither contain one nor sit inside one.
RESERVED_PREFIXES = ("/api/auth/", "/api/rest/")
RESERVED_PATHS = ("/healthz", "/readyz", "/metrics", "/bffgate.js", "/bffgate.d.ts")
# Segments of unreserved and sub-delim characters only: what routing compares is what the browser sent.
_PREFIX = re.compile(r"(/[A-Za-z0-9\-._~!$&'()*+,;=:@]+)+/")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
# Headers the gateway writes itself on a proxied call: a claim header may not take their name.
_OWN_HEADERS = frozenset({"authorization", "cookie", "host", "content-length", "content-type", "x-csrf"})
CLIENT_OPTIONS = ("client_token_url", "client_id", "client_secret", "scopes")
API_TOKEN_OPTIONS = ("scopes",)  # also taken by user routes: the scopes of their per-API token


class RouteSettings(BaseModel):
    """One route: ``prefix`` (a local path such as ``/api/billing/``) → ``upstream`` with ``token``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str
    upstream: str
    token: TokenRule
    # token = "client" only: the client-credentials grant (defaults: the OIDC token endpoint and client).
    client_token_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scopes: str | None = None  # space-separated, as the grant's `scope` parameter
    # token = user / user-or-none: the API's own token (api_tokens.py), RFC 8707 resource indicator.
    resource: str | None = None
    forward_client_address: bool = False  # X-Forwarded-For / Forwarded (needs BFF_TRUSTED_PROXIES)
    claim_headers: dict[str, str] = Field(default_factory=dict)  # header name -> user claim
    # Seconds a streamed answer of this route may stay silent (None: BFF_STREAM_IDLE_TIMEOUT).
    stream_idle_timeout: float | None = Field(default=None, gt=0)

    def api_target(self) -> ApiTarget | None:
        """The API whose own token a user route sends (``resource``/``scopes``), or None: the
        session's token."""
        if self.token not in USER_TOKEN_RULES or (self.resource is None and self.scopes is None):
            return None
        return ApiTarget(self.resource, self.scopes)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.fullmatch(value):
            raise ValueError(
                f"must be a path that starts and ends with / such as /api/billing/, got {value!r} "
                "(letters, digits and -._~ only, no empty segments)"
            )
        if any(segment in (".", "..") for segment in value.split("/")):
            raise ValueError(f"must not contain . or .. segments, got {value!r}")
        for reserved in RESERVED_PREFIXES:
            if value.startswith(reserved) or reserved.startswith(value):
                raise ValueError(
                    f"{value!r} overlaps the gateway's own {reserved} paths; choose another prefix"
                )
        for path in RESERVED_PATHS:
            if path.startswith(value):
                raise ValueError(f"{value!r} would cover the gateway's {path}; choose a longer prefix")
        return value

    @field_validator("upstream", "client_token_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        from .config import _http_url  # config imports this module: resolved at validation time

        if value is None:
            return None
        return _http_url(value).rstrip("/")  # a base that paths are appended to, as REMOTE_API

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if not parts.scheme or not (parts.netloc or parts.scheme == "urn") or "#" in value:
            raise ValueError(
                f"must be an absolute URI without a fragment (RFC 8707), such as "
                f"https://billing.example.com/, got {value!r}"
            )
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: str | None) -> str | None:
        return " ".join(value.split()) or None if value is not None else None

    @field_validator("claim_headers")
    @classmethod
    def _claim_headers(cls, value: dict[str, str]) -> dict[str, str]:
        lowered: set[str] = set()
        for name, claim in value.items():
            lower = name.lower()
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name")
            if lower in _OWN_HEADERS or lower in HOP_BY_HOP or is_dropped_request_header(lower.encode()):
                raise ValueError(
                    f"{name!r} is a header the gateway sets or drops itself; use a name of your own "
                    "such as X-User-Id"
                )
            if lower in lowered:
                raise ValueError(f"{name!r} is given twice (header names ignore case)")
            if not isinstance(claim, str) or not claim:
                raise ValueError(f"{name!r} must name a user claim such as sub")
            lowered.add(lower)
        return value


def route_problems(
    routes: Sequence[RouteSettings],
    *,
    provider: str,
    user_claims: frozenset[str],
    oidc_client_id: str | None,
    oidc_client_secret: SecretStr | None,
    trusted_proxies: str | None,
) -> list[str]:
    """What cannot work in the table as a whole, one line per problem: ``routes[i].key: problem; fix``."""
    problems: list[str] = []
    for index, route in enumerate(routes):
        at = f"ROUTES[{index}]"
        problems += _overlaps(at, route, routes[:index])
        if route.token == "client":
            if route.client_token_url is None and provider != "oidc":
                problems.append(
                    f"{at}.client_token_url: is required for token = client with BFF_PROVIDER=rest; "
                    "set it to your authorization server's token endpoint"
                )
            if route.client_id is None and not oidc_client_id:
                problems.append(f"{at}.client_id: is required for token = client; set the client's id")
            if route.client_id is not None and route.client_secret is None:
                problems.append(
                    f"{at}.client_secret: is required with {at}.client_id; set the secret of that client"
                )
            elif route.client_secret is None and oidc_client_secret is None:
                problems.append(
                    f"{at}.client_secret: is required for token = client (a confidential client); "
                    "set it, or OIDC_CLIENT_SECRET"
                )
        else:
            allowed = API_TOKEN_OPTIONS if route.token in USER_TOKEN_RULES else ()
            given = [n for n in CLIENT_OPTIONS if getattr(route, n) is not None and n not in allowed]
            if given:
                problems.append(
                    f"{at}.{given[0]}: is only used with token = client; remove it or set token = client"
                )
        problems += _api_token_problems(at, route, provider)
        for header, claim in route.claim_headers.items():
            if claim not in user_claims:
                problems.append(
                    f"{at}.claim_headers.{header}: the claim {claim!r} is not in the allow-listed user "
                    "claims; add it to BFF_USER_CLAIMS or name another claim"
                )
        if route.forward_client_address and trusted_proxies is None:
            problems.append(
                f"{at}.forward_client_address: needs BFF_TRUSTED_PROXIES; set it to the CIDRs of the "
                "proxies in front of bffgate (e.g. 10.0.0.0/8), or to none when browsers connect directly"
            )
    return problems


def _api_token_problems(at: str, route: RouteSettings, provider: str) -> list[str]:
    """``resource`` (and ``scopes`` on a user route) ask for a per-API token: OpenID Connect only."""
    if route.resource is not None and route.token not in USER_TOKEN_RULES:
        return [
            f"{at}.resource: is only used with token = user or user-or-none (the user's token for that "
            "API); remove it or change the token rule"
        ]
    if route.api_target() is not None and provider != "oidc":
        key = "resource" if route.resource is not None else "scopes"
        return [
            f"{at}.{key}: a per-API token needs BFF_PROVIDER=oidc (the refresh-token grant with "
            "resource/scope); remove it or use an OpenID Connect provider"
        ]
    return []


def _overlaps(at: str, route: RouteSettings, before: Iterable[RouteSettings]) -> list[str]:
    return [
        f"{at}.prefix: {route.prefix!r} overlaps the route {other.prefix!r}; "
        "prefixes must not contain one another"
        for other in before
        if route.prefix.startswith(other.prefix) or other.prefix.startswith(route.prefix)
    ]


def parse_trusted_proxies(value: Any) -> str | None:
    """``BFF_TRUSTED_PROXIES``: comma-separated CIDRs (or a list of them, from a config file), or none.

    Returned normalized as a comma-separated string (``none`` for an empty list); ``ValueError``
    naming the entry that is not an address or network.
    """
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    networks = [str(item).strip() for item in items if str(item).strip()]
    if networks == ["none"]:
        return "none"
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(
                f"{network!r} is not an IP address or CIDR network; use e.g. 10.0.0.0/8,192.168.1.5"
            ) from None
    return ",".join(networks) or "none"


def key_path(location: Sequence[Any]) -> str:
    """``ROUTES[2].claim_headers.X-User-Id`` for pydantic's ``("routes", 2, "claim_headers", ...)``."""
    path = str(location[0]).upper()
    for part in location[1:]:
        path += f"[{part}]" if isinstance(part, int) or str(part).isdigit() else f".{part}"
    return path
