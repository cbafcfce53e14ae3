"""Forward-auth decisions by the route of the original URI, through ``ProxiedCall`` with the in-memory
fakes: which token the front proxy is handed (the user's, the route's client token, or none at all),
the CSRF rule on every route, and how long the "yes" may be cached."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, cast

import aiohttp
import pytest
from starlette.types import Message

from bffgate.client_tokens import ClientGrant, ClientToken, ClientTokens
from bffgate.config import Settings
from bffgate.errors import InvalidRequest
from bffgate.forward_auth import ForwardAuth, route_path
from bffgate.gateway import Gateway
from bffgate.proxied_call import ProxiedCall
from bffgate.runtime import Runtime
from bffgate.sealing import Sealer

from ..harness import settings_for
from .fakes import MemoryStore, RotatingProvider, session_of
from .memory_transport import MemoryTransport
from .test_proxied_call import not_proxied, ok, problem_answer

API = "http://api.invalid/v1"
ROUTES: list[dict[str, Any]] = [
    {"prefix": "/api/mine/", "upstream": "http://mine.invalid", "token": "user"},
    {"prefix": "/api/open/", "upstream": "http://open.invalid", "token": "user-or-none"},
    {"prefix": "/api/pub/", "upstream": "http://pub.invalid", "token": "none"},
    {
        "prefix": "/api/svc/",
        "upstream": "http://svc.invalid",
        "token": "client",
        "client_token_url": "http://idp.invalid/token",
        "client_id": "svc",
        "client_secret": "svc-secret",
    },
]
CLIENT_LIFETIME = 100.0  # refresh point: min(skew, a quarter of it) before expiry


class SessionStore(MemoryStore):
    """``MemoryStore`` whose browser has session cookies exactly when it has a session."""

    def has_cookies(self, cookies: Mapping[str, str]) -> bool:
        return self.session is not None


class GrantedTokens(ClientTokens):
    """``ClientTokens`` (its caching and single flight) with grants answered in memory."""

    async def _fetch(self) -> ClientToken:
        self.grants += 1
        now = time.time()
        return ClientToken(f"client-{self.grants}", now, now + CLIENT_LIFETIME)


class Stub:
    """What ``ForwardAuth`` asks of the runtime: the settings and the gateway."""

    def __init__(self, settings: Settings, gateway: Gateway) -> None:
        self.settings = settings
        self._gateway = gateway

    async def gateway(self) -> Gateway:
        return self._gateway


def gateway_for(signed_in: bool, **overrides: Any) -> tuple[Gateway, GrantedTokens]:
    settings = settings_for(API, routes=ROUTES, bff_forward_auth_cache_seconds=3600, **overrides)
    grant = ClientGrant("/api/svc/", _no_url, "svc", "svc-secret", None, "client_secret_basic")
    tokens = GrantedTokens(
        grant,
        cast(aiohttp.ClientSession, None),
        skew=settings.bff_refresh_skew,
        timeout=5,
        sealer=Sealer(settings.access_secrets, "client-token"),
    )
    store = SessionStore(session_of(expires_in=600) if signed_in else None)
    gateway = Gateway(
        settings, store, RotatingProvider(), MemoryTransport(ok), client_tokens={"/api/svc/": tokens}
    )
    return gateway, tokens


async def _no_url() -> str:
    raise AssertionError("no grant leaves memory")


async def decide(
    gateway: Gateway, method: str, uri: str, *, csrf: bool = True, cookie: bool = True
) -> tuple[int, dict[bytes, bytes]]:
    """The front proxy's subrequest for ``method uri``: its status and head."""
    headers = [(b"x-original-method", method.encode()), (b"x-original-uri", uri.encode())]
    headers += [(b"x-csrf", b"1")] if csrf else []
    headers += [(b"cookie", b"session=s")] if cookie else []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/auth/forward",
        "root_path": "",
        "headers": headers,
    }
    sent: list[Message] = []

    async def current() -> Gateway:
        return gateway

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    forward = ForwardAuth(cast(Runtime, Stub(gateway.settings, gateway)))
    proxied = ProxiedCall(not_proxied, gateway=current, on_error=problem_answer, decide=forward.decide)
    await proxied(scope, receive, send)
    head = dict(sent[0]["headers"])
    if sent[0]["status"] >= 400:
        head[b"code"] = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["code"].encode()
    return sent[0]["status"], head


def max_age(head: dict[bytes, bytes]) -> int:
    return int(head[b"x-accel-expires"])


