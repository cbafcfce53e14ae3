"""OpenID Connect back-channel logout: the provider ends gateway sessions server to server.

Two halves. Against the real oidc-provider, a user who logs out *at the provider* (its end-session
endpoint, with the browser's provider cookies) loses the gateway session: the provider posts a logout
token to ``/api/auth/backchannel-logout``. Against a local provider (discovery and JWKS served here,
tokens signed here), every way a logout token can be wrong is refused with 400 and ends nothing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bffgate import create_app
from bffgate.cookies import CookieJar
from bffgate.live_sockets import SESSION_ENDED
from bffgate.providers.logout_token import BACKCHANNEL_LOGOUT_EVENT, MAX_AGE, REPLAY_WINDOW
from bffgate.session import Session, new_session_id
from bffgate.stores.redis import RedisSessionStore, provider_key, user_key

from ..conftest import StackFactory
from ..harness import Answer, Browser, bind_loopback, serve, settings_for
from ..processes import RedisProcess, redis_process
from ..test_live_sockets import closed_with, open_socket
from ..upstream import Recorder, create_socket_api
from .conftest import OidcStack, OidcStackFactory

PATH = "/api/auth/backchannel-logout"
CLIENT = "bffgate-local-client"
EVENTS: dict[str, dict[str, Any]] = {BACKCHANNEL_LOGOUT_EVENT: {}}
REDIS_DB = 5  # the shared Redis (random keys): the WebSocket test; the others start their own Redis


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisProcess]:
    async with redis_process() as server:
        yield server


@pytest.fixture
async def redis_client(redis_server: RedisProcess) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def post_logout_token(http: aiohttp.ClientSession, gateway_url: str, token: str) -> Answer:
    """The provider's call: form-encoded, no cookie, no X-CSRF."""
    return await Browser(http, gateway_url).request("POST", PATH, csrf=False, data={"logout_token": token})


async def stored_keys(client: redis.Redis, pattern: str) -> list[bytes]:
    """The Redis keys matching ``pattern``, sorted (the client answers bytes)."""
    return sorted(key for key in await client.keys(pattern) if isinstance(key, bytes))


async def provider_index_keys(client: redis.Redis) -> list[bytes]:
    return await stored_keys(client, "bffgate:oidc-s*")


# -- against the real provider ------------------------------------------------------------------------


def backchannel_client(*, session_required: bool) -> Callable[[str], dict[str, Any]]:
    """Client metadata registering the gateway's back-channel logout URI at the provider."""

    def metadata(gateway_url: str) -> dict[str, Any]:
        return {
            "backchannel_logout_uri": f"{gateway_url}{PATH}",
            "backchannel_logout_session_required": session_required,
        }

    return metadata


@contextlib.asynccontextmanager
async def redis_oidc_stack(
    make_oidc_stack: OidcStackFactory, redis_server: RedisProcess, *, session_required: bool
) -> AsyncIterator[OidcStack]:
    async with make_oidc_stack(
        client_metadata=backchannel_client(session_required=session_required),
        bff_session_store="redis",
        redis_url=redis_server.url,
    ) as stack:
        yield stack


async def sign_in(oidc: OidcStack, login: str) -> Browser:
    """A browser signed in to the gateway, with its own session at the provider (``oidc.users[-1]``)."""
    browser = oidc.browser()
    await oidc.login(browser, login=login)
    answer = await browser.request("GET", "/api/auth/user")
    assert answer.status == 200, answer.body
    assert answer.json()["user"]["sub"] == login  # the user data carries the provider's subject
    return browser


async def log_out_at_provider(oidc: OidcStack, user_index: int) -> None:
    """The user of ``oidc.users[user_index]`` confirms logout on the provider's end-session page."""
    end_session = await oidc.provider.end_session_endpoint()
    await oidc.users[user_index].confirm_logout(f"{end_session}?client_id={oidc.client.client_id}")


async def assert_signed_out(browser: Browser) -> None:
    answer = await browser.request("GET", "/api/auth/user")
    assert (answer.status, answer.code) == (401, "unauthenticated")


