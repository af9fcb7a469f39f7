"""HTTP routes, thin: parse, call the service, render. Errors become ``{code, message, details}``."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from updraft.control.service import ControlService
from updraft.errors import PayloadTooLarge, Unauthorized, UpdraftError
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

    @r.post("/tasks", status_code=201, response_model=Task, tags=["tasks"])
    def submit(
        body: SubmitRequest,
        idempotency_key: Annotated[str | None, Header()] = None,
        traceparent: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Any:
        key = idempotency_key or body.idempotency_key
        spec = TaskSpec.model_validate(body.model_dump(exclude={"idempotency_key"}, exclude_unset=True))
        with tracing.span("submit", traceparent, {"updraft.image": spec.image}, kind="server") as span:
            task, created = service.submit(spec, key, traceparent=span.traceparent)
            span.set("updraft.task_id", task.id)
        return task if created else JSONResponse(task.model_dump(mode="json"), status_code=200)

    @r.get("/tasks", response_model=list[Task], tags=["tasks"])
    async def list_tasks(
        state: TaskState | None = None, node: str | None = None, limit: Annotated[int, Query(ge=1, le=10000)] = 200
    ) -> Any:
        return service.store.list_tasks([state] if state else None, node=node, limit=limit)

    @r.get("/tasks/{task_id}", response_model=Task, tags=["tasks"])
    async def get_task(task_id: str) -> Any:
        return service.task(task_id)

    @r.get("/tasks/{task_id}/wait", response_model=Task, tags=["tasks"])
    async def wait_task(task_id: str, timeout: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 30.0) -> Any:
        """Long-poll until the task is terminal or ``timeout`` passes; returns the task either way."""
        loop_deadline = service.clock.monotonic() + timeout
        while True:
            version = notifier.version(f"task:{task_id}")
            task = service.task(task_id)
            left = loop_deadline - service.clock.monotonic()
            if task.state.terminal or left <= 0:
                return task
            await notifier.wait(f"task:{task_id}", version, left)

    @r.post("/tasks/{task_id}/cancel", response_model=Task, tags=["tasks"])
    async def cancel(task_id: str) -> Any:
        return service.cancel(task_id)

    @r.get("/tasks/{task_id}/events", response_model=list[Event], tags=["tasks"])
    async def task_events(task_id: str) -> Any:
        service.task(task_id)
        return service.store.list_events(task_id=task_id)

    @r.get("/tasks/{task_id}/logs", tags=["tasks"])
    async def task_logs(
        task_id: str, after: Annotated[int, Query(ge=0)] = 0, wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0
    ) -> Any:
        """Log lines after ``after``; with ``wait``, long-poll for new lines while the task is not done."""
        version = notifier.version(f"logs:{task_id}")
        task = service.task(task_id)
        lines = service.store.list_logs(task_id, after)
        if not lines and wait > 0 and not task.state.terminal:
            await notifier.wait(f"logs:{task_id}", version, wait)
            lines = service.store.list_logs(task_id, after)
            task = service.task(task_id)
        return {
            "lines": [ln.__dict__ for ln in lines],
            "next": lines[-1].seq if lines else after,
            "done": task.state.terminal,
        }

    @r.get("/events", response_model=list[Event], tags=["events"])
    async def events(after: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=10000)] = 500) -> Any:
        return service.store.list_events(after=after, limit=limit)

    # -- nodes --------------------------------------------------------------------------------------
    @r.get("/nodes", response_model=list[Node], tags=["nodes"])
    async def list_nodes() -> Any:
        return service.store.list_nodes()

    @r.get("/nodes/{name}", response_model=Node, tags=["nodes"])
    async def get_node(name: str) -> Any:
        return service.node(name)

    @r.put("/nodes/{name}", response_model=Node, tags=["agent"])
    async def register(name: str, body: NodeRegistration) -> Any:
        return service.register(name, body)

    @r.post("/nodes/{name}/heartbeat", response_model=HeartbeatReply, tags=["agent"])
    async def heartbeat(name: str, body: Heartbeat) -> Any:
        return service.heartbeat(name, body)

    @r.get("/nodes/{name}/assignments", response_model=Assignments, tags=["agent"])
    async def assignments(
        name: str, index: int | None = None, wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0
    ) -> Any:
        """The attempts this node should run. Long-polls while ``index`` is still current."""
        service.node(name)
        version = await notifier.wait(f"node:{name}", index, wait)
        return Assignments(index=version, assignments=service.assignments(name))

    @r.post("/nodes/{name}/cordon", response_model=Node, tags=["nodes"])
    async def cordon(name: str) -> Any:
        return service.cordon(name, True)

    @r.post("/nodes/{name}/uncordon", response_model=Node, tags=["nodes"])
    async def uncordon(name: str) -> Any:
        return service.cordon(name, False)

    @r.post("/nodes/{name}/drain", response_model=Node, tags=["nodes"])
    async def drain(name: str) -> Any:
        return service.drain(name)

    @r.post("/nodes/{name}/labels", response_model=Node, tags=["nodes"])
    async def labels(name: str, body: LabelChange) -> Any:
        return service.set_labels(name, body)

    @r.post("/nodes/{name}/taints", response_model=Node, tags=["nodes"])
    async def taints(name: str, body: TaintChange) -> Any:
        return service.set_taints(name, body)

    # -- agent reports ------------------------------------------------------------------------------
    @r.post("/tasks/{task_id}/attempts/{token}/status", response_model=Task, tags=["agent"])
    async def report(
        task_id: str,
        token: int,
        body: AttemptReport,
        traceparent: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Any:
        attrs: dict[str, str | int] = {"updraft.task_id": task_id, "updraft.token": token, "updraft.state": body.state}
        with tracing.span("report", traceparent, attrs, kind="server"):
            return service.report(task_id, token, body)

    @r.post("/tasks/{task_id}/attempts/{token}/probes", response_model=Task, tags=["agent"])
    async def probes(task_id: str, token: int, body: ProbeReport) -> Any:
        return service.probe_report(task_id, token, body)

    @r.post("/tasks/{task_id}/attempts/{token}/logs", tags=["agent"])
    async def logs(task_id: str, token: int, body: LogBatch) -> Any:
        return {"accepted": service.append_logs(task_id, token, body)}

    @r.get("/policy", tags=["config"])
    async def policy() -> Any:
        return service.policy.model_dump()

    return r


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UpdraftError)
    async def _updraft(request: Request, exc: UpdraftError) -> JSONResponse:
        return JSONResponse(exc.to_payload(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_payload(exc), status_code=422)
