"""The verified-token cache: a token sent again skips parsing and signature checks.

Bounded, and evicting by SIEVE (Zhang et al., NSDI '24; PostgREST 14 caches JWTs the same way):
entries sit in one queue in insertion order, a hit only sets the entry's `visited` bit, and
eviction moves a hand from the oldest entry towards the newest, clearing visited bits until it
finds an entry that was not visited since the hand last passed; that one goes. A token in use
keeps being visited, so a stream of tokens seen once (a scan) evicts the others, not it; under
the first-in-first-out order this replaces, a burst of new tokens pushed out the busiest ones.

No well-kept Python library offers SIEVE as a keyed container with per-entry deadlines and an
injectable clock (cachetools has FIFO, LFU, LRU, RR, TTL and TLRU; the PyPI packages that do
implement SIEVE are function decorators), so it is written here, in the paper's form.

Every operation is synchronous and short: coroutines of one event loop share the cache safely.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

ValueT = TypeVar("ValueT")


@dataclass(slots=True, eq=False)
class _Entry(Generic[ValueT]):
    key: bytes
    value: ValueT
    valid_until: float
    visited: bool = False
    newer: _Entry[ValueT] | None = None
    older: _Entry[ValueT] | None = None


class VerifiedTokenCache(Generic[ValueT]):
    """At most `capacity` entries, each served until its deadline and at most `max_age_seconds`.

    `clock` is wall-clock seconds (the deadlines are token expiry times); tests inject their own.
    """

    def __init__(
        self,
        capacity: int,
        *,
        max_age_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._max_age = max_age_seconds
        self._clock = clock
        self._entries: dict[bytes, _Entry[ValueT]] = {}
        self._newest: _Entry[ValueT] | None = None
        self._oldest: _Entry[ValueT] | None = None
        self._hand: _Entry[ValueT] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def get(self, key: bytes) -> ValueT | None:
        """The value stored under `key` while its deadline has not passed, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() > entry.valid_until:
            self._remove(entry)
            return None
        entry.visited = True
        return entry.value

    def put(self, key: bytes, value: ValueT, valid_until: float) -> None:
        """Store `value` until `valid_until` (capped at `max_age_seconds` from now)."""
        deadline = min(valid_until, self._clock() + self._max_age)
        existing = self._entries.get(key)
        if existing is not None:
            existing.value, existing.valid_until = value, deadline
            return
        if len(self._entries) >= self.capacity:
            self._evict()
        entry = _Entry(key, value, deadline, older=self._newest)
        if self._newest is not None:
            self._newest.newer = entry
        self._newest = entry
        if self._oldest is None:
            self._oldest = entry
        self._entries[key] = entry

    def _evict(self) -> None:
        hand = self._hand or self._oldest
        while hand is not None and hand.visited:
            hand.visited = False
            hand = hand.newer or self._oldest
        if hand is not None:
            self._hand = hand
            self._remove(hand)

    def _remove(self, entry: _Entry[ValueT]) -> None:
        if self._hand is entry:
            self._hand = entry.newer
        if entry.older is not None:
            entry.older.newer = entry.newer
        else:
            self._oldest = entry.newer
        if entry.newer is not None:
            entry.newer.older = entry.older
        else:
            self._newest = entry.older
        del self._entries[entry.key]
