"""The verified-token cache: bounded, SIEVE keeps tokens in use, deadlines by its own clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from todo_api.security.token_cache import VerifiedTokenCache

MAX_AGE = 300.0


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _key(number: int) -> bytes:
    return number.to_bytes(4, "big")


class CacheMachine(RuleBasedStateMachine):
    """Random puts, gets and clock moves against a model of what was stored and until when."""

    @initialize(capacity=st.integers(min_value=1, max_value=8))
    def create(self, capacity: int) -> None:
        self.clock = ManualClock()
        self.cache: VerifiedTokenCache[str] = VerifiedTokenCache(
            capacity, max_age_seconds=MAX_AGE, clock=self.clock
        )
        self.stored: dict[bytes, tuple[str, float]] = {}

    @rule(key=st.integers(0, 15), value=st.text(max_size=3), ttl=st.floats(0, 2 * MAX_AGE))
    def put(self, key: int, value: str, ttl: float) -> None:
        self.cache.put(_key(key), value, self.clock.now + ttl)
        self.stored[_key(key)] = (value, self.clock.now + min(ttl, MAX_AGE))

    @precondition(lambda self: hasattr(self, "cache"))
    @rule(key=st.integers(0, 15))
    def get(self, key: int) -> None:
        found = self.cache.get(_key(key))
        if found is None:
            assert _key(key) not in self.cache
            return
        # Only what was stored last under this key, and only before its deadline.
        value, valid_until = self.stored[_key(key)]
        assert found == value
        assert self.clock.now <= valid_until

    @rule(seconds=st.floats(0, MAX_AGE))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @precondition(lambda self: hasattr(self, "cache"))
    @invariant()
    def bounded(self) -> None:
        assert len(self.cache) <= self.cache.capacity


CacheMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_the_cache_is_bounded_and_serves_only_live_entries = CacheMachine.TestCase


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(min_value=2, max_value=40),
    cold=st.integers(min_value=0, max_value=400),
    data=st.data(),
)
def test_a_token_in_use_survives_a_scan_of_tokens_seen_once(
    capacity: int, cold: int, data: st.DataObject
) -> None:
    # Used at least once per capacity - 1 other tokens: with first-in-first-out it would be gone
    # after `capacity` new ones.
    every = data.draw(st.integers(min_value=1, max_value=capacity - 1), label="used every")
    clock = ManualClock()
    cache: VerifiedTokenCache[str] = VerifiedTokenCache(
        capacity, max_age_seconds=MAX_AGE, clock=clock
    )
    hot = b"hot"
    cache.put(hot, "hot user", clock.now + 60)
    assert cache.get(hot) == "hot user"
    for number in range(cold):
        cache.put(_key(number), "cold user", clock.now + 60)
        assert len(cache) <= capacity
        if number % every == every - 1:
            assert cache.get(hot) == "hot user", f"evicted after {number + 1} cold tokens"
    assert hot in cache


def test_tokens_seen_once_are_evicted_oldest_first() -> None:
    cache: VerifiedTokenCache[int] = VerifiedTokenCache(
        3, max_age_seconds=MAX_AGE, clock=ManualClock()
    )
    for number in range(5):
        cache.put(_key(number), number, float("inf"))
    assert [cache.get(_key(n)) for n in range(5)] == [None, None, 2, 3, 4]


def test_an_entry_expires_by_the_injected_clock_at_its_deadline_or_max_age() -> None:
    clock = ManualClock()
    cache: VerifiedTokenCache[str] = VerifiedTokenCache(10, max_age_seconds=MAX_AGE, clock=clock)
    cache.put(b"short", "short-lived", clock.now + 10)
    cache.put(b"long", "long-lived", clock.now + 10 * MAX_AGE)

    clock.now += 10
    assert cache.get(b"short") == "short-lived"  # the deadline itself is still valid
    clock.now += 0.001
    assert cache.get(b"short") is None
    assert b"short" not in cache  # an expired entry is dropped, not kept until evicted

    clock.now += MAX_AGE - 11
    assert cache.get(b"long") == "long-lived"
    clock.now += 2
    assert cache.get(b"long") is None
    assert len(cache) == 0


def test_a_cache_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="capacity"):
        VerifiedTokenCache(0, max_age_seconds=MAX_AGE)
