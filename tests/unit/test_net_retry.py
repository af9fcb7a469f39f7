"""RetryPolicy: full-jitter bounds and which requests may be repeated."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from updraft.net import RetryPolicy, is_idempotent


class _Extremes:
    """A random source that returns the top (or bottom) of the range, to pin the bounds exactly."""

    def __init__(self, top: bool) -> None:
        self.top = top
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return b if self.top else a


def test_defaults() -> None:
    p = RetryPolicy()
    assert (p.max_retries, p.base, p.cap) == (3, 1.0, 30.0)
    assert p.retry_statuses == frozenset({502, 503, 504})


def test_ceiling_doubles_from_base_then_caps() -> None:
    p = RetryPolicy(base=1.0, cap=5.0)
    assert [p.ceiling(n) for n in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert p.ceiling(10_000) == 5.0  # no overflow


def test_full_jitter_draws_from_zero_to_ceiling() -> None:
    top, bottom = _Extremes(top=True), _Extremes(top=False)
    assert [RetryPolicy(rng=top).delay(n) for n in range(3)] == [1.0, 2.0, 4.0]
    assert top.calls == [(0.0, 1.0), (0.0, 2.0), (0.0, 4.0)]
    assert RetryPolicy(rng=bottom).delay(2) == 0.0


@given(
    base=st.floats(min_value=0.0, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=100.0),
    attempt=st.integers(min_value=0, max_value=200),
    seed=st.integers(),
)
def test_full_jitter_bounds(base: float, cap: float, attempt: int, seed: int) -> None:
    p = RetryPolicy(base=base, cap=cap, rng=random.Random(seed))
    d = p.delay(attempt)
    assert 0.0 <= d <= min(cap, base * 2.0 ** min(attempt, 1000)) + 1e-12


def test_seeded_source_is_reproducible_and_spread() -> None:
    a = [RetryPolicy(rng=random.Random(7)).delay(3) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(1)
    p = RetryPolicy(rng=rng)
    samples = [p.delay(2) for _ in range(2000)]
    assert min(samples) < 0.2 and max(samples) > 3.8  # actually jittered across [0, 4]


def test_budget() -> None:
    p = RetryPolicy(max_retries=2)
    assert p.should_retry(0, safe=True) and p.should_retry(1, safe=True)
    assert not p.should_retry(2, safe=True)
    assert not RetryPolicy.none().should_retry(0, safe=True)


@pytest.mark.parametrize("method", ["POST", "PATCH", "post"])
def test_no_retries_for_unsafe_requests(method: str) -> None:
    p = RetryPolicy()
    safe = p.is_safe(method)
    assert safe is False
    assert not p.should_retry(0, safe=safe)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "get"])
def test_idempotent_methods_are_safe(method: str) -> None:
    assert is_idempotent(method)


def test_post_with_idempotency_key_is_safe_in_any_case() -> None:
    assert is_idempotent("POST", headers={"Idempotency-Key": "k1"})
    assert is_idempotent("POST", headers={"idempotency-key": "k1"})
    assert not is_idempotent("POST", headers={"X-Other": "1"})


def test_explicit_flag_wins() -> None:
    assert is_idempotent("POST", idempotent=True)
    assert not is_idempotent("GET", idempotent=False)
    assert not is_idempotent("POST", idempotent=False, headers={"Idempotency-Key": "k"})


def test_validation() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(base=-1.0)
    with pytest.raises(ValueError):
        RetryPolicy().ceiling(-1)