async def test_logout_at_the_provider_ends_that_browsers_gateway_session(
    make_oidc_stack: OidcStackFactory, redis_server: RedisProcess, redis_client: redis.Redis
) -> None:
    """With sid in the logout token, only the gateway session of the provider session that ended goes."""
    async with redis_oidc_stack(make_oidc_stack, redis_server, session_required=True) as oidc:
        laptop = await sign_in(oidc, "alice")
        phone = await sign_in(oidc, "alice")  # another provider session of the same user
        index = await provider_index_keys(redis_client)
        assert len([key for key in index if key.startswith(b"bffgate:oidc-sid:")]) == 2
        [sid_key, *_] = [key for key in index if key.startswith(b"bffgate:oidc-sid:")]
        assert 0 < await redis_client.pttl(sid_key) <= oidc.settings.bff_session_idle * 1000

        await log_out_at_provider(oidc, 0)

        stats = await oidc.provider.stats(oidc.client.client_id)
        assert (stats.get("backchannel_ok"), stats.get("backchannel_error")) == (1, None)
        await assert_signed_out(laptop)
        assert (await phone.request("GET", "/api/auth/user")).status == 200
        left = await provider_index_keys(redis_client)
        assert len([key for key in left if key.startswith(b"bffgate:oidc-sid:")]) == 1
        assert len(await redis_client.keys("bffgate:s:*")) == 1


async def test_logout_token_without_sid_ends_every_session_of_the_user(
    make_oidc_stack: OidcStackFactory, redis_server: RedisProcess, redis_client: redis.Redis
) -> None:
    """A client registered without session_required gets sub-only logout tokens: all the user's sessions end."""
    async with redis_oidc_stack(make_oidc_stack, redis_server, session_required=False) as oidc:
        laptop = await sign_in(oidc, "alice")
        phone = await sign_in(oidc, "alice")
        bob = await sign_in(oidc, "bob")
        assert not await redis_client.keys("bffgate:oidc-sid:*")  # the ID tokens carry no sid

        await log_out_at_provider(oidc, 0)

        stats = await oidc.provider.stats(oidc.client.client_id)
        assert (stats.get("backchannel_ok"), stats.get("backchannel_error")) == (1, None)
        await assert_signed_out(laptop)
        await assert_signed_out(phone)
        assert (await bob.request("GET", "/api/auth/user")).status == 200
        assert len(await redis_client.keys("bffgate:oidc-sub:*")) == 1  # bob's


async def test_cookie_store_answers_501(
    make_oidc_stack: OidcStackFactory, http: aiohttp.ClientSession
) -> None:
    """With the cookie store there is nothing server-side to end: 501 backchannel_unsupported, no-store."""
    async with make_oidc_stack() as oidc:
        answer = await post_logout_token(http, oidc.gateway_url, "any.logout.token")
    assert (answer.status, answer.code) == (501, "backchannel_unsupported")
    assert answer.headers["Cache-Control"] == "no-store"


async def test_route_does_not_exist_with_the_rest_provider(make_stack: StackFactory) -> None:
    """With BFF_PROVIDER=rest there is no back-channel logout endpoint (404)."""
    async with make_stack() as stack:
        answer = await post_logout_token(stack.http, stack.gateway_url, "any.logout.token")
    assert (answer.status, answer.code) == (404, "not_found")


# -- against a local provider: tokens signed here ----------------------------------------------------


