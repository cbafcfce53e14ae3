"""A refreshed ID token must be about the user who signed in (security requirement 22, OIDC Core
12.2), and the back-channel ``sid`` index outlives refreshes whose ID tokens carry no ``sid``."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from bffgate.cookies import CookieJar
from bffgate.stores.redis import RedisSessionStore, provider_key
from bffgate.tokens import unverified_claims

from ..harness import session_cookies_set
from .conftest import OidcStack, OidcStackFactory
from .test_backchannel import backchannel_client

REDIS_DB8 = "redis://127.0.0.1:6379/8"


@pytest.mark.parametrize("mode", ["other-subject", "foreign-key", "alg-none"])
async def test_refresh_with_an_id_token_not_proven_to_be_the_users_ends_the_session(
    oidc: OidcStack, mode: str
) -> None:
    """The provider answers a refresh with a validly signed ID token for "mallory", or an ID token that
    does not validate: the new tokens are discarded and revoked, the session ends (401
    session_expired) and no cookie carries them."""
    browser = oidc.browser()
    await oidc.login(browser, login="alice")
    await oidc.provider.forge_next_id_token(oidc.client.client_id, mode)
    answer = await browser.request("POST", "/api/rest/refreshresttokens")
    assert answer.status == 401
    assert answer.code == "session_expired"
    assert session_cookies_set(answer) == []
    assert browser.cookies == {}
    obtained = await oidc.provider.last_tokens(oidc.client.client_id)
    assert (await oidc.provider.introspect(oidc.client, obtained["refresh_token"]))["active"] is False


async def test_refresh_with_the_same_subject_keeps_the_session(oidc: OidcStack) -> None:
    """The ordinary case still works: a refreshed ID token about alice keeps alice signed in."""
    browser = oidc.browser()
    await oidc.login(browser, login="alice")
    answer = await browser.request("POST", "/api/rest/refreshresttokens")
    assert answer.status == 200
    user = await browser.request("GET", "/api/auth/user")
    assert user.json()["user"]["sub"] == "alice"


async def test_sid_index_lives_as_long_as_the_session_after_a_refresh_without_sid(
    make_oidc_stack: OidcStackFactory,
) -> None:
    """After a refresh whose ID token has no ``sid``, the provider-session index still names the
    session and expires no earlier than it."""
    metadata = backchannel_client(session_required=True)
    async with make_oidc_stack(
        client_metadata=metadata, bff_session_store="redis", redis_url=REDIS_DB8
    ) as oidc:
        browser = oidc.browser()
        await oidc.login(browser)
        client = redis.Redis.from_url(REDIS_DB8)
        try:
            store = RedisSessionStore(oidc.settings, CookieJar(secure=True), client)
            session = await store.load(browser.cookies)
            assert session is not None and session.id_token is not None
            login = unverified_claims(session.id_token)  # validated by the gateway at login
            assert login is not None and isinstance(login.get("sid"), str)
            index = provider_key("sid", login["iss"], login["sid"])
            await oidc.provider.forge_next_id_token(oidc.client.client_id, "no-sid")
            assert (await browser.request("POST", "/api/rest/refreshresttokens")).status == 200
            async with client.pipeline(transaction=True) as pipe:  # one instant for both TTLs
                pipe.sismember(index, session.sid)
                pipe.pttl(index)
                pipe.pttl(f"bffgate:s:{session.sid}")
                member, index_ttl, session_ttl = await pipe.execute()
        finally:
            await client.aclose()
    assert member
    assert index_ttl >= session_ttl > 0
