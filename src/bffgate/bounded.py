"""The one small bounded memory of bffgate, kept in process memory: entries that expire.

``ExpiringCache`` maps keys to values, each until a time of its clock; past ``max_entries`` the least
recently used entry is forgotten first, so that no input can grow it without limit. An expired entry
counts as absent. Its users: the sealer's opened values and the cookie store's assembled sessions
(the hot path's caches), the in-process grace window. ``ExpiringKeys`` is the same memory for keys
alone ("seen until"): logout tombstones, used logout references and used login answers.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """Values by key, each until a time of ``clock``; at most ``max_entries`` (least recently used out)."""

    __slots__ = ("_clock", "_entries", "_max")

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.time) -> None:
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def get(self, key: K, now: float | None = None) -> V | None:
        """The value of ``key`` if it has not expired at ``now`` (default: the clock's time), else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= (self._clock() if now is None else now):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, until: float) -> None:
        """Keep ``value`` under ``key`` until ``until`` (a time of the clock); a bound of 0 keeps nothing."""
        if self._max <= 0:
            return
        self._entries[key] = (value, until)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def prune(self, now: float | None = None) -> None:
        """Drop the expired entries at the front, for users that give every entry the same lifetime
        (then the order of use is the order of expiry)."""
        now = self._clock() if now is None else now
        while self._entries and next(iter(self._entries.values()))[1] <= now:
            self._entries.popitem(last=False)


class ExpiringKeys:
    """Keys, each until a time of ``clock``; at most ``max_entries`` of them (oldest out first)."""

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._keys: ExpiringCache[str, bool] = ExpiringCache(max_entries, clock=clock)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str, until: float) -> None:
        """Remember ``key`` until ``until`` (a time of the clock)."""
        self._keys.put(key, True, until)

    def __contains__(self, key: str) -> bool:
        if not self._keys:  # the common case: nothing remembered
            return False
        return self._keys.get(key) is not None

    def first_use(self, key: str, seconds: float) -> bool:
        """True the first time ``key`` is presented within ``seconds`` (then it is remembered)."""
        now = self._clock()
        self._keys.prune(now)  # callers give every key the same lifetime
        if self._keys.get(key, now) is not None:
            return False
        self._keys.put(key, True, now + seconds)
        return True