@dataclass
class Local:
    """A gateway (Redis store) trusting a provider whose keys are here, and sessions made directly."""

    issuer: str
    gateway_url: str
    key: RSAKey
    store: RedisSessionStore
    redis: redis.Redis
    http: aiohttp.ClientSession

    def sign(self, claims: dict[str, Any], *, key: RSAKey | None = None, **header: Any) -> str:
        header = {"alg": "RS256", "kid": self.key.kid, "typ": "logout+jwt", **header}
        return jwt.encode(header, claims, key or self.key)

    def logout_claims(self, **changes: Any) -> dict[str, Any]:
        """A valid logout token's claims for provider session ``p-sid``, with ``changes`` (None removes)."""
        now = int(time.time())
        values: dict[str, Any] = {
            "iss": self.issuer,
            "aud": CLIENT,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
            "sub": "alice",
            "sid": "p-sid",
            "events": EVENTS,
        }
        values.update(changes)
        return {name: value for name, value in values.items() if value is not None}

    async def signed_in(self, *, sid: str | None = "p-sid", sub: str = "alice") -> Browser:
        """A browser holding the ticket of a fresh session whose ID token names ``sid`` and ``sub``."""
        now = time.time()
        id_claims = {"iss": self.issuer, "aud": CLIENT, "sub": sub, "iat": int(now), "exp": int(now) + 3600}
        if sid is not None:
            id_claims["sid"] = sid
        session = Session(
            sid=new_session_id(),
            created_at=now,
            access_token=f"access-{uuid.uuid4().hex}",
            access_expires_at=now + 3600,
            access_issued_at=now,
            refresh_token=f"refresh-{uuid.uuid4().hex}",
            id_token=jwt.encode({"alg": "RS256", "kid": self.key.kid}, id_claims, self.key),
            user={"sub": sub},
        )
        await self.store.save(session)
        browser = Browser(self.http, self.gateway_url)
        browser.absorb(self.store.set_cookies(session, {}))
        assert (await browser.request("GET", "/api/auth/user")).status == 200
        return browser

    async def post(self, token: str) -> Answer:
        return await post_logout_token(self.http, self.gateway_url, token)

    async def stored(self) -> list[bytes]:
        return await stored_keys(self.redis, "bffgate:*")


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def rsa(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, {"kid": kid, "use": "sig"}, private=True)


def local_provider(issuer: str, key: RSAKey) -> Starlette:
    """Discovery and JWKS of a provider whose only signing key is ``key``."""

    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/auth",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [key.as_dict(private=False)]})

    return Starlette(routes=[Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks)])


@contextlib.asynccontextmanager
async def local_stack(
    http: aiohttp.ClientSession, redis_url: str, redis_client: redis.Redis
) -> AsyncIterator[Local]:
    key = rsa("local-1")
    provider_sock, gateway_sock = bind_loopback(), bind_loopback()
    issuer = f"http://127.0.0.1:{provider_sock.getsockname()[1]}"
    gateway_url = f"http://127.0.0.1:{gateway_sock.getsockname()[1]}"
    values: dict[str, Any] = {
        "bff_provider": "oidc",
        "oidc_issuer": issuer,
        "oidc_client_id": CLIENT,
        "bff_public_url": gateway_url,
        "bff_session_store": "redis",
        "redis_url": redis_url,
    }
    settings = settings_for(f"{issuer}/api", **values)
    store = RedisSessionStore(settings, CookieJar(secure=settings.bff_cookie_secure), redis_client)
    async with (
        serve(local_provider(issuer, key), sock=provider_sock, lifespan="off"),
        serve(create_app(settings), sock=gateway_sock),
    ):
        yield Local(issuer, gateway_url, key, store, redis_client, http)


@pytest.fixture
async def local(
    http: aiohttp.ClientSession, redis_server: RedisProcess, redis_client: redis.Redis
) -> AsyncIterator[Local]:
    async with local_stack(http, redis_server.url, redis_client) as running:
        yield running


async def test_valid_token_with_sid_ends_that_provider_sessions_gateway_session(local: Local) -> None:
    """A valid logout token naming a sid: 200 no-store, that session is gone with its index entries."""
    ended = await local.signed_in(sid="p-sid")
    other = await local.signed_in(sid="p-other")  # same user, another provider session
    answer = await local.post(local.sign(local.logout_claims(sid="p-sid")))
    assert answer.status == 200, answer.body
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.json() == {"endedSessions": 1}
    await assert_signed_out(ended)
    assert (await other.request("GET", "/api/auth/user")).status == 200
    assert len(await local.redis.keys("bffgate:s:*")) == 1
    assert len(await local.redis.keys("bffgate:oidc-sid:*")) == 1  # only p-other's is left
    for index in (provider_key("sub", local.issuer, "alice"), user_key({"sub": "alice"})):
        assert len(await local.redis.smembers(index or "")) == 1  # the ended session left both


