"""``bounded.py``: remembered keys expire and never exceed their bound."""

from __future__ import annotations

from bffgate.bounded import ExpiringCache, ExpiringKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_present_until_its_time() -> None:
    clock = Clock()
    keys = ExpiringKeys(10, clock=clock)
    keys.add("a", clock.now + 5)
    assert "a" in keys
    clock.now += 5
    assert "a" not in keys


def test_the_oldest_key_goes_first_past_the_bound() -> None:
    keys = ExpiringKeys(2, clock=Clock())
    for key in ("a", "b", "c"):
        keys.add(key, 2000.0)
    assert ("a" in keys, "b" in keys, "c" in keys, len(keys)) == (False, True, True, 2)


def test_first_use_is_true_once_within_its_lifetime() -> None:
    clock = Clock()
    keys = ExpiringKeys(10, clock=clock)
    assert keys.first_use("jti", 60) is True
    assert keys.first_use("jti", 60) is False
    clock.now += 61
    assert keys.first_use("jti", 60) is True


def test_a_cached_value_expires_and_the_least_recently_used_goes_first() -> None:
    """``ExpiringCache`` (the sealer's and the cookie store's caches): a value until its time, and
    past the bound the entry used longest ago is dropped, not the one just read."""
    clock = Clock()
    cache: ExpiringCache[str, int] = ExpiringCache(2, clock=clock)
    cache.put("a", 1, clock.now + 10)
    cache.put("b", 2, clock.now + 10)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3, clock.now + 10)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    clock.now += 10
    assert cache.get("a") is None and len(cache) == 1


def test_a_cache_bounded_to_nothing_keeps_nothing() -> None:
    """A bound of 0 (one-off sealers) keeps no value."""
    cache: ExpiringCache[str, int] = ExpiringCache(0)
    cache.put("a", 1, 2e9)
    assert cache.get("a") is None