@pytest.mark.parametrize("uri", ["/api/mine/x", "/api/echo/x?q=1", "/elsewhere"])
async def test_user_routes_and_paths_outside_every_route_need_a_session_as_without_routes(uri: str) -> None:
    gateway, _ = gateway_for(signed_in=True)
    status, head = await decide(gateway, "GET", uri)
    assert (status, head[b"authorization"]) == (200, b"Bearer at0")
    gateway, _ = gateway_for(signed_in=False)
    status, head = await decide(gateway, "GET", uri)
    assert (status, head[b"code"]) == (401, b"unauthenticated")


async def test_user_or_none_hands_over_the_users_token_with_a_session_and_none_without() -> None:
    gateway, _ = gateway_for(signed_in=True)
    status, head = await decide(gateway, "GET", "/api/open/x")
    assert (status, head[b"authorization"]) == (200, b"Bearer at0")
    gateway, _ = gateway_for(signed_in=False)
    status, head = await decide(gateway, "GET", "/api/open/x", cookie=False)
    assert status == 200
    assert b"authorization" not in head, "no Authorization header at all: the proxy sends none"
    assert 0 < max_age(head) <= gateway.settings.bff_forward_auth_cache_seconds


async def test_user_or_none_refreshes_a_token_due_and_the_rotated_cookies_are_not_cacheable() -> None:
    gateway, _ = gateway_for(signed_in=True)
    cast(SessionStore, gateway.store).session = session_of(expires_in=1)
    status, head = await decide(gateway, "GET", "/api/open/x")
    assert (status, head[b"authorization"], head[b"set-cookie"]) == (200, b"Bearer at1", b"token=at1")
    assert head[b"cache-control"] == b"no-store"


async def test_a_none_route_never_hands_over_the_users_token() -> None:
    for signed_in in (True, False):
        gateway, tokens = gateway_for(signed_in=signed_in)
        for method in ("GET", "POST"):
            status, head = await decide(gateway, method, "/api/pub/x")
            assert status == 200
            assert b"authorization" not in head and b"set-cookie" not in head
        assert tokens.grants == 0


async def test_a_client_route_hands_over_the_client_token_whatever_the_session() -> None:
    for signed_in in (True, False):
        gateway, tokens = gateway_for(signed_in=signed_in)
        for _ in range(3):
            status, head = await decide(gateway, "GET", "/api/svc/x")
            assert (status, head[b"authorization"]) == (200, b"Bearer client-1")
        assert tokens.grants == 1, "one grant, reused"


async def test_a_client_decision_is_never_cached_past_the_client_tokens_refresh_point() -> None:
    gateway, _ = gateway_for(signed_in=False, bff_refresh_skew=10)
    status, head = await decide(gateway, "GET", "/api/svc/x", cookie=False)
    assert status == 200
    assert max_age(head) <= CLIENT_LIFETIME - 10, "refreshed 10 s before expiry: cached no longer"
    assert max_age(head) > 0


@pytest.mark.parametrize("uri", ["/api/open/x", "/api/pub/x", "/api/svc/x", "/api/mine/x", "/api/echo/x"])
@pytest.mark.parametrize("signed_in", [True, False])
async def test_state_changing_methods_need_the_csrf_proof_on_every_route(uri: str, signed_in: bool) -> None:
    gateway, tokens = gateway_for(signed_in=signed_in)
    status, head = await decide(gateway, "POST", uri, csrf=False)
    needs_session = uri in ("/api/mine/x", "/api/echo/x")
    # Without a session a route that needs one says so first, as without routes.
    expected = (401, b"unauthenticated") if needs_session and not signed_in else (403, b"csrf_failed")
    assert (status, head[b"code"]) == expected
    assert tokens.grants == 0
    status, _ = await decide(gateway, "GET", uri, csrf=False)
    assert status == (200 if signed_in or uri not in ("/api/mine/x", "/api/echo/x") else 401)


@pytest.mark.parametrize(
    "uri", ["/api/pub/../mine/x", "/api/pub/%2e%2E/mine/x", "/api//pub/x", "/api/pub/./x", "/api/pub/.."]
)
async def test_a_path_the_proxy_would_normalize_into_another_route_is_refused(uri: str) -> None:
    gateway, _ = gateway_for(signed_in=True)
    status, head = await decide(gateway, "GET", uri)
    assert (status, head[b"code"]) == (400, b"invalid_request")


def test_route_path_is_the_decoded_path_without_the_query() -> None:
    assert route_path("/api/%70ub/x%20y?a=/../b#f") == "/api/pub/x y"
    assert route_path("/api/pub/") == "/api/pub/"
    with pytest.raises(InvalidRequest):
        route_path("api/pub/x")