async def test_sid_and_sub_together_end_only_sessions_of_that_subject(local: Local) -> None:
    """A logout token with a sid and a sub ends the sid's sessions of that subject only."""
    alice = await local.signed_in(sid="p-shared", sub="alice")
    mallory = await local.signed_in(sid="p-shared", sub="mallory")
    answer = await local.post(local.sign(local.logout_claims(sid="p-shared", sub="alice")))
    assert answer.json() == {"endedSessions": 1}
    await assert_signed_out(alice)
    assert (await mallory.request("GET", "/api/auth/user")).status == 200


async def test_valid_token_with_only_sub_ends_every_session_of_the_subject(local: Local) -> None:
    """A logout token with a sub and no sid ends all that subject's sessions, nobody else's."""
    laptop, phone = await local.signed_in(sid="p-1"), await local.signed_in(sid=None)
    bob = await local.signed_in(sid="p-2", sub="bob")
    answer = await local.post(local.sign(local.logout_claims(sid=None, sub="alice")))
    assert (answer.status, answer.json()) == (200, {"endedSessions": 2})
    await assert_signed_out(laptop)
    await assert_signed_out(phone)
    assert (await bob.request("GET", "/api/auth/user")).status == 200


async def test_token_for_no_known_session_is_accepted_and_ends_nothing(local: Local) -> None:
    """A valid token about a provider session the gateway never saw answers 200 and ends nothing."""
    browser = await local.signed_in(sid="p-sid")
    before = await local.stored()
    answer = await local.post(local.sign(local.logout_claims(sid="p-unknown", sub="nobody")))
    assert (answer.status, answer.json()) == (200, {"endedSessions": 0})
    assert (await browser.request("GET", "/api/auth/user")).status == 200
    assert [key for key in await local.stored() if not key.startswith(b"bffgate:oidc-jti:")] == before


FOREIGN_KEY = rsa("local-1")  # the provider's kid, another key: the signature does not verify
UNPUBLISHED = rsa("never-published")


def forged(local: Local) -> dict[str, str]:
    """Logout tokens that must be refused, by what is wrong with them."""
    claims = local.logout_claims
    unsigned = b64(json.dumps({"alg": "none", "typ": "logout+jwt"})) + "." + b64(json.dumps(claims()))
    return {
        "wrong signature": local.sign(claims(), key=FOREIGN_KEY),
        "unknown key": local.sign(claims(), key=UNPUBLISHED, kid=UNPUBLISHED.kid),
        "alg none": f"{unsigned}.",
        "wrong aud": local.sign(claims(aud="another-client")),
        "wrong iss": local.sign(claims(iss="https://evil.example")),
        "no iat": local.sign(claims(iat=None)),
        "iat too old": local.sign(claims(iat=int(time.time()) - MAX_AGE - 600, exp=None)),
        "iat in the future": local.sign(claims(iat=int(time.time()) + 3600)),
        "expired": local.sign(claims(exp=int(time.time()) - 600)),
        "no jti": local.sign(claims(jti=None)),
        "no events": local.sign(claims(events=None)),
        "events without back-channel logout": local.sign(claims(events={"urn:other:event": {}})),
        "nonce present": local.sign(claims(nonce="n-0S6_WzA2Mj")),
        "neither sid nor sub": local.sign(claims(sid=None, sub=None)),
        "wrong typ": local.sign(claims(), typ="at+jwt"),
        "not a JWT": "not-a-jwt",
    }


REFUSALS = [
    ("wrong signature", "signature does not verify"),
    ("unknown key", "key the provider does not publish"),
    ("alg none", "algorithm 'none' is not allowed"),
    ("wrong aud", "'aud'"),
    ("wrong iss", "'iss'"),
    ("no iat", "'iat'"),
    ("iat too old", f"more than {MAX_AGE} seconds ago"),
    ("iat in the future", "'iat'"),
    ("expired", "'exp'"),
    ("no jti", "'jti'"),
    ("no events", "'events'"),
    ("events without back-channel logout", "'events'"),
    ("nonce present", "'nonce'"),
    ("neither sid nor sub", "neither"),
    ("wrong typ", "type 'at+jwt'"),
    ("not a JWT", "not a signed JWT"),
]


