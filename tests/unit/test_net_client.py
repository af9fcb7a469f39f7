"""HttpClient / AsyncHttpClient against httpx.MockTransport: retries, failover, errors, timeouts, RTT."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from updraft import errors
from updraft.clock import FakeClock
from updraft.net import AsyncHttpClient, EndpointSet, HttpClient, RetryPolicy

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Wraps a handler and records every request it sees."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def hosts(self) -> list[str]:
        return [r.url.host for r in self.requests]


class TopRandom:
    def uniform(self, a: float, b: float) -> float:
        return b


def _error(status: int, code: str, message: str = "boom", **details: Any) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message, "details": details})


def _client(
    handler: Handler, servers: str | list[str] = "http://a:8080", *, clock: FakeClock | None = None, **kw: Any
) -> tuple[HttpClient, Recorder, FakeClock]:
    clock = clock or FakeClock()
    rec = Recorder(handler)
    kw.setdefault("retry", RetryPolicy(rng=TopRandom()))
    client = HttpClient(servers, clock=clock, transport=httpx.MockTransport(rec), **kw)
    return client, rec, clock


def test_get_returns_2xx_response_and_sends_auth_and_default_headers() -> None:
    client, rec, _ = _client(lambda r: httpx.Response(200, json={"ok": True}), token="s3cret", headers={"X-Node": "n1"})
    resp = client.get("/v1/tasks", params={"state": "running"})
    assert resp.json() == {"ok": True}
    req = rec.requests[0]
    assert str(req.url) == "http://a:8080/v1/tasks?state=running"
    assert req.headers["Authorization"] == "Bearer s3cret"
    assert req.headers["X-Node"] == "n1"


def test_retries_on_503_then_succeeds_with_backoff_sleep() -> None:
    replies = iter([_error(503, "unavailable"), _error(503, "unavailable"), httpx.Response(200, json={})])
    client, rec, clock = _client(lambda r: next(replies))
    t0 = clock.monotonic()
    assert client.get("/v1/x").status_code == 200
    assert len(rec.requests) == 3
    # Same endpoint each time → full-jitter sleeps (TopRandom takes the ceiling): 1 s then 2 s.
    assert clock.monotonic() - t0 == pytest.approx(3.0)
    (stats,) = client.stats()
    assert (stats.requests, stats.retries, stats.failures) == (3, 2, 2)
    assert not stats.down  # the final success lifted the ban


def test_error_body_becomes_project_exception() -> None:
    client, rec, _ = _client(lambda r: _error(409, "stale_token", "attempt replaced", task="t1"))
    with pytest.raises(errors.StaleToken) as info:
        client.post("/v1/tasks/t1/report", json={"state": "done"})
    assert info.value.message == "attempt replaced"
    assert info.value.details == {"task": "t1"}
    assert len(rec.requests) == 1  # 4xx is an answer, not a failure: no retry
    assert client.stats()[0].failures == 0


@pytest.mark.parametrize(
    ("status", "cls"),
    [(404, errors.NotFound), (401, errors.Unauthorized), (422, errors.ValidationError), (500, errors.UpdraftError)],
)
def test_error_without_code_maps_by_status(status: int, cls: type[errors.UpdraftError]) -> None:
    client, _, _ = _client(lambda r: httpx.Response(status, text="<html>nope</html>"))
    with pytest.raises(cls) as info:
        client.get("/v1/x")
    assert type(info.value) is cls
    assert info.value.details["http_status"] == status


def test_500_with_code_is_raised_not_retried() -> None:
    client, rec, _ = _client(lambda r: _error(500, "internal"))
    with pytest.raises(errors.UpdraftError):
        client.get("/v1/x")
    assert len(rec.requests) == 1


def test_failover_to_second_endpoint_on_connect_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"from": request.url.host})

    client, rec, clock = _client(handler, "http://a:8080, http://b:8080")
    t0 = clock.monotonic()
    assert client.get("/v1/x").json() == {"from": "b"}
    assert rec.hosts == ["a", "b"]
    assert clock.monotonic() == t0  # an untried endpoint needs no backoff
    a, b = client.stats()
    assert a.down and a.failures == 1 and not b.down
    assert b.retries == 1
    # a is benched for fail_timeout: the next calls go straight to b.
    client.get("/v1/x")
    client.get("/v1/x")
    assert rec.hosts == ["a", "b", "b", "b"]


def test_transport_error_when_all_endpoints_fail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused by {request.url.host}", request=request)

    client, rec, _ = _client(handler, ["http://a:8080", "http://b:8080"])
    with pytest.raises(errors.TransportError) as info:
        client.get("/v1/x")
    err = info.value
    assert len(rec.requests) == 4  # 1 + max_retries
    assert "http://a:8080" in err.message and "http://b:8080" in err.message
    assert "ConnectError" in err.message
    assert err.details["endpoints"] == ["http://a:8080", "http://b:8080"]
    assert err.details["attempts"] == 4
    assert err.details["sent"] is False
    assert isinstance(err.__cause__, httpx.ConnectError)
    assert isinstance(err, errors.Unavailable)


def test_exhausted_503_retries_raise_transport_error_caused_by_server_error() -> None:
    client, rec, _ = _client(lambda r: _error(503, "unavailable", "store down"))
    with pytest.raises(errors.TransportError) as info:
        client.get("/v1/x")
    assert len(rec.requests) == 4
    assert isinstance(info.value.__cause__, errors.Unavailable)
    assert "HTTP 503" in info.value.message


def test_unsafe_post_is_not_retried_after_it_may_have_been_sent() -> None:
    client, rec, _ = _client(lambda r: _error(503, "unavailable", "busy"), "http://a, http://b")
    with pytest.raises(errors.Unavailable) as info:
        client.post("/v1/tasks", json={"image": "x"})
    assert type(info.value) is errors.Unavailable  # the server's own error, not a TransportError
    assert len(rec.requests) == 1

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client, rec, _ = _client(timeout, "http://a, http://b")
    with pytest.raises(errors.TransportError) as tinfo:
        client.post("/v1/tasks", json={})
    assert len(rec.requests) == 1
    assert tinfo.value.details["sent"] is True  # outcome unknown


def test_unsafe_post_is_retried_when_the_connection_never_opened() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json={"id": "t1"})

    client, rec, _ = _client(handler, "http://a, http://b")
    assert client.post("/v1/tasks", json={}).status_code == 201
    assert rec.hosts == ["a", "b"]


def test_post_with_idempotency_key_or_flag_is_retried() -> None:
    replies = iter([_error(503, "unavailable"), httpx.Response(201, json={})] * 2)
    client, rec, _ = _client(lambda r: next(replies))
    client.post("/v1/tasks", json={}, headers={"Idempotency-Key": "k1"})
    client.post("/v1/tasks", json={}, idempotent=True)
    assert len(rec.requests) == 4
    assert json.loads(rec.requests[1].content) == {}


def test_adaptive_timeout_is_passed_to_httpx_and_rtt_is_sampled() -> None:
    clock = FakeClock()

    def handler(request: httpx.Request) -> httpx.Response:
        clock.advance(0.05)  # the "network" takes 50 ms
        return httpx.Response(200)

    client, rec, _ = _client(handler, clock=clock)
    client.get("/x")
    assert rec.requests[0].extensions["timeout"] == {"connect": 1.0, "read": 1.0, "write": 1.0, "pool": 1.0}
    (s,) = client.stats()
    assert s.srtt == pytest.approx(0.05) and s.rttvar == pytest.approx(0.025)
    client.get("/x")
    rto = client.stats()[0].rto
    assert rto == pytest.approx(0.2)  # 0.05 + 4·0.01875 = 0.125 → floored at min_rto
    assert rec.requests[1].extensions["timeout"]["read"] == pytest.approx(0.2)


def test_explicit_timeout_and_long_poll_wait() -> None:
    clock = FakeClock()

    def handler(request: httpx.Request) -> httpx.Response:
        clock.advance(20.0)  # a long poll held by the server
        return httpx.Response(200)

    client, rec, _ = _client(handler, clock=clock)
    client.get("/v1/watch", timeout=45.0)
    assert rec.requests[0].extensions["timeout"]["read"] == 45.0
    client.get("/v1/watch", wait=30.0)
    t = rec.requests[1].extensions["timeout"]
    assert t["connect"] == 1.0 and t["read"] == 31.0
    assert client.stats()[0].srtt is None  # long polls do not poison the RTT estimate


def test_read_timeout_backs_off_the_estimator_and_counts() -> None:
    calls = iter(["timeout", "ok"])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(calls) == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200)

    client, rec, _ = _client(handler)
    client.get("/x")
    assert [r.extensions["timeout"]["read"] for r in rec.requests] == [1.0, 2.0]  # doubled for the retry
    (s,) = client.stats()
    assert s.timeouts == 1 and s.retries == 1
    assert s.srtt is None and s.rto == 2.0  # Karn: the retry's sample is ignored, back-off kept


def test_accepts_an_endpoint_set_and_uses_its_clock() -> None:
    clock = FakeClock()
    es = EndpointSet.parse("http://a weight=2, http://b", clock=clock)
    rec = Recorder(lambda r: httpx.Response(200))
    with HttpClient(es, transport=httpx.MockTransport(rec)) as client:
        for _ in range(3):
            client.get("/x")
        assert client.endpoints is es
    assert rec.hosts == ["a", "b", "a"]


def test_no_retry_policy() -> None:
    client, rec, _ = _client(lambda r: _error(503, "unavailable"), retry=RetryPolicy.none())
    with pytest.raises(errors.TransportError):
        client.get("/x")
    assert len(rec.requests) == 1


# -- async -------------------------------------------------------------------------------------------


def test_async_client_failover_retry_and_errors() -> None:
    clock = FakeClock()
    replies = iter([_error(503, "unavailable"), httpx.Response(200, json={"n": 1})])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a":
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/missing":
            return _error(404, "not_found", "no such task")
        return next(replies)

    rec = Recorder(handler)

    async def scenario() -> None:
        async with AsyncHttpClient(
            "http://a, http://b", clock=clock, retry=RetryPolicy(rng=TopRandom()), transport=httpx.MockTransport(rec)
        ) as client:
            t0 = clock.monotonic()
            resp = await client.get("/v1/x")
            assert resp.json() == {"n": 1}
            # a refused → untried b at once; b 503 → both benched, so fall back to the earliest ban (a,
            # 1 s backoff), refused again → b, whose ban now ends first (2 s backoff) → 200.
            assert rec.hosts == ["a", "b", "a", "b"]
            assert clock.monotonic() - t0 == pytest.approx(3.0)
            with pytest.raises(errors.NotFound):
                await client.delete("/missing")

    asyncio.run(scenario())
