"""The session-store contract, run against both stores (oauth2-proxy's habit: one suite, two stores)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

import pytest
import redis.asyncio as redis
import time_machine

from bffgate.cookies import CookieJar
from bffgate.errors import BackchannelUnsupported, SessionExpired
from bffgate.session import Session, SessionStore
from bffgate.stores import CookieSessionStore, RedisSessionStore
from bffgate.tokens import TokenSet

from ..harness import parse_set_cookie, settings_for

REDIS_TEST_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(params=["cookie", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    jar = CookieJar(secure=True)
    if request.param == "cookie":
        yield CookieSessionStore(settings_for("http://api.test"), jar)
        return
    client = redis.Redis.from_url(REDIS_TEST_URL)
    await client.flushdb()
    settings = settings_for("http://api.test", bff_session_store="redis", redis_url=REDIS_TEST_URL)
    yield RedisSessionStore(settings, jar, client)
    await client.flushdb()
    await client.aclose()


def new_session(user: dict[str, object] | None = None) -> Session:
    tokens = TokenSet(access_token="access-" + "a" * 40, refresh_token="refresh-" + "r" * 40, expires_in=300)
    return Session.start(tokens, user or {"sub": "u1", "name": "Ada"})


def browser_cookies(set_cookies: list[str]) -> dict[str, str]:
    jar: dict[str, str] = {}
    for header in set_cookies:
        name, value, attributes = parse_set_cookie(header)
        if attributes.get("max-age") == "0":
            jar.pop(name, None)
        else:
            jar[name] = value
    return jar


async def persist(
    store: SessionStore, session: Session, cookies: Mapping[str, str] | None = None
) -> dict[str, str]:
    await store.save(session)
    return browser_cookies(store.set_cookies(session, cookies or {}))


async def test_saved_session_loads_back(store: SessionStore) -> None:
    """What is saved and put in cookies loads back equal, tokens and user included."""
    session = new_session()
    loaded = await store.load(await persist(store, session))
    assert loaded is not None
    assert (loaded.sid, loaded.access_token, loaded.refresh_token, loaded.user) == (
        session.sid,
        session.access_token,
        session.refresh_token,
        session.user,
    )
    assert loaded.access_expires_at == pytest.approx(session.access_expires_at, abs=1)


async def test_cookies_carry_no_token_in_clear(store: SessionStore) -> None:
    """No cookie value contains a token."""
    session = new_session()
    cookies = await persist(store, session)
    assert cookies
    for value in cookies.values():
        assert "access-aaaa" not in value and "refresh-rrrr" not in value


async def test_refreshed_session_replaces_the_old_one(store: SessionStore) -> None:
    """After a refresh is saved, the browser's new cookies load the new tokens."""
    session = new_session()
    cookies = await persist(store, session)
    refreshed = session.with_tokens(
        TokenSet(access_token="access-2", refresh_token="refresh-2", expires_in=300)
    )
    cookies.update(await persist(store, refreshed, cookies))
    loaded = await store.load(cookies)
    assert loaded is not None
    assert (loaded.access_token, loaded.refresh_token) == ("access-2", "refresh-2")


async def test_clearing_expires_every_cookie_the_store_set(store: SessionStore) -> None:
    """Logout's Set-Cookie headers remove every cookie the store had set."""
    cookies = await persist(store, new_session())
    remaining = dict(cookies)
    for header in store.clear_cookies(cookies):
        name, _, attributes = parse_set_cookie(header)
        assert attributes["max-age"] == "0"
        remaining.pop(name, None)
    assert remaining == {}
    assert store.has_cookies(cookies)
    assert not store.has_cookies(remaining)


async def test_deleted_server_side_session_cannot_be_loaded_with_old_cookies(store: SessionStore) -> None:
    """With the Redis store, a deleted session is dead even for a browser that kept its cookie."""
    if not isinstance(store, RedisSessionStore):
        pytest.skip("a stateless cookie session ends when its cookies are cleared")
    session = new_session()
    cookies = await persist(store, session)
    await store.delete(session)
    assert await store.load(cookies) is None


@pytest.mark.parametrize("damage", ["", "garbage", "x.y.z.w.v"])
async def test_damaged_cookies_load_nothing(store: SessionStore, damage: str) -> None:
    """Cookies replaced by garbage load as no session."""
    cookies = await persist(store, new_session())
    assert await store.load(dict.fromkeys(cookies, damage)) is None


