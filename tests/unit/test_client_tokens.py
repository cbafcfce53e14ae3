"""``ClientTokens``: cached until shortly before expiry, one grant for concurrent callers, never the
rejected token again. The grant itself is a stub here (the real one: tests/oidc/test_client_routes.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from bffgate.client_tokens import ClientGrant, ClientToken, ClientTokens
from bffgate.sealing import Sealer


class StubGrant:
    """Hands out token-1, token-2, … living ``lifetime`` seconds."""

    cache_name = "stub"

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.calls = 0

    async def fetch(self, http: Any, timeout: float) -> ClientToken:
        self.calls += 1
        await asyncio.sleep(0)  # an answer over the network: the other callers run meanwhile
        now = time.time()
        return ClientToken(f"token-{self.calls}", now, now + self.lifetime)


def tokens(grant: StubGrant, skew: float = 30.0) -> ClientTokens:
    sealer = Sealer(["s" * 40], "client-token")
    return ClientTokens(cast(ClientGrant, grant), cast(Any, None), skew=skew, timeout=5, sealer=sealer)


async def test_concurrent_callers_share_one_grant_and_the_token_is_cached() -> None:
    grant = StubGrant(lifetime=600)
    source = tokens(grant)
    assert set(await asyncio.gather(*(source.token() for _ in range(50)))) == {"token-1"}
    assert await source.token() == "token-1"
    assert grant.calls == 1


async def test_a_token_near_its_expiry_is_replaced() -> None:
    grant = StubGrant(lifetime=-1)  # already expired when it arrives
    source = tokens(grant, skew=0)
    assert await source.token() == "token-1"
    assert await source.token() == "token-2"


async def test_a_short_lived_token_is_kept_for_three_quarters_of_its_life() -> None:
    grant = StubGrant(lifetime=20)  # skew 30 > life: capped at a quarter (5 s)
    source = tokens(grant, skew=30)
    assert await source.token() == await source.token() == "token-1"


async def test_the_rejected_token_is_never_handed_out_again() -> None:
    grant = StubGrant(lifetime=600)
    source = tokens(grant)
    first = await source.token()
    assert await source.token(rejected=first) == "token-2"
    assert await source.token(rejected=first) == "token-2"  # a late 401 of token-1: no new grant
    assert grant.calls == 2
