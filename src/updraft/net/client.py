"""HTTP clients for the agent, SDK and CLI: failover, adaptive timeouts, safe retries, typed errors.

Why not plain httpx: every caller of the control plane needs the same four things, and getting them
subtly different in three places is how outages start —

* **where** to send: an :class:`EndpointSet` (nginx upstream semantics) picks a replica and benches sick
  ones;
* **how long** to wait: each endpoint's RFC 6298 estimator supplies the timeout, so a dead replica is
  detected in a few RTTs instead of a fixed, pessimistic number of seconds;
* **whether** to try again: the :class:`RetryPolicy` retries only what is safe to repeat (plus any request
  whose connection never opened), moving to an untried endpoint first and backing off with full jitter
  when it has to go back to one already tried;
* **what** to raise: error bodies become the project's own exception classes (``errors.from_payload``), and
  "nobody answered" becomes :class:`errors.TransportError` naming every endpoint tried and the last cause.

Timeout semantics: the adaptive value is applied to each httpx phase (connect, write, and each read —
httpx read timeouts bound the gap between bytes, not the whole response). ``timeout=`` overrides it and
turns off RTT sampling (the call's duration is not a network round trip). ``wait=`` is for long polls:
the server may hold the request ``wait`` seconds, so reads get ``wait + RTO`` while connects keep the
plain RTO; no RTT sample is taken from a long poll either.

Failures that bench an endpoint: connect errors, timeouts, dropped connections and 502/503/504. Other
4xx/5xx mean the endpoint is up and answered; they are raised, not retried — except 429, the server's
"not now" under backpressure: it is retried on the same endpoint after at least its ``Retry-After``
(see :mod:`updraft.net.retry`), whatever the method, and the endpoint is not benched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from updraft.clock import Clock, SystemClock
from updraft.net._call import Call
from updraft.net.endpoints import EndpointSet, EndpointStats
from updraft.net.retry import RetryPolicy, is_idempotent

Endpoints = EndpointSet | str | Sequence[str]


class _ClientBase:
    """Configuration and per-call set-up shared by :class:`HttpClient` and :class:`AsyncHttpClient`."""

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(endpoints, EndpointSet):
            self._endpoints = endpoints
            self._clock: Clock = clock or endpoints.clock
        else:
            self._clock = clock or SystemClock()
            self._endpoints = EndpointSet.parse(endpoints, clock=self._clock)
        self._retry = retry or RetryPolicy()
        self._headers: dict[str, str] = dict(headers or {})
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    @property
    def endpoints(self) -> EndpointSet:
        return self._endpoints

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    def stats(self) -> list[EndpointStats]:
        """Per-endpoint SRTT, RTO, fails, requests, retries and timeouts — for metrics and benchmarks."""
        return self._endpoints.stats()

    def _start(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None,
        timeout: float | None,
        wait: float | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[Call, dict[str, str]]:
        merged = {**self._headers, **(headers or {})}
        safe = is_idempotent(method, idempotent, merged)
        call = Call(
            self._endpoints, self._retry, method, path, safe=safe, timeout=timeout, wait=wait, clock=self._clock
        )
        return call, merged


class HttpClient(_ClientBase):
    """Synchronous client (``httpx.Client`` underneath). Thread-safe, like ``httpx.Client``.

    ``transport`` is the test seam: pass ``httpx.MockTransport(handler)`` or ``httpx.WSGITransport(app)``
    to run in-process with no sockets.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(endpoints, token=token, retry=retry, clock=clock, headers=headers)
        self._client = httpx.Client(transport=transport, follow_redirects=False)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
        wait: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send ``method path`` to the endpoint set; returns the 2xx response or raises an UpdraftError."""
        call, merged = self._start(method, path, idempotent=idempotent, timeout=timeout, wait=wait, headers=headers)
        while True:
            ep, delay = call.next_attempt()
            if delay > 0:
                self._clock.sleep(delay)
            call.begin(ep, self._clock.monotonic())
            try:
                response = self._client.request(
                    call.method,
                    call.url(ep),
                    json=json,
                    params=params,
                    headers=merged,
                    timeout=call.timeout(ep),
                )
            except httpx.HTTPError as exc:
                call.on_error(exc)
                continue
            if call.on_response(response, self._clock.monotonic()):
                return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncHttpClient(_ClientBase):
    """Asynchronous client (``httpx.AsyncClient`` underneath), same behaviour as :class:`HttpClient`.

    Backoff sleeps use ``asyncio.sleep`` with a :class:`SystemClock`; with any other clock (a
    ``FakeClock`` in tests) they go through ``clock.sleep`` so simulated time advances instantly.
    ``transport`` accepts ``httpx.MockTransport`` or ``httpx.ASGITransport(app)`` for in-process tests.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(endpoints, token=token, retry=retry, clock=clock, headers=headers)
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False)

    async def _sleep(self, seconds: float) -> None:
        if isinstance(self._clock, SystemClock):
            await asyncio.sleep(seconds)
        else:
            self._clock.sleep(seconds)
            await asyncio.sleep(0)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
        wait: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Async twin of :meth:`HttpClient.request`."""
        call, merged = self._start(method, path, idempotent=idempotent, timeout=timeout, wait=wait, headers=headers)
        while True:
            ep, delay = call.next_attempt()
            if delay > 0:
                await self._sleep(delay)
            call.begin(ep, self._clock.monotonic())
            try:
                response = await self._client.request(
                    call.method,
                    call.url(ep),
                    json=json,
                    params=params,
                    headers=merged,
                    timeout=call.timeout(ep),
                )
            except httpx.HTTPError as exc:
                call.on_error(exc)
                continue
            if call.on_response(response, self._clock.monotonic()):
                return response

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
