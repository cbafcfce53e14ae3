"""The pieces that make a logout stick and keep the ID token from the page, on their own: tombstones
(bounded, expiring) and logout references (sealed, short-lived, single use across processes)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from bffgate.cluster import ClusterCoordination
from bffgate.logout_redirect import LogoutReferences
from bffgate.logouts import Tombstones

from .harness import SECRET_R

REDIS_DB8 = "redis://127.0.0.1:6379/8"


def test_tombstone_holds_until_its_time_then_is_forgotten() -> None:
    """A tombstone names its session until the given time; an expired one no longer does."""
    tombstones = Tombstones()
    tombstones.add("alive-until-later", time.time() + 3600)
    tombstones.add("already-over", time.time() - 1)
    assert "alive-until-later" in tombstones
    assert "already-over" not in tombstones
    assert "never-logged-out" not in tombstones


def test_tombstones_are_bounded_oldest_first() -> None:
    """Beyond its bound the oldest tombstones are forgotten, never the newest."""
    tombstones = Tombstones(max_entries=3)
    for sid in ("s1", "s2", "s3", "s4"):
        tombstones.add(sid, time.time() + 3600)
    assert [sid in tombstones for sid in ("s1", "s2", "s3", "s4")] == [False, True, True, True]


@pytest.fixture
async def redis_db8() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_DB8)
    try:
        yield client
    finally:
        await client.aclose()


async def test_logout_reference_is_opaque_and_single_use_across_processes(redis_db8: redis.Redis) -> None:
    """The reference does not contain the ID token readably; it opens once, here or in another
    process sharing Redis; a tampered one never opens."""
    cluster = ClusterCoordination(redis_db8, grace_seconds=30, lease_seconds=5)
    here, there = LogoutReferences([SECRET_R], cluster), LogoutReferences([SECRET_R], cluster)
    id_token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.signature"
    reference = here.issue(id_token)
    assert "eyJzdWIiOiJhbGljZSJ9" not in reference
    assert await there.redeem(reference[:-2] + "AA") is None
    assert await there.redeem(reference) == id_token
    assert await here.redeem(reference) is None  # used in the other process
    assert await there.redeem(reference) is None


async def test_logout_reference_is_single_use_without_redis() -> None:
    references = LogoutReferences([SECRET_R], None)
    reference = references.issue("header.payload.signature")
    assert await references.redeem(reference) == "header.payload.signature"
    assert await references.redeem(reference) is None
