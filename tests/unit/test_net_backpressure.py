"""Backpressure: 429 and 503 with ``Retry-After`` through the shared client (MockTransport, FakeClock)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from updraft import errors
from updraft.clock import FakeClock
from updraft.net import AsyncHttpClient, HttpClient, RetryPolicy
from updraft.net.retry import parse_retry_after

Handler = Callable[[httpx.Request], httpx.Response]


class TopRandom:
    """Takes the top of every range: the longest backoff and the most jitter."""

    def uniform(self, a: float, b: float) -> float:
        return b


class BottomRandom:
    def uniform(self, a: float, b: float) -> float:
        return a


def busy(retry_after: str | None = "2", status: int = 429, code: str = "busy") -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"code": code, "message": "admission full", "details": {}}
    return httpx.Response(status, json=body, headers=headers)


class Script:
    """Answers with the given responses in order, recording each request."""

    def __init__(self, *replies: httpx.Response) -> None:
        self._replies: Iterator[httpx.Response] = iter(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return next(self._replies)

    @property
    def hosts(self) -> list[str]:
        return [r.url.host for r in self.requests]


def client_for(
    handler: Handler, servers: str = "http://a:8470", *, policy: RetryPolicy | None = None
) -> tuple[HttpClient, FakeClock]:
    clock = FakeClock()
    policy = policy or RetryPolicy(rng=TopRandom())
    return HttpClient(servers, clock=clock, retry=policy, transport=httpx.MockTransport(handler)), clock


def test_429_waits_retry_after_with_jitter_and_keeps_the_idempotency_key() -> None:
    script = Script(busy("2"), busy("2"), httpx.Response(201, json={"id": "t-1"}))
    client, clock = client_for(script)
    t0 = clock.monotonic()
    resp = client.post("/v1/tasks", json={"image": "x"}, headers={"Idempotency-Key": "k-1"})
    assert resp.json() == {"id": "t-1"}
    assert [r.headers["Idempotency-Key"] for r in script.requests] == ["k-1"] * 3
    assert [r.content for r in script.requests] == [script.requests[0].content] * 3
    # Each wait: max(backoff ceiling 1 s then 2 s, Retry-After 2 s + 20 % jitter at the top) = 2.4 s twice.
    assert clock.monotonic() - t0 == pytest.approx(4.8)
    (stats,) = client.stats()
    assert (stats.requests, stats.refused, stats.failures, stats.down) == (3, 2, 0, False)


def test_429_is_retried_for_a_post_without_a_key_because_nothing_was_done() -> None:
    script = Script(busy("1"), httpx.Response(200, json={}))
    client, _ = client_for(script)
    assert client.post("/v1/tasks/t-1/cancel").status_code == 200
    assert len(script.requests) == 2


def test_429_stays_on_the_endpoint_that_refused_and_does_not_bench_it() -> None:
    script = Script(busy("1"), busy("1"), httpx.Response(200, json={}))
    client, _ = client_for(script, "http://a:8470, http://b:8470 backup")
    client.get("/v1/tasks")
    assert script.hosts == ["a", "a", "a"]  # the independent backup is no answer to "not now"
    a, b = client.stats()
    assert not a.down and a.refused == 2 and b.requests == 0


def test_429_after_the_budget_raises_the_servers_answer() -> None:
    script = Script(*[busy("1")] * 4)
    client, _ = client_for(script)
    with pytest.raises(errors.Busy) as info:
        client.post("/v1/tasks", json={}, headers={"Idempotency-Key": "k"})
    assert info.value.details == {}
    assert not isinstance(info.value, errors.TransportError)  # the server answered: "overloaded", not "unreachable"
    assert len(script.requests) == 4  # 1 + max_retries


def test_429_without_a_code_in_its_body_maps_by_status() -> None:
    script = Script(*[httpx.Response(429, text="slow down")] * 2)
    client, _ = client_for(script, policy=RetryPolicy(max_retries=1, rng=TopRandom()))
    with pytest.raises(errors.Busy) as info:
        client.get("/v1/tasks")
    assert info.value.details["http_status"] == 429


def test_429_without_retry_after_uses_the_plain_backoff() -> None:
    script = Script(busy(None), busy(None), httpx.Response(200, json={}))
    client, clock = client_for(script)
    t0 = clock.monotonic()
    client.get("/v1/tasks")
    assert clock.monotonic() - t0 == pytest.approx(1.0 + 2.0)


def test_retry_after_is_capped_by_the_policy() -> None:
    script = Script(busy("3600"), httpx.Response(200, json={}))
    client, clock = client_for(script, policy=RetryPolicy(cap=5.0, rng=TopRandom()))
    t0 = clock.monotonic()
    client.get("/v1/tasks")
    assert clock.monotonic() - t0 == pytest.approx(5.0 * 1.2)


def test_503_with_retry_after_waits_before_going_back_to_the_same_endpoint() -> None:
    script = Script(busy("3", status=503, code="unavailable"), httpx.Response(200, json={}))
    client, clock = client_for(script, policy=RetryPolicy(rng=BottomRandom()))
    t0 = clock.monotonic()
    client.get("/v1/tasks")
    assert clock.monotonic() - t0 == pytest.approx(3.0)  # the floor: exactly Retry-After with no jitter drawn
    assert client.stats()[0].failures == 1  # a 503 still counts against the endpoint


def test_503_with_retry_after_still_fails_over_at_once_to_an_untried_endpoint() -> None:
    script = Script(busy("30", status=503, code="unavailable"), httpx.Response(200, json={}))
    client, clock = client_for(script, "http://a:8470, http://b:8470")
    t0 = clock.monotonic()
    client.get("/v1/tasks")
    assert script.hosts == ["a", "b"] and clock.monotonic() == t0


def test_503_is_still_not_repeated_for_an_unsafe_post() -> None:
    script = Script(busy("1", status=503, code="unavailable"))
    client, _ = client_for(script)
    with pytest.raises(errors.Unavailable):
        client.post("/v1/tasks/t-1/cancel")
    assert len(script.requests) == 1


def test_async_client_honours_429_the_same_way() -> None:
    clock = FakeClock()
    script = Script(busy("2"), httpx.Response(201, json={"id": "t-1"}))

    async def scenario() -> None:
        async with AsyncHttpClient(
            "http://a:8470", clock=clock, retry=RetryPolicy(rng=TopRandom()), transport=httpx.MockTransport(script)
        ) as client:
            t0 = clock.monotonic()
            resp = await client.post("/v1/tasks", json={}, headers={"Idempotency-Key": "k"})
            assert resp.status_code == 201
            assert clock.monotonic() - t0 == pytest.approx(2.4)

    asyncio.run(scenario())
    assert [r.headers["Idempotency-Key"] for r in script.requests] == ["k", "k"]


# -- the pure pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), (" 0 ", 0.0), ("0.5", 0.5), ("-1", None), ("soon", None), ("", None), ("nan", None), ("inf", None)],
)
def test_parse_retry_after_seconds(header: str, expected: float | None) -> None:
    assert parse_retry_after(header, now=0.0) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 12, 2, 12, 0, 7, tzinfo=UTC), usegmt=True)
    assert later == "Wed, 02 Dec 2026 12:00:07 GMT"
    assert parse_retry_after(later, now) == pytest.approx(7.0)
    assert parse_retry_after(later, now + 60) == 0.0  # a date in the past: go now
    assert parse_retry_after(None, now) is None


@given(
    retry_after=st.floats(min_value=0, max_value=1e6),
    attempt=st.integers(min_value=0, max_value=20),
    cap=st.floats(min_value=0.01, max_value=100),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_after_is_at_least_the_capped_retry_after_and_at_most_its_jitter(
    retry_after: float, attempt: int, cap: float, seed: int
) -> None:
    import random

    policy = RetryPolicy(cap=cap, rng=random.Random(seed))
    floor = min(retry_after, cap)
    delay = policy.delay_after(attempt, retry_after)
    assert floor <= delay <= max(floor * (1 + policy.retry_after_jitter), policy.ceiling(attempt))


def test_delay_after_without_retry_after_is_the_plain_backoff() -> None:
    policy = RetryPolicy(rng=TopRandom())
    assert policy.delay_after(2, None) == policy.delay(2) == 4.0
    with pytest.raises(ValueError, match="retry_after_jitter"):
        RetryPolicy(retry_after_jitter=-0.1)