@pytest.mark.parametrize(("case", "reason"), REFUSALS)
async def test_invalid_logout_tokens_are_refused_and_end_nothing(
    local: Local, case: str, reason: str
) -> None:
    """Each invalid logout token answers 400 invalid_logout_token naming why; no session or index is touched."""
    browser = await local.signed_in(sid="p-sid", sub="alice")
    before = await local.stored()
    answer = await local.post(forged(local)[case])
    assert (answer.status, answer.code) == (400, "invalid_logout_token"), answer.body
    assert reason in answer.json()["detail"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert await local.stored() == before  # not even a jti is remembered
    assert (await browser.request("GET", "/api/auth/user")).status == 200


async def test_replayed_logout_token_is_refused(local: Local) -> None:
    """A logout token used once cannot end the session the user signs in to afterwards with the same sid."""
    token = local.sign(local.logout_claims(sid="p-sid"))
    first = await local.signed_in(sid="p-sid")
    assert (await local.post(token)).status == 200
    await assert_signed_out(first)
    again = await local.signed_in(sid="p-sid")
    replay = await local.post(token)
    assert (replay.status, replay.code) == (400, "invalid_logout_token")
    assert "used before" in replay.json()["detail"]
    assert (await again.request("GET", "/api/auth/user")).status == 200
    [jti_key] = await local.redis.keys("bffgate:oidc-jti:*")
    assert 0 < await local.redis.pttl(jti_key) <= REPLAY_WINDOW * 1000


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"logout_token": ""}, None),
        ({"token": "x"}, None),
        ('{"logout_token": "x"}', "application/json"),
        ("logout_token=a&logout_token=b", "application/x-www-form-urlencoded"),
    ],
    ids=["empty", "missing", "json", "twice"],
)
async def test_malformed_requests_are_400_invalid_request(
    local: Local, body: Any, content_type: str | None
) -> None:
    """A request without exactly one form-encoded logout_token answers 400 invalid_request and ends nothing."""
    browser = await local.signed_in()
    before = await local.stored()
    headers = {"Content-Type": content_type} if content_type else None
    answer = await Browser(local.http, local.gateway_url).request(
        "POST", PATH, csrf=False, data=body, headers=headers
    )
    assert (answer.status, answer.code) == (400, "invalid_request"), answer.body
    assert await local.stored() == before
    assert (await browser.request("GET", "/api/auth/user")).status == 200


async def test_needs_neither_x_csrf_nor_a_cookie_but_ignores_a_session_cookie(local: Local) -> None:
    """The provider's call works without X-CSRF or cookie; a browser's own cookie does not make it act on that session."""
    browser = await local.signed_in(sid="p-mine")
    other = await local.signed_in(sid="p-sid")
    answer = await browser.request(
        "POST", PATH, csrf=False, data={"logout_token": local.sign(local.logout_claims(sid="p-sid"))}
    )
    assert (answer.status, answer.json()) == (200, {"endedSessions": 1})
    assert (await browser.request("GET", "/api/auth/user")).status == 200
    await assert_signed_out(other)


async def test_logout_at_the_provider_closes_the_sessions_open_websocket(
    make_oidc_stack: OidcStackFactory,
) -> None:
    """The provider's logout token ends the session in the Redis store; the gateway's next session
    check (``BFF_WS_SESSION_CHECK``) closes that session's open WebSocket with 4401, and only it."""
    recorder = Recorder()
    async with (
        serve(create_socket_api(recorder), lifespan="off") as socket_api_url,
        make_oidc_stack(
            client_metadata=backchannel_client(session_required=True),
            bff_session_store="redis",
            redis_url=f"redis://127.0.0.1:6379/{REDIS_DB}",
            remote_api=socket_api_url,
            bff_ws_session_check=0.2,
        ) as oidc,
    ):
        laptop = await sign_in(oidc, "alice")
        phone = await sign_in(oidc, "alice")
        origin = oidc.gateway_url
        async with (
            open_socket(laptop, "ticks", origin=origin) as ending,
            open_socket(phone, "ticks", origin=origin) as staying,
        ):
            await ending.recv()
            await log_out_at_provider(oidc, 0)
            assert await closed_with(ending) == SESSION_ENDED
            assert ending.close_reason == "session ended"
            await staying.recv()  # the other session's socket still flows
            assert staying.close_code is None
