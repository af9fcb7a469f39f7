"""Heartbeats without the framework: the most frequent request, answered in a few dozen microseconds.

A fleet of N nodes sends N heartbeats a second. Through FastAPI each one pays for routing over every route,
dependency injection and response validation — most of its CPU, on the one event loop that also answers
everything else. This middleware answers ``POST /v1/nodes/{name}/heartbeat`` itself with the same pieces the
route uses: the same :class:`Guard` (a node token acts only as its own node), the same ``Heartbeat`` model,
the same ``service.heartbeat``. Anything unusual — a body over the limit, a name outside the grammar, a
refused credential, an invalid body — is handed, untouched, to the normal route, which answers it exactly as
every other route does. The OpenAPI still documents the route.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from urllib.parse import unquote

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError
from starlette.types import ASGIApp, Receive, Scope, Send

from updraft.control.edge import read_body, replaying
from updraft.control.service import ControlService
from updraft.errors import UpdraftError
from updraft.model.api import Heartbeat
from updraft.model.limits import NodeName
from updraft.security.http import Guard
from updraft.security.tokens import Action, Role

_PATH = re.compile(r"^/v1/nodes/([^/]+)/heartbeat$")
_NAME: TypeAdapter[str] = TypeAdapter(NodeName)
_ROUTE = SimpleNamespace(path="/v1/nodes/{name}/heartbeat")  # what RequestMetrics labels the request with


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
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode())]})
        await send({"type": "http.response.body", "body": reply})

    def _answer(self, name: str, authorization: bytes | None, body: bytes) -> bytes | None:
        try:
            _NAME.validate_python(name)
            token = authorization.decode("latin-1").removeprefix("Bearer ").strip() if authorization else None
            who = self.guard.principal(token or None)
            node = name if who.record is not None and who.record.role is Role.NODE else None
            self.guard.decide(who, Action.NODE_AGENT, node)
            beat = Heartbeat.model_validate_json(body)
        except (UpdraftError, PydanticError, UnicodeDecodeError, ValueError):
            return None
        return self.service.heartbeat(name, beat).model_dump_json().encode()
