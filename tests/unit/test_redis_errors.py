"""``redis_errors.py``: the one place redis-py's exceptions (and socket errors) become the gateway's own."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError

from bffgate.errors import ClusterUnavailable, StoreUnavailable
from bffgate.redis_errors import COORDINATION, STORE, redis_errors, store_unavailable


@pytest.mark.parametrize(
    "failure", [RedisConnectionError("down"), LockError("lease"), ConnectionResetError()]
)
def test_a_redis_failure_becomes_the_mapped_error_chained(failure: Exception) -> None:
    with pytest.raises(ClusterUnavailable) as raised, redis_errors(COORDINATION):
        raise failure
    assert raised.value.__cause__ is failure


def test_the_store_maps_to_a_503_that_says_nothing_of_redis() -> None:
    with pytest.raises(StoreUnavailable) as raised, redis_errors(STORE, store_unavailable):
        raise RedisConnectionError("Error 111 connecting to 10.0.0.7:6379")
    assert raised.value.status == 503
    assert "10.0.0.7" not in raised.value.detail


def test_other_errors_pass_unchanged() -> None:
    """Only Redis failures are mapped: a bug in the block stays a bug."""
    with pytest.raises(KeyError), redis_errors(COORDINATION):
        raise KeyError("x")


def test_each_block_counts_a_round_trip_and_a_failure_of_its_role() -> None:
    """A socket error counts as a failure too (the metric and the mapping agree)."""
    trips, failures = STORE.round_trips._value.get(), STORE.failures._value.get()
    with redis_errors(STORE, store_unavailable):
        pass
    with pytest.raises(StoreUnavailable), redis_errors(STORE, store_unavailable):
        raise ConnectionResetError()
    assert STORE.round_trips._value.get() - trips == 2
    assert STORE.failures._value.get() - failures == 1
