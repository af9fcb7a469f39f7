"""ASGI middlewares at the HTTP edge: a body size limit and admission control (429 + Retry-After).

Both answer before the application reads a body, so a refusal costs almost nothing however busy the server is.
"""

from __future__ import annotations

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


class Admission:
    """Bounded admission: at most ``limits[kind]`` requests of a kind in flight; beyond, 429 + Retry-After.

    Submits and list reads are bounded; agent traffic (heartbeats, reports), long-polls and probes are not,
    so backpressure on clients never delays a heartbeat. The refusal is answered before the body is read.
    """

    def __init__(self, app: ASGIApp, limits: dict[str, int], retry_after: int = 1) -> None:
        self.app, self.limits, self.retry_after = app, limits, retry_after
        self.inflight = dict.fromkeys(limits, 0)
        self.refused = dict.fromkeys(limits, 0)

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
        if self.inflight[kind] >= self.limits[kind]:
            self.refused[kind] += 1
            err = Busy(
                f"the server is at its limit of {self.limits[kind]} {kind} requests at once; retry later",
                retry_after=self.retry_after,
                limit=self.limits[kind],
            )
            headers = {"Retry-After": str(self.retry_after)}
            await JSONResponse(err.to_payload(), status_code=err.status, headers=headers)(scope, receive, send)
            return
        self.inflight[kind] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight[kind] -= 1
