"""ASGI middlewares at the HTTP edge: a body size limit and admission control (429 + Retry-After).

Both answer before the application reads a body, so a refusal costs almost nothing however busy the server is.
"""

from __future__ import annotations

import asyncio
import json

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from updraft.errors import Busy, PayloadTooLarge


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        if declared is None:
            # Chunked: read (at most limit + one chunk) before the app runs. Raising from inside the app's
            # receive would surface as FastAPI's generic 400 "error parsing the body", not as a 413.
            buffered: list[Message] = []
            size = 0
            while True:
                message = await receive()
                buffered.append(message)
                if message["type"] != "http.request":
                    break
                size += len(message.get("body", b""))
                if size > self.limit:
                    await self._refuse(send)
                    return
                if not message.get("more_body", False):
                    break
            replay = iter(buffered)

            async def replaying() -> Message:
                return next(replay, None) or await receive()

            await self.app(scope, replaying, send)
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise PayloadTooLarge(f"body: larger than {self.limit} bytes", field="body", limit=self.limit)
            return message

        await self.app(scope, counting, send)

    async def _refuse(self, send: Send) -> None:
        err = PayloadTooLarge(f"body: larger than {self.limit} bytes", field="body", limit=self.limit)
        await JSONResponse(err.to_payload(), status_code=err.status)({"type": "http"}, _noop_receive, send)


async def read_body(receive: Receive) -> bytes:
    """The whole request body (a middleware that answers, or forwards, before the app reads it)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app a body already read, then what follows (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}


class LoopLag:
    """How late the event loop runs what is due: a timer asks to wake every ``every`` seconds and records how
    much later it woke, smoothed (``lag += weight × (late − lag)``, about 50 ms of memory at the defaults), so
    a lone pause (a garbage collection, a page fault) is not taken for overload but a loop that keeps running
    late is. What it measures is what a heartbeat arriving now waits for before the loop even reads it."""

    def __init__(self, every: float = 0.01, weight: float = 0.2) -> None:
        self.every, self.weight, self.lag = every, weight, 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.every)
            self.lag += self.weight * (loop.time() - asked - self.every - self.lag)


class Admission:
    """Bounded admission: at most ``limits[kind]`` requests of a kind in flight; beyond, 429 + Retry-After.

    Submits and list reads are bounded; agent traffic (heartbeats, reports), long-polls and probes are not,
    so backpressure on clients never delays a heartbeat. The refusal is answered before the body is read.
    With a :class:`LoopLag` and ``max_lag`` seconds, submits are also refused while the event loop runs that
    late and at least an eighth of the submit limit is in flight: new work waits for the loop to catch up with
    the heartbeats and probes it owes an answer. (A loop late for another reason — a machine busy with other
    processes, a lone stall — with few submits in flight is not helped by refusing them, so they go on.)
    """

    def __init__(
        self,
        app: ASGIApp,
        limits: dict[str, int],
        retry_after: int = 1,
        lag: LoopLag | None = None,
        max_lag: float = 0.0,
    ) -> None:
        self.app, self.limits, self.retry_after = app, limits, retry_after
        self.lag, self.max_lag = lag, max_lag
        self.inflight = dict.fromkeys(limits, 0)
        self.refused = dict.fromkeys(limits, 0)
        self._full = {kind: self._answer(f"the server is at its limit of {n} {kind} requests at once", "limit", n)
                      for kind, n in limits.items()}  # fmt: skip
        self._behind = self._answer(
            f"the server is catching up (its event loop runs over {max_lag * 1000:g} ms late)", "loop-lag"
        )

    def _answer(self, why: str, cause: str, limit: int | None = None) -> tuple[Message, Message]:
        """A refusal, rendered once (a busy server answers many); ``cause`` says which rule refused, as data."""
        details = {"limit": limit} if limit is not None else {}
        err = Busy(f"{why}; retry later", retry_after=self.retry_after, cause=cause, **details)
        body = json.dumps(err.to_payload(), ensure_ascii=False, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"retry-after", str(self.retry_after).encode())]  # fmt: skip
        return {"type": "http.response.start", "status": err.status, "headers": headers}, {
            "type": "http.response.body",
            "body": body,
        }

    @staticmethod
    def kind(method: str, path: str) -> str | None:
        if method == "POST" and path.rstrip("/") == "/v1/tasks":
            return "submit"
        if method == "GET" and (path.rstrip("/") in ("/v1/tasks", "/v1/events") or path.endswith("/events")):
            return "read"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = self.kind(scope.get("method", ""), scope.get("path", "")) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        behind = (
            kind == "submit"
            and self.lag is not None
            and 0 < self.max_lag < self.lag.lag
            and self.inflight[kind] >= max(1, self.limits[kind] // 8)  # submits are a real part of the loop's work
        )
        if behind or self.inflight[kind] >= self.limits[kind]:
            self.refused[kind] += 1
            start, body = self._behind if behind else self._full[kind]
            await send(start)
            await send(body)
            return
        self.inflight[kind] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight[kind] -= 1
