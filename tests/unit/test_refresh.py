"""``refresh.py``: the single-flight coordinator, driven directly with a scripted provider (no network)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from bffgate.api_target import ApiTarget
from bffgate.errors import RefreshFailed, RefreshRejected, RefreshUnavailable, SessionExpired
from bffgate.refresh import RefreshCoordinator
from bffgate.session import Session
from bffgate.tokens import TokenSet

from .fakes import MemoryStore, session_of


class ScriptedProvider:
    """Rotates refresh tokens like a strict provider; each call waits until the test releases it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()  # set when a refresh reaches the provider
        self.outcome: Exception | None = None
        self.used: set[str] = set()

    async def refresh(self, refresh_token: str) -> TokenSet:
        self.calls.append(refresh_token)
        self.entered.set()
        await self.release.wait()
        if self.outcome is not None:
            raise self.outcome
        if refresh_token in self.used:
            raise RefreshRejected("reuse")
        self.used.add(refresh_token)
        n = len(self.calls)
        return TokenSet(access_token=f"at{n}", refresh_token=f"rt{n}", expires_in=60)

    async def revoke(self, session: Session) -> None:
        return None

    async def ready(self) -> None:
        return None

    revokes_with_access_token = False


def expired_session() -> Session:
    return session_of("s1", expires_in=-1)


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def coordinator(provider: ScriptedProvider, store: MemoryStore) -> RefreshCoordinator:
    return RefreshCoordinator(provider, store, grace_seconds=30)


async def test_concurrent_refreshes_share_one_provider_call(
    coordinator: RefreshCoordinator, provider: ScriptedProvider, store: MemoryStore
) -> None:
    """100 waiters for one session cause one provider call and all get the same new tokens."""
    session = expired_session()
    waiters = [asyncio.create_task(coordinator.refresh(session)) for _ in range(100)]
    await provider.entered.wait()  # the flight is in the air; every waiter has joined it
    provider.release.set()
    results = await asyncio.gather(*waiters)
    assert provider.calls == ["rt0"]
    assert {r.refresh_token for r in results} == {"rt1"}
    assert store.saved == [results[0]]


async def test_result_is_saved_before_any_waiter_sees_it(
    coordinator: RefreshCoordinator, provider: ScriptedProvider, store: MemoryStore
) -> None:
    """The rotated session is in the store by the time the first waiter gets it."""
    provider.release.set()
    refreshed = await coordinator.refresh(expired_session())
    assert store.saved[-1] is refreshed


async def test_cancelled_waiter_does_not_cancel_the_flight(
    coordinator: RefreshCoordinator, provider: ScriptedProvider
) -> None:
    """A request that goes away mid-refresh leaves the refresh running for the others."""
    session = expired_session()
    first = asyncio.create_task(coordinator.refresh(session))
    second = asyncio.create_task(coordinator.refresh(session))
    await provider.entered.wait()
    first.cancel()
    provider.release.set()
    assert (await second).refresh_token == "rt1"
    assert provider.calls == ["rt0"]


async def test_superseded_session_gets_newest_tokens_from_grace(
    coordinator: RefreshCoordinator, provider: ScriptedProvider
) -> None:
    """A request still holding an old refresh token (two rotations ago) gets the newest session."""
    provider.release.set()
    once = await coordinator.refresh(expired_session())
    twice = await coordinator.refresh(once)
    late = await coordinator.refresh(expired_session())
    assert late.refresh_token == twice.refresh_token == "rt2"
    assert provider.calls == ["rt0", "rt1"]


async def test_grace_result_rejected_by_api_is_refreshed_again(
    coordinator: RefreshCoordinator, provider: ScriptedProvider
) -> None:
    """If the API rejects the access token the grace window would give, a real refresh happens."""
    provider.release.set()
    once = await coordinator.refresh(expired_session())
    again = await coordinator.refresh(expired_session(), rejected_access_token=once.access_token)
    assert again.refresh_token == "rt2"
    assert provider.calls == ["rt0", "rt1"]


