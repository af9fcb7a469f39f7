"""HTTP routes, thin: parse, call the service, render. Errors become ``{code, message, details}``.

Which routes run where (issue 13, "an event loop that never blocks"): the ones answered from memory —
heartbeats, assignments, a live task, long-polls, probes — are ``async`` and never touch the store; every route
that reads the store or waits for a commit is a plain ``def``, which FastAPI runs in its worker threads, so the
event loop keeps answering heartbeats while submits queue for the writer. :class:`Admission` bounds the work
admitted at once and answers 429 with ``Retry-After`` beyond it, before the body is even read.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, TypeAdapter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from updraft.control.service import ControlService
from updraft.errors import Busy, PayloadTooLarge, Unauthorized, UpdraftError
from updraft.model import Event, Node, Task, TaskSpec, TaskState
from updraft.model.api import (
    Assignments,
    AttemptReport,
    Heartbeat,
    HeartbeatReply,
    LabelChange,
    LogBatch,
    NodeRegistration,
    ProbeReport,
    SubmitRequest,
    TaintChange,
)
from updraft.observe.tracing import NOOP, Tracing

MAX_WAIT = 60.0


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_payload(exc: RequestValidationError) -> dict[str, Any]:
    errors = []
    for err in exc.errors():
        field = _field(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        if kind == "json_invalid":
            field, msg = "body", "malformed JSON"
        elif kind == "extra_forbidden":
            msg = "unknown field"
        else:
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        errors.append({"field": field, "message": msg})
    first = errors[0] if errors else {"field": "body", "message": "invalid"}
    return {
        "code": "invalid",
        "message": f"{first['field']}: {first['message']}",
        "details": {"field": first["field"], "errors": errors},
    }


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


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}


_TASKS = TypeAdapter(list[Task])
_NODES = TypeAdapter(list[Node])
_EVENTS = TypeAdapter(list[Event])


def _json(value: BaseModel | Sequence[Any], adapter: TypeAdapter[Any] | None = None, status: int = 200) -> Response:
    """Serialise once with pydantic (FastAPI would validate the value again against the response model)."""
    body = adapter.dump_json(value) if adapter is not None else value.model_dump_json()  # type: ignore[union-attr]
    return Response(body, status_code=status, media_type="application/json")


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


def build_router(service: ControlService, tracing: Tracing = NOOP) -> APIRouter:
    token = service.settings.token

    def auth(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("missing or wrong bearer token", field="authorization")

    r = APIRouter(prefix="/v1", dependencies=[Depends(auth)])
    notifier = service.notifier

    async def task_now(task_id: str) -> Task:
        """From memory while live; a finished task is read from the store in a worker thread."""
        live = service.live_task(task_id)
        return live if live is not None else await asyncio.to_thread(service.task, task_id)

    # -- tasks ------------------------------------------------------------------------------------------
    @r.post("/tasks", status_code=201, response_model=Task, tags=["tasks"])
    def submit(
        body: SubmitRequest,
        idempotency_key: Annotated[str | None, Header()] = None,
        traceparent: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Any:
        """Create a task (201), or return the task an ``Idempotency-Key`` already created (200)."""
        key = idempotency_key or body.idempotency_key
        spec = TaskSpec.model_validate(body.model_dump(exclude={"idempotency_key"}, exclude_unset=True))
        with tracing.span("submit", traceparent, {"updraft.image": spec.image}, kind="server") as span:
            task, created = service.submit(spec, key, traceparent=span.traceparent)
            span.set("updraft.task_id", task.id)
        return _json(task, status=201 if created else 200)

    @r.get("/tasks", response_model=list[Task], tags=["tasks"])
    def list_tasks(
        state: TaskState | None = None, node: str | None = None, limit: Annotated[int, Query(ge=1, le=10000)] = 200
    ) -> Any:
        return _json(service.store.list_tasks([state] if state else None, node=node, limit=limit), _TASKS)

    @r.get("/tasks/{task_id}", response_model=Task, tags=["tasks"])
    async def get_task(task_id: str) -> Any:
        return _json(await task_now(task_id))

    @r.get("/tasks/{task_id}/wait", response_model=Task, tags=["tasks"])
    async def wait_task(task_id: str, timeout: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 30.0) -> Any:
        """Long-poll until the task is terminal or ``timeout`` passes; returns the task either way."""
        deadline = service.clock.monotonic() + timeout
        while True:
            version = notifier.version(f"task:{task_id}")
            task = await task_now(task_id)
            left = deadline - service.clock.monotonic()
            if task.state.terminal or left <= 0:
                return _json(task)
            await notifier.wait(f"task:{task_id}", version, left)

    @r.post("/tasks/{task_id}/cancel", response_model=Task, tags=["tasks"])
    def cancel(task_id: str) -> Any:
        return _json(service.cancel(task_id))

    @r.get("/tasks/{task_id}/events", response_model=list[Event], tags=["tasks"])
    def task_events(task_id: str) -> Any:
        service.task(task_id)
        return _json(service.store.list_events(task_id=task_id), _EVENTS)

    @r.get("/tasks/{task_id}/logs", tags=["tasks"])
    async def task_logs(
        task_id: str, after: Annotated[int, Query(ge=0)] = 0, wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0
    ) -> Any:
        """Log lines after ``after``; with ``wait``, long-poll for new lines while the task is not done."""
        version = notifier.version(f"logs:{task_id}")
        task = await task_now(task_id)
        lines = await asyncio.to_thread(service.store.list_logs, task_id, after)
        if not lines and wait > 0 and not task.state.terminal:
            await notifier.wait(f"logs:{task_id}", version, wait)
            lines = await asyncio.to_thread(service.store.list_logs, task_id, after)
            task = await task_now(task_id)
        return {
            "lines": [ln.__dict__ for ln in lines],
            "next": lines[-1].seq if lines else after,
            "done": task.state.terminal,
        }

    @r.get("/events", response_model=list[Event], tags=["events"])
    def events(after: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=10000)] = 500) -> Any:
        return _json(service.store.list_events(after=after, limit=limit), _EVENTS)

    # -- nodes --------------------------------------------------------------------------------------
    @r.get("/nodes", response_model=list[Node], tags=["nodes"])
    async def list_nodes() -> Any:
        return _json(sorted(service.state.nodes.values(), key=lambda n: n.name), _NODES)

    @r.get("/nodes/{name}", response_model=Node, tags=["nodes"])
    async def get_node(name: str) -> Any:
        return _json(service.node(name))

    @r.put("/nodes/{name}", response_model=Node, tags=["agent"])
    def register(name: str, body: NodeRegistration) -> Any:
        return _json(service.register(name, body))

    @r.post("/nodes/{name}/heartbeat", response_model=HeartbeatReply, tags=["agent"])
    async def heartbeat(name: str, body: Heartbeat) -> Any:
        return _json(service.heartbeat(name, body))

    @r.get("/nodes/{name}/assignments", response_model=Assignments, tags=["agent"])
    async def assignments(
        name: str, index: int | None = None, wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0
    ) -> Any:
        """The attempts this node should run. Long-polls while ``index`` is still current."""
        service.node(name)
        version = await notifier.wait(f"node:{name}", index, wait)
        found = await asyncio.to_thread(service.assignments, name)
        return _json(Assignments(index=version, assignments=found))

    @r.post("/nodes/{name}/cordon", response_model=Node, tags=["nodes"])
    def cordon(name: str) -> Any:
        return _json(service.cordon(name, True))

    @r.post("/nodes/{name}/uncordon", response_model=Node, tags=["nodes"])
    def uncordon(name: str) -> Any:
        return _json(service.cordon(name, False))

    @r.post("/nodes/{name}/drain", response_model=Node, tags=["nodes"])
    def drain(name: str) -> Any:
        return _json(service.drain(name))

    @r.post("/nodes/{name}/labels", response_model=Node, tags=["nodes"])
    def labels(name: str, body: LabelChange) -> Any:
        return _json(service.set_labels(name, body))

    @r.post("/nodes/{name}/taints", response_model=Node, tags=["nodes"])
    def taints(name: str, body: TaintChange) -> Any:
        return _json(service.set_taints(name, body))

    # -- agent reports ------------------------------------------------------------------------------
    @r.post("/tasks/{task_id}/attempts/{token}/status", response_model=Task, tags=["agent"])
    def report(
        task_id: str,
        token: int,
        body: AttemptReport,
        traceparent: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Any:
        attrs: dict[str, str | int] = {"updraft.task_id": task_id, "updraft.token": token, "updraft.state": body.state}
        with tracing.span("report", traceparent, attrs, kind="server"):
            return _json(service.report(task_id, token, body))

    @r.post("/tasks/{task_id}/attempts/{token}/probes", response_model=Task, tags=["agent"])
    def probes(task_id: str, token: int, body: ProbeReport) -> Any:
        return _json(service.probe_report(task_id, token, body))

    @r.post("/tasks/{task_id}/attempts/{token}/logs", tags=["agent"])
    def logs(task_id: str, token: int, body: LogBatch) -> Any:
        return {"accepted": service.append_logs(task_id, token, body)}

    @r.get("/policy", tags=["config"])
    async def policy() -> Any:
        return service.policy.model_dump()

    return r


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UpdraftError)
    async def _updraft(request: Request, exc: UpdraftError) -> JSONResponse:
        headers = {"Retry-After": str(exc.details.get("retry_after", 1))} if isinstance(exc, Busy) else None
        return JSONResponse(exc.to_payload(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_payload(exc), status_code=422)
