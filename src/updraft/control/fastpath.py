"""The requests a fleet sends most, answered before the framework: heartbeats (below), submits, the agents'
assignment long-polls and ``/health`` (see their classes). Each uses the same guard, models and service calls
as its route, hands anything unusual to the route untouched, and is documented in the OpenAPI by that route.

A fleet of N nodes sends N heartbeats a second. Through FastAPI each one pays for routing over every route,
dependency injection and response validation — most of its CPU, on the one event loop that also answers
everything else. This middleware answers ``POST /v1/nodes/{name}/heartbeat`` itself with the same pieces the
route uses: the same :class:`Guard` (a node token acts only as its own node), the same ``Heartbeat`` model,
the same ``service.heartbeat``. Anything unusual — a body over the limit, a name outside the grammar, a
refused credential, an invalid body — is handed, untouched, to the normal route, which answers it exactly as
every other route does. The OpenAPI still documents the route.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from types import SimpleNamespace
from urllib.parse import parse_qsl, unquote

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError
from starlette.types import ASGIApp, Receive, Scope, Send

from updraft.control.api import MAX_WAIT
from updraft.control.edge import read_body, replaying
from updraft.control.http_errors import error_response
from updraft.control.service import ControlService
from updraft.errors import UpdraftError
from updraft.model import TaskSpec
from updraft.model.api import Heartbeat
from updraft.model.limits import INT64_MAX, NodeName
from updraft.observe.tracing import Tracing
from updraft.security.http import Guard
from updraft.security.redaction import redact_task
from updraft.security.tokens import Action, Role

_PATH = re.compile(r"^/v1/nodes/([^/]+)/heartbeat$")
_POLL = re.compile(r"^/v1/nodes/([^/]+)/assignments$")
_POLL_ROUTE = SimpleNamespace(path="/v1/nodes/{name}/assignments")
_DECIMAL = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")
_NAME: TypeAdapter[str] = TypeAdapter(NodeName)
_ROUTE = SimpleNamespace(path="/v1/nodes/{name}/heartbeat")  # what RequestMetrics labels the request with


class HealthFastPath:
    """``GET /health`` before the framework: what a liveness probe asks most often, answered in microseconds
    with the route's body (``problems()`` is the route's own check)."""

    _ROUTE = SimpleNamespace(path="/health")

    def __init__(self, app: ASGIApp, problems: Callable[[], dict[str, str]]) -> None:
        self.app, self.problems = app, problems

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("path") != "/health":
            await self.app(scope, receive, send)
            return
        dead = self.problems()
        found = {"status": "failing", "problems": dead} if dead else {"status": "ok"}
        body = json.dumps(found, separators=(",", ":")).encode()
        scope["route"] = self._ROUTE
        await _reply(send, 503 if dead else 200, body)


async def _reply(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class HeartbeatFastPath:
    def __init__(self, app: ASGIApp, service: ControlService, guard: Guard, limit: int) -> None:
        self.app, self.service, self.guard, self.limit = app, service, guard, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.match(scope.get("path", "")) if scope["type"] == "http" and scope["method"] == "POST" else None
        headers = dict(scope.get("headers", [])) if match else {}
        declared = headers.get(b"content-length", b"")
        if match is None or not declared.isdigit() or int(declared) > self.limit:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        reply = self._answer(unquote(match.group(1)), headers.get(b"authorization"), body)
        if reply is None:  # the normal route answers (and words the error as every route does)
            await self.app(scope, replaying(body, receive), send)
            return
        scope["route"] = _ROUTE
        await _reply(send, 200, reply)

    def _answer(self, name: str, authorization: bytes | None, body: bytes) -> bytes | None:
        try:
            _as_node_agent(self.guard, name, authorization)
            beat = Heartbeat.model_validate_json(body)
        except (UpdraftError, PydanticError, UnicodeDecodeError, ValueError):
            return None
        return self.service.heartbeat(name, beat).model_dump_json().encode()


def _as_node_agent(guard: Guard, name: str, authorization: bytes | None) -> None:
    """The route's check for agent traffic: a valid node name, and a credential that may act as the agent of
    ``name`` (a node token only as its own node). Raises as the route's guard would."""
    _NAME.validate_python(name)
    token = authorization.decode("latin-1").removeprefix("Bearer ").strip() if authorization else None
    who = guard.principal(token or None)
    guard.decide(who, Action.NODE_AGENT, name if who.record is not None and who.record.role is Role.NODE else None)


_TASKS_PATH = ("/v1/tasks", "/v1/tasks/")
_SUBMIT_ROUTE = SimpleNamespace(path="/v1/tasks")


