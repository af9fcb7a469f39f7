"""HTTP routes, thin: authorize, parse, call the service, render. Errors become ``{code, message, details}``.

Which routes run where (issue 13, "an event loop that never blocks"): the ones answered from memory —
heartbeats, assignments' long-poll, a pending task, probes — are ``async`` and never touch the store on the
loop; every route that reads the store or waits for a commit is a plain ``def``, which FastAPI runs in its
worker threads, so the event loop keeps answering heartbeats while submits queue for the writer.

Who may call what (issue 15): every route names its action for the :class:`Guard` (roles in
``security/tokens.py``); agent routes also name the node they act for — the path's ``{name}``, or the node of
the attempt a report is about — so a node token acts only as its own node. Tasks are returned with secret env
values redacted for roles that may not read secrets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter

from updraft.control.http_errors import error_responses
from updraft.control.service import ControlService
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
from updraft.model.limits import INT64_MAX, NodeName, TaskId
from updraft.observe.tracing import NOOP, Tracing
from updraft.security.http import Guard, Principal, path_param
from updraft.security.redaction import redact_task, redact_tasks
from updraft.security.tokens import Action

MAX_WAIT = 60.0
_TASKS = TypeAdapter(list[Task])
_NODES = TypeAdapter(list[Node])
_EVENTS = TypeAdapter(list[Event])
E = error_responses
TokenParam = Annotated[int, Path(ge=0, le=INT64_MAX, description="the attempt's fencing token")]


def _json(value: BaseModel | Sequence[Any], adapter: TypeAdapter[Any] | None = None, status: int = 200) -> Response:
    """Serialise once with pydantic (FastAPI would validate the value again against the response model)."""
    body = adapter.dump_json(value) if adapter is not None else value.model_dump_json()  # type: ignore[union-attr]
    return Response(body, status_code=status, media_type="application/json")


def build_router(service: ControlService, guard: Guard, tracing: Tracing = NOOP) -> APIRouter:
    r = APIRouter(prefix="/v1")
    notifier = service.notifier
    node_of_path = path_param("name")

    async def node_of_attempt(request: Request) -> str | None:
        """The node that runs (or ran) the attempt a report names, so only that node may report on it."""
        task_id, token = request.path_params.get("task_id", ""), request.path_params.get("token", "")
        live = service.state.live(task_id)
        if live is not None and str(live.token) == token:
            return live.node
        task = await asyncio.to_thread(service.store.get_task, task_id)  # a stale or finished attempt
        found = [a.node for a in (task.attempts if task else []) if str(a.token) == token]
        return found[0] if found else None

    READ = guard.require(Action.READ_TASK)
    AGENT = guard.require(Action.NODE_AGENT, node=node_of_path)
    REPORT = guard.require(Action.NODE_AGENT, node=node_of_attempt)
    NODE_ADMIN = guard.require(Action.NODE_ADMIN)
    READ_NODE = guard.require(Action.READ_NODE)

    async def task_now(task_id: TaskId) -> Task:
        """From memory while live; a finished task is read from the store in a worker thread."""
        live = service.live_task(task_id)
        return live if live is not None else await asyncio.to_thread(service.task, task_id)

    # -- tasks ------------------------------------------------------------------------------------------
    @r.post("/tasks", status_code=201, response_model=Task, tags=["tasks"],
            responses={200: {"model": Task, "description": "the task an Idempotency-Key already created"},
                       **E(401, 403, 409, 413, 422, 429)})
    def submit(
        body: SubmitRequest,
        who: Principal = guard.require(Action.SUBMIT),
        idempotency_key: Annotated[str | None, Header()] = None,
        traceparent: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Any:
        """Create a task (201), or return the task an ``Idempotency-Key`` already created (200)."""
        key = idempotency_key or body.idempotency_key
        spec = TaskSpec.model_validate(body.model_dump(exclude={"idempotency_key"}, exclude_unset=True))
        with tracing.span("submit", traceparent, {"updraft.image": spec.image}, kind="server") as span:
            task, created = service.submit(spec, key, traceparent=span.traceparent)
            span.set("updraft.task_id", task.id)
        return _json(redact_task(task, who.role), status=201 if created else 200)

    @r.get("/tasks", response_model=list[Task], tags=["tasks"], responses=E(401, 403, 422, 429))
    def list_tasks(
        who: Principal = READ,
        state: TaskState | None = None,
        node: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 200,
    ) -> Any:
        tasks = service.store.list_tasks([state] if state else None, node=node, limit=limit)
        return _json(redact_tasks(tasks, who.role), _TASKS)

    @r.get("/tasks/{task_id}", response_model=Task, tags=["tasks"], responses=E(401, 403, 404, 422))
    async def get_task(task_id: TaskId, who: Principal = READ) -> Any:
        return _json(redact_task(await task_now(task_id), who.role))

    @r.get("/tasks/{task_id}/wait", response_model=Task, tags=["tasks"], responses=E(401, 403, 404, 422))
    async def wait_task(
        task_id: TaskId, timeout: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 30.0, who: Principal = READ
    ) -> Any:
        """Long-poll until the task is terminal or ``timeout`` passes; returns the task either way."""
        deadline = service.clock.monotonic() + timeout
        while True:
            version = notifier.version(f"task:{task_id}")
            task = await task_now(task_id)
            left = deadline - service.clock.monotonic()
            if task.state.terminal or left <= 0:
                return _json(redact_task(task, who.role))
            await notifier.wait(f"task:{task_id}", version, left)

    @r.post("/tasks/{task_id}/cancel", response_model=Task, tags=["tasks"], responses=E(401, 403, 404, 409, 422))
    def cancel(task_id: TaskId, who: Principal = guard.require(Action.CANCEL)) -> Any:
        return _json(redact_task(service.cancel(task_id), who.role))

    @r.get("/tasks/{task_id}/events", response_model=list[Event], tags=["tasks"], dependencies=[READ],
           responses=E(401, 403, 404, 422, 429))
    def task_events(task_id: TaskId) -> Any:
        service.task(task_id)
        return _json(service.store.list_events(task_id=task_id), _EVENTS)

    @r.get("/tasks/{task_id}/logs", tags=["tasks"], dependencies=[READ], responses=E(401, 403, 404, 422))
    async def task_logs(
        task_id: TaskId, after: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0, wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0
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

    @r.get("/events", response_model=list[Event], tags=["events"], dependencies=[READ_NODE],
           responses=E(401, 403, 422, 429))
    def events(after: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0, limit: Annotated[int, Query(ge=1, le=10000)] = 500) -> Any:
        return _json(service.store.list_events(after=after, limit=limit), _EVENTS)

    # -- nodes --------------------------------------------------------------------------------------
    @r.get("/nodes", response_model=list[Node], tags=["nodes"], dependencies=[READ_NODE], responses=E(401, 403))
    async def list_nodes() -> Any:
        return _json(sorted(service.state.nodes.values(), key=lambda n: n.name), _NODES)

    @r.get("/nodes/{name}", response_model=Node, tags=["nodes"], dependencies=[READ_NODE],
           responses=E(401, 403, 404, 422))
    async def get_node(name: NodeName) -> Any:
        return _json(service.node(name))

    @r.put("/nodes/{name}", response_model=Node, tags=["agent"], dependencies=[AGENT],
           responses=E(401, 403, 409, 422))
    def register(name: NodeName, body: NodeRegistration) -> Any:
        return _json(service.register(name, body))

    @r.post("/nodes/{name}/heartbeat", response_model=HeartbeatReply, tags=["agent"], dependencies=[AGENT],
            responses=E(401, 403, 422))
    async def heartbeat(name: NodeName, body: Heartbeat) -> Any:
        return _json(service.heartbeat(name, body))

    @r.get("/nodes/{name}/assignments", response_model=Assignments, tags=["agent"], dependencies=[AGENT],
           responses=E(401, 403, 404, 422))
    async def assignments(
        name: NodeName, index: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None, wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0
    ) -> Any:
        """The attempts this node should run. Long-polls while ``index`` is still current."""
        service.node(name)
        version = await notifier.wait(f"node:{name}", index, wait)
        body = await asyncio.to_thread(service.assignments_json, name, version)
        return Response(body, media_type="application/json")

    @r.post("/nodes/{name}/cordon", response_model=Node, tags=["nodes"], dependencies=[NODE_ADMIN],
            responses=E(401, 403, 404, 409, 422))
    def cordon(name: NodeName) -> Any:
        return _json(service.cordon(name, True))

    @r.post("/nodes/{name}/uncordon", response_model=Node, tags=["nodes"], dependencies=[NODE_ADMIN],
            responses=E(401, 403, 404, 409, 422))
    def uncordon(name: NodeName) -> Any:
        return _json(service.cordon(name, False))

    @r.post("/nodes/{name}/drain", response_model=Node, tags=["nodes"], dependencies=[NODE_ADMIN],
            responses=E(401, 403, 404, 409, 422))
    def drain(name: NodeName) -> Any:
        return _json(service.drain(name))

    @r.post("/nodes/{name}/labels", response_model=Node, tags=["nodes"], dependencies=[NODE_ADMIN],
            responses=E(401, 403, 404, 409, 422))
    def labels(name: NodeName, body: LabelChange) -> Any:
        return _json(service.set_labels(name, body))

    @r.post("/nodes/{name}/taints", response_model=Node, tags=["nodes"], dependencies=[NODE_ADMIN],
            responses=E(401, 403, 404, 409, 422))
    def taints(name: NodeName, body: TaintChange) -> Any:
        return _json(service.set_taints(name, body))

    # -- agent reports ------------------------------------------------------------------------------
    @r.post("/tasks/{task_id}/attempts/{token}/status", response_model=Task, tags=["agent"], dependencies=[REPORT],
            responses=E(401, 403, 404, 409, 422))
    def report(
        task_id: TaskId,
        token: TokenParam,
        body: AttemptReport,
        traceparent: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Any:
        attrs: dict[str, str | int] = {"updraft.task_id": task_id, "updraft.token": token, "updraft.state": body.state}
        with tracing.span("report", traceparent, attrs, kind="server"):
            return _json(redact_task(service.report(task_id, token, body), None))

    @r.post("/tasks/{task_id}/attempts/{token}/probes", response_model=Task, tags=["agent"], dependencies=[REPORT],
            responses=E(401, 403, 404, 409, 422))
    def probes(task_id: TaskId, token: TokenParam, body: ProbeReport) -> Any:
        return _json(redact_task(service.probe_report(task_id, token, body), None))

    @r.post("/tasks/{task_id}/attempts/{token}/logs", tags=["agent"], dependencies=[REPORT],
            responses=E(401, 403, 404, 409, 422))
    def logs(task_id: TaskId, token: TokenParam, body: LogBatch) -> Any:
        return {"accepted": service.append_logs(task_id, token, body)}

    @r.get("/policy", tags=["config"], dependencies=[READ_NODE], responses=E(401, 403))
    async def policy() -> Any:
        return service.policy.model_dump()

    return r
