"""The Python SDK: ``Client`` and ``AsyncClient`` over the HTTP API.

Errors are the project's own classes, rebuilt from the API's error code (``updraft.errors``); the transport is
the resilient ``net`` client (endpoint failover, RTT-adaptive timeouts, safe retries, and a server's 429 or
503 ``Retry-After`` honoured before retrying). Every submit carries an idempotency key, kept across its retries,
so a retried submit never creates a second task. ``retry=`` sets the policy (budget, backoff, cap).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from updraft.net import AsyncHttpClient, HttpClient, RetryPolicy

if TYPE_CHECKING:
    from updraft.model import Event, Node, Task, TaskSpec

DEFAULT_SERVER = "http://127.0.0.1:8470"
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
"""The API's terminal task states, by value (``updraft.model.TERMINAL``)."""

# The models are imported on first use: building the pydantic models is most of the SDK's import time, and
# ``updraft run`` (``submit_json``/``wait_json``) never needs them.


def _task(data: Any) -> Task:
    from updraft.model import Task

    return Task.model_validate(data)


def _node(data: Any) -> Node:
    from updraft.model import Node

    return Node.model_validate(data)


def _event(data: Any) -> Event:
    from updraft.model import Event

    return Event.model_validate(data)


def plain_http_transport(server: str) -> httpx.HTTPTransport:
    """The transport for ``server``, verifying TLS against ``UPDRAFT_CA`` when set (see ``updraft.net.tls``)."""
    from updraft.net import tls

    return tls.transport(server, *tls.from_env())


