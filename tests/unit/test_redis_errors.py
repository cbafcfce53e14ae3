"""``redis_errors.py``: the one place redis-py's exceptions (and socket errors) become the gateway's own."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError

from bffgate.errors import ClusterUnavailable, StoreUnavailable
from bffgate.redis_errors import redis_errors, store_unavailable


@pytest.mark.parametrize(
    "failure", [RedisConnectionError("down"), LockError("lease"), ConnectionResetError()]
)
def test_a_redis_failure_becomes_the_mapped_error_chained(failure: Exception) -> None:
    with pytest.raises(ClusterUnavailable) as raised, redis_errors():
        raise failure
    assert raised.value.__cause__ is failure


def test_the_store_maps_to_a_503_that_says_nothing_of_redis() -> None:
    with pytest.raises(StoreUnavailable) as raised, redis_errors(store_unavailable):
        raise RedisConnectionError("Error 111 connecting to 10.0.0.7:6379")
    assert raised.value.status == 503
    assert "10.0.0.7" not in raised.value.detail


def test_other_errors_pass_unchanged() -> None:
    """Only Redis failures are mapped: a bug in the block stays a bug."""
    with pytest.raises(KeyError), redis_errors():
        raise KeyError("x")