async def test_rejection_is_terminal_and_deletes_the_session(
    coordinator: RefreshCoordinator, provider: ScriptedProvider, store: MemoryStore
) -> None:
    """A provider rejection ends the session (SessionExpired) and deletes it from the store."""
    provider.outcome = RefreshRejected("invalid_grant")
    provider.release.set()
    with pytest.raises(SessionExpired):
        await coordinator.refresh(expired_session())
    assert [s.sid for s in store.deleted] == ["s1"]


async def test_transient_failure_keeps_the_session(
    coordinator: RefreshCoordinator, provider: ScriptedProvider, store: MemoryStore
) -> None:
    """A transient failure is RefreshUnavailable; nothing is deleted and the next try can succeed."""
    provider.outcome = RefreshFailed("502")
    provider.release.set()
    with pytest.raises(RefreshUnavailable):
        await coordinator.refresh(expired_session())
    assert store.deleted == []
    provider.outcome = None
    assert (await coordinator.refresh(expired_session())).refresh_token == "rt2"


async def test_rejection_after_a_concurrent_rotation_is_not_terminal(
    coordinator: RefreshCoordinator, provider: ScriptedProvider, store: MemoryStore
) -> None:
    """A rejection for a token that another flight rotated meanwhile yields that flight's session."""
    provider.release.set()
    newer = await coordinator.refresh(expired_session())
    # Simulate the race: a flight with the old token gets "reuse" from the provider after rt0 rotated.
    assert await coordinator._refresh_once(expired_session()) == newer
    assert store.deleted == []


async def test_session_without_refresh_token_expires(coordinator: RefreshCoordinator) -> None:
    """A session that has no refresh token cannot be refreshed: it has ended."""
    session = Session(sid="s", created_at=time.time())
    with pytest.raises(SessionExpired):
        await coordinator.refresh(session)


class ScriptedApiProvider(ScriptedProvider):
    """Also issues per-API tokens (RFC 8707), rotating the refresh token on those grants too."""

    async def refresh_for_api(self, refresh_token: str, target: ApiTarget) -> TokenSet:
        tokens = await self.refresh(refresh_token)
        return replace(tokens, access_token=f"{target.resource}:{tokens.access_token}")


async def test_grants_for_the_session_and_its_apis_take_turns_from_the_newest_refresh_token(
    store: MemoryStore,
) -> None:
    """Concurrent refreshes of a session's own token and of two APIs' tokens: one grant each, every
    one with the refresh token the previous grant rotated, and the last state holds all three."""
    provider = ScriptedApiProvider()
    coordinator = RefreshCoordinator(provider, store, grace_seconds=30)
    orders, billing = ApiTarget("https://orders.test/"), ApiTarget("https://billing.test/")
    session = replace(expired_session(), resources=("https://orders.test/", "https://billing.test/"))
    waiters = asyncio.gather(
        coordinator.refresh(session),
        *(coordinator.refresh(session, target=target) for target in [orders, billing] * 10),
    )
    await provider.entered.wait()  # one grant is at the provider; the other flights are waiting
    provider.release.set()
    own, *apis = await waiters
    assert sorted(provider.calls) == ["rt0", "rt1", "rt2"]  # no refresh token presented twice
    assert own.access_token not in (None, "at0")
    assert {api.api_tokens[orders.key].access_token for api in apis[::2]} == {
        apis[0].api_tokens[orders.key].access_token
    }
    newest = store.saved[-1]
    assert newest.refresh_token == "rt3"
    assert newest.access_token == own.access_token
    assert newest.api_tokens[orders.key].access_token.startswith("https://orders.test/:")
    assert newest.api_tokens[billing.key].access_token.startswith("https://billing.test/:")
    assert await coordinator.current(session) == newest  # old cookies find the newest state