class SubmitFastPath:
    """``POST /v1/tasks`` without the framework, committed from the event loop (no worker thread per submit).

    Through FastAPI a submit is validated twice (the request model, then the spec), resolves its dependencies
    and waits for its commit in a worker thread that then fights the event loop for the interpreter lock. Here
    the spec is validated once from the body's bytes with the route's model, the caller is authorized by the
    same :class:`Guard`, and :meth:`ControlService.submit_async` awaits the writer's group commit. Errors of
    the service are answered with the API's error payload; anything else unusual (no bearer token, a body
    that does not validate or carries ``idempotency_key``, a body over the limit) goes, untouched, to the
    route, which answers it as every route does. Sits inside admission control and the body limit.
    """

    def __init__(self, app: ASGIApp, service: ControlService, guard: Guard, tracing: Tracing, limit: int) -> None:
        self.app, self.service, self.guard, self.tracing, self.limit = app, service, guard, tracing, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mine = scope["type"] == "http" and scope["method"] == "POST" and scope.get("path") in _TASKS_PATH
        headers = dict(scope.get("headers", [])) if mine else {}
        declared = headers.get(b"content-length", b"")
        authorization = headers.get(b"authorization", b"")
        if not mine or not declared.isdigit() or int(declared) > self.limit or not authorization.startswith(b"Bearer "):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        try:
            who = self.guard.decide(self.guard.principal(authorization[7:].decode("latin-1").strip()), Action.SUBMIT)
            spec = TaskSpec.model_validate_json(body)
        except (UpdraftError, PydanticError, UnicodeDecodeError, ValueError):
            await self.app(scope, replaying(body, receive), send)  # the route words the refusal
            return
        key = headers.get(b"idempotency-key")
        parent = headers.get(b"traceparent")
        scope["route"] = _SUBMIT_ROUTE
        try:
            with self.tracing.span("submit", parent.decode("latin-1") if parent else None,
                                   {"updraft.image": spec.image}, kind="server") as span:  # fmt: skip
                task, created = await self.service.submit_async(spec, _key(key), traceparent=span.traceparent)
                span.set("updraft.task_id", task.id)
        except UpdraftError as err:
            await error_response(err)(scope, receive, send)
            return
        await _reply(send, 201 if created else 200, redact_task(task, who.role).model_dump_json().encode())


def _key(raw: bytes | None) -> str | None:
    """The ``Idempotency-Key`` header as the route reads it (an empty one is none)."""
    return raw.decode("latin-1") or None if raw else None


class AssignmentsFastPath:
    """``GET /v1/nodes/{name}/assignments`` (the agent's long-poll) without the framework and, when every
    attempt's JSON is cached (the scheduler caches it as it places), without a worker thread. Same credentials
    (a node token polls only its own node), same query rules (``index`` 0…2⁶³−1, ``wait`` 0…60 s); anything
    unusual goes, untouched, to the route."""

    def __init__(self, app: ASGIApp, service: ControlService, guard: Guard) -> None:
        self.app, self.service, self.guard = app, service, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _POLL.match(scope.get("path", "")) if scope["type"] == "http" and scope["method"] == "GET" else None
        authorization = dict(scope.get("headers", [])).get(b"authorization", b"") if match else b""
        asked = _poll_query(scope.get("query_string", b"")) if match and authorization.startswith(b"Bearer ") else None
        if match is None or asked is None:
            await self.app(scope, receive, send)
            return
        name = unquote(match.group(1))
        try:
            _as_node_agent(self.guard, name, authorization)
            self.service.node(name)
        except (UpdraftError, PydanticError, UnicodeDecodeError, ValueError):
            await self.app(scope, receive, send)
            return
        index, wait = asked
        version = await self.service.notifier.wait(f"node:{name}", index, wait)
        try:
            body = self.service.assignments_cached(name, version)
            if body is None:
                body = await asyncio.to_thread(self.service.assignments_json, name, version)
        except UpdraftError as err:  # the node was removed while the poll waited
            await error_response(err)(scope, receive, send)
            return
        scope["route"] = _POLL_ROUTE
        await _reply(send, 200, body)


def _poll_query(raw: bytes) -> tuple[int | None, float] | None:
    """(index, wait) when the query holds only those, each at most once and in range; None otherwise."""
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=bool(raw))
    except ValueError:
        return None
    given = dict(pairs)
    if len(given) != len(pairs) or not set(given) <= {"index", "wait"}:
        return None
    index: int | None = None
    wait = 0.0
    if "index" in given:
        if not given["index"].isascii() or not given["index"].isdigit() or int(given["index"]) > INT64_MAX:
            return None
        index = int(given["index"])
    if "wait" in given and (not _DECIMAL.match(given["wait"]) or not 0 <= (wait := float(given["wait"])) <= MAX_WAIT):
        return None
    return index, wait
