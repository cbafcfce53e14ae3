"""What a route adds to a call to its API, whichever way the call goes (HTTP or WebSocket): its
credentials by token rule, the renewal after the API's 401, and its claim and forwarded headers.

The proxied HTTP call (``proxied_call``) and the WebSocket handshake (``live_socket``) both ask
``route_token`` and renew through ``renewed_token``: one rule for both ways.
"""

from __future__ import annotations

from starlette.types import Scope

from .errors import SessionExpired
from .gateway import Gateway, RequestSession
from .routes import ApiRoute, client_address, forwarded_headers


async def route_token(gateway: Gateway, api_route: ApiRoute, tracked: RequestSession | None) -> str | None:
    """The route's credential: the session's fresh token (its token for the route's API, when the
    route names one) on ``user`` and ``user-or-none`` routes with a session, the route's client token
    on ``client`` routes, else none."""
    if tracked is not None and api_route.user_token:
        if api_route.api_target is None:
            return (await gateway.fresh(tracked)).access_token
        return await gateway.token_for(tracked, api_route.api_target)
    return await gateway.client_token(api_route) if api_route.rule == "client" else None


async def renewed_token(
    gateway: Gateway, api_route: ApiRoute, tracked: RequestSession | None, rejected: str
) -> str:
    """After the API refused ``rejected`` with 401: the user's token after one forced refresh (its
    token for the route's API, when the route names one), or (``client`` routes) the route's next
    client token."""
    if api_route.rule == "client":
        return await gateway.client_token(api_route, rejected=rejected)
    if tracked is None:  # never: only a session's call carries a user token
        raise SessionExpired()
    if api_route.api_target is not None:
        return await gateway.renew_token_for(tracked, api_route.api_target, rejected)
    session = await gateway.force_refresh(tracked, rejected_access_token=rejected)
    return session.access_token or ""


def without_claim_headers(gateway: Gateway, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The browser's headers without any named like a route's claim header: only the gateway sets
    those, on every route (a browser's ``X-User-Id`` never reaches any API)."""
    names = gateway.routes.claim_header_names
    if not names:
        return headers
    return [(name, value) for name, value in headers if name.lower() not in names]


def route_headers(
    gateway: Gateway, api_route: ApiRoute, tracked: RequestSession | None, scope: Scope
) -> list[tuple[str, str]]:
    """The headers the route adds: user claims (with a session) and the client's address (opt-in)."""
    headers: list[tuple[str, str]] = []
    if api_route.claim_headers and tracked is not None:
        headers += api_route.claim_values(tracked.current.user, gateway.settings.user_claims)
    if api_route.forward_client_address:
        address = client_address(scope, gateway.settings.trusted_proxies)
        if address is not None:
            headers += forwarded_headers(address)
    return headers
