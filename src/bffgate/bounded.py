"""``ExpiringKeys``: the one small bounded memory of "seen until" keys, kept in process memory.

Logout tombstones, used logout references and used login answers each remember keys for a while.
Bounded so that no input can grow it without limit: past ``max_entries`` the oldest key is forgotten
first. An expired key counts as absent.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class ExpiringKeys:
    """Keys, each until a time of ``clock``; at most ``max_entries`` of them (oldest out first)."""

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.time) -> None:
        self._max = max_entries
        self._clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def add(self, key: str, until: float) -> None:
        """Remember ``key`` until ``until`` (a time of the clock)."""
        self._until[key] = until
        self._until.move_to_end(key)
        while len(self._until) > self._max:
            self._until.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        if not self._until:  # the common case: nothing remembered
            return False
        until = self._until.get(key)
        if until is None:
            return False
        if until <= self._clock():
            del self._until[key]
            return False
        return True

    def first_use(self, key: str, seconds: float) -> bool:
        """True the first time ``key`` is presented within ``seconds`` (then it is remembered)."""
        now = self._clock()
        # Callers give every key the same lifetime, so insertion order is expiry order.
        while self._until and next(iter(self._until.values())) <= now:
            self._until.popitem(last=False)
        if key in self:
            return False
        self.add(key, now + seconds)
        return True
