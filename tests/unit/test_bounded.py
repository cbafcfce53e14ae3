"""``bounded.py``: remembered keys expire and never exceed their bound."""

from __future__ import annotations

from bffgate.bounded import ExpiringKeys


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