async def test_session_ends_after_its_lifetime(store: SessionStore) -> None:
    """A session is gone once its idle lifetime (7 days by default) has passed."""
    cookies = await persist(store, new_session())
    if isinstance(store, RedisSessionStore):
        # Redis expires keys by its own clock: check the TTL it was given instead of travelling.
        key = next(iter(await store._redis.keys("bffgate:s:*")))
        assert 7 * 24 * 3600 - 5 <= await store._redis.ttl(key) <= 7 * 24 * 3600
        return
    with time_machine.travel(time.time() + 7 * 24 * 3600 + 5, tick=False):
        assert await store.load(cookies) is None


async def test_every_cookie_is_secure_and_bounded(store: SessionStore) -> None:
    """Every cookie set by a store has the security attributes and fits in 4096 bytes."""
    big_user: dict[str, object] = {"sub": "u1", "groups": [f"group-{i:04d}" for i in range(600)]}
    session = new_session(big_user)
    await store.save(session)
    headers = store.set_cookies(session, {})
    for header in headers:
        name, value, attributes = parse_set_cookie(header)
        assert name.startswith("__Host-")
        assert len(f"{name}={value}") <= 4096
        assert {"secure", "httponly", "path", "samesite", "max-age"} <= set(attributes)
        assert "domain" not in attributes
    loaded = await store.load(browser_cookies(headers))
    assert loaded is not None and loaded.user == big_user


async def test_refresh_does_not_resurrect_a_deleted_session(store: SessionStore) -> None:
    """A refresh finishing after a logout deleted the session does not write it back (Redis store)."""
    if not isinstance(store, RedisSessionStore):
        pytest.skip("the cookie store keeps nothing server-side to resurrect")
    session = new_session()
    cookies = await persist(store, session)
    await store.delete(session)
    refreshed = session.with_tokens(
        TokenSet(access_token="access-2", refresh_token="refresh-2", expires_in=300)
    )
    with pytest.raises(SessionExpired):
        await store.save(refreshed, existing=True)
    assert await store.load(cookies) is None


# -- capabilities declared on the SessionStore protocol ------------------------------------------------


def is_server_side(store: SessionStore) -> bool:
    return isinstance(store, RedisSessionStore)


async def test_the_store_says_whether_its_sessions_live_on_the_server(store: SessionStore) -> None:
    assert store.server_side is is_server_side(store)


async def test_ending_all_of_a_users_sessions_ends_only_theirs(store: SessionStore) -> None:
    """Server-side: every session of the user ends, another user's stays. Cookie store: nothing to end."""
    first, second = new_session({"sub": "u1"}), new_session({"sub": "u1"})
    other = new_session({"sub": "u2"})
    jars = [await persist(store, session) for session in (first, second, other)]
    ended = await store.delete_all_of_user({"sub": "u1"})
    assert ended == (2 if store.server_side else 0)
    loaded = [await store.load(jar) for jar in jars]
    assert [s is None for s in loaded] == ([True, True, False] if store.server_side else [False] * 3)


def oidc_session(sid: str, sub: str) -> Session:
    identity = {"iss": "https://idp.test", "sub": sub, "sid": sid, "aud": "client"}
    return replace(new_session({"sub": sub}), identity=identity)


async def test_back_channel_logout_ends_the_provider_sessions_or_is_unsupported(store: SessionStore) -> None:
    ended_one, kept = oidc_session("op-1", "alice"), oidc_session("op-2", "alice")
    jars = [await persist(store, session) for session in (ended_one, kept)]
    if not store.server_side:
        with pytest.raises(BackchannelUnsupported):
            await store.delete_provider_sessions("https://idp.test", sid="op-1", sub=None)
        return
    assert await store.delete_provider_sessions("https://idp.test", sid="op-1", sub="alice") == 1
    assert await store.load(jars[0]) is None
    assert await store.load(jars[1]) is not None
    assert await store.delete_provider_sessions("https://idp.test", sid=None, sub="alice") == 1
    assert await store.load(jars[1]) is None


async def test_a_logout_token_counts_once_or_is_unsupported(store: SessionStore) -> None:
    if not store.server_side:
        with pytest.raises(BackchannelUnsupported):
            await store.first_use_of_logout_token("https://idp.test", "jti-1", 60)
        return
    assert await store.first_use_of_logout_token("https://idp.test", "jti-1", 60) is True
    assert await store.first_use_of_logout_token("https://idp.test", "jti-1", 60) is False
    assert await store.first_use_of_logout_token("https://idp.test", "jti-2", 60) is True