def _spec_body(spec: TaskSpec | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    if spec is None or isinstance(spec, Mapping):
        base = dict(spec or {})
    else:  # a TaskSpec
        base = spec.model_dump(mode="json", exclude_defaults=True)
    return {**base, **{k: v for k, v in fields.items() if v is not None}}


class Client:
    """Synchronous client. ``transport`` lets tests run against the ASGI app in-process."""

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        http: HttpClient | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if http is None and transport is None:
            transport = plain_http_transport(server)
        self.http = http or HttpClient(server, token=token, transport=transport, retry=retry)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # tasks
    def submit(
        self, spec: TaskSpec | Mapping[str, Any] | None = None, *, idempotency_key: str | None = None, **fields: Any
    ) -> Task:
        """Submit a task: a TaskSpec, a dict, or keyword fields (``image=…, command=[…]``)."""
        return _task(self.submit_json(spec, idempotency_key=idempotency_key, **fields))

    def submit_json(
        self, spec: TaskSpec | Mapping[str, Any] | None = None, *, idempotency_key: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """``submit``, returning the task as the API's JSON document rather than a ``Task``."""
        key = idempotency_key or uuid.uuid4().hex
        resp = self.http.post(
            "/v1/tasks", json=_spec_body(spec, fields), headers={"Idempotency-Key": key}, idempotent=True
        )
        body: dict[str, Any] = resp.json()
        return body

    def get(self, task_id: str) -> Task:
        return _task(self.http.get(f"/v1/tasks/{task_id}").json())

    def list(self, state: str | None = None, node: str | None = None, limit: int = 200) -> builtins.list[Task]:
        params = {k: v for k, v in {"state": state, "node": node, "limit": limit}.items() if v is not None}
        return [_task(t) for t in self.http.get("/v1/tasks", params=params).json()]

    def wait(self, task_id: str, timeout: float | None = None, poll: float = 25.0) -> Task:
        """Block until the task is terminal (or ``timeout`` seconds pass) and return it."""
        return _task(self.wait_json(task_id, timeout, poll))

    def wait_json(self, task_id: str, timeout: float | None = None, poll: float = 25.0) -> dict[str, Any]:
        """``wait``, returning the task as the API's JSON document rather than a ``Task``."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            task: dict[str, Any] = self.http.get(f"/v1/tasks/{task_id}/wait", params={"timeout": left}, wait=left).json()
            if task["state"] in TERMINAL_STATES or (deadline is not None and time.monotonic() >= deadline):
                return task

    def run(
        self, spec: TaskSpec | Mapping[str, Any] | None = None, timeout: float | None = None, **fields: Any
    ) -> Task:
        """Submit and wait for the result."""
        return self.wait(self.submit(spec, **fields).id, timeout)

    def cancel(self, task_id: str) -> Task:
        return _task(self.http.post(f"/v1/tasks/{task_id}/cancel").json())

    def events(self, task_id: str | None = None, after: int = 0) -> builtins.list[Event]:
        path = f"/v1/tasks/{task_id}/events" if task_id else "/v1/events"
        params = {} if task_id else {"after": after}
        return [_event(e) for e in self.http.get(path, params=params).json()]

    def logs(self, task_id: str, follow: bool = False, after: int = 0) -> Iterator[dict[str, Any]]:
        """Log lines as dicts (``stream``, ``at``, ``data``); with ``follow``, until the task is done."""
        while True:
            wait = 20.0 if follow else 0.0
            page = self.http.get(f"/v1/tasks/{task_id}/logs", params={"after": after, "wait": wait}, wait=wait).json()
            yield from page["lines"]
            after = page["next"]
            if not follow or (page["done"] and not page["lines"]):
                return

    # nodes
    def nodes(self) -> builtins.list[Node]:
        return [_node(n) for n in self.http.get("/v1/nodes").json()]

    def node(self, name: str) -> Node:
        return _node(self.http.get(f"/v1/nodes/{name}").json())

    def _node_op(self, name: str, op: str, body: Any = None) -> Node:
        return _node(self.http.post(f"/v1/nodes/{name}/{op}", json=body, idempotent=True).json())

    def cordon(self, name: str) -> Node:
        return self._node_op(name, "cordon")

    def uncordon(self, name: str) -> Node:
        return self._node_op(name, "uncordon")

    def drain(self, name: str) -> Node:
        return self._node_op(name, "drain")

    def label(self, name: str, set: Mapping[str, str] | None = None, remove: builtins.list[str] | None = None) -> Node:
        return self._node_op(name, "labels", {"set": dict(set or {}), "remove": list(remove or [])})

    def taint(self, name: str, add: builtins.list[str] | None = None, remove: builtins.list[str] | None = None) -> Node:
        from updraft.model import Taint

        taints = [Taint.parse(t).model_dump(mode="json") for t in add or []]
        return self._node_op(name, "taints", {"add": taints, "remove": list(remove or [])})


class AsyncClient:
    """The same operations for asyncio code."""

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if transport is None:
            from updraft.net import tls

            transport = tls.async_transport(server, *tls.from_env())
        self.http = AsyncHttpClient(server, token=token, transport=transport, retry=retry)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def submit(
        self, spec: TaskSpec | Mapping[str, Any] | None = None, *, idempotency_key: str | None = None, **fields: Any
    ) -> Task:
        key = idempotency_key or uuid.uuid4().hex
        resp = await self.http.post(
            "/v1/tasks", json=_spec_body(spec, fields), headers={"Idempotency-Key": key}, idempotent=True
        )
        return _task(resp.json())

    async def get(self, task_id: str) -> Task:
        return _task((await self.http.get(f"/v1/tasks/{task_id}")).json())

    async def list(self, state: str | None = None, node: str | None = None, limit: int = 200) -> builtins.list[Task]:
        params = {k: v for k, v in {"state": state, "node": node, "limit": limit}.items() if v is not None}
        return [_task(t) for t in (await self.http.get("/v1/tasks", params=params)).json()]

    async def wait(self, task_id: str, poll: float = 25.0) -> Task:
        while True:
            resp = await self.http.get(f"/v1/tasks/{task_id}/wait", params={"timeout": poll}, wait=poll)
            task = _task(resp.json())
            if task.state.terminal:
                return task

    async def run(self, spec: TaskSpec | Mapping[str, Any] | None = None, **fields: Any) -> Task:
        return await self.wait((await self.submit(spec, **fields)).id)

    async def cancel(self, task_id: str) -> Task:
        return _task((await self.http.post(f"/v1/tasks/{task_id}/cancel")).json())

    async def events(self, task_id: str) -> builtins.list[Event]:
        return [_event(e) for e in (await self.http.get(f"/v1/tasks/{task_id}/events")).json()]

    async def nodes(self) -> builtins.list[Node]:
        return [_node(n) for n in (await self.http.get("/v1/nodes")).json()]
