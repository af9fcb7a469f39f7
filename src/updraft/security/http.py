"""The thin HTTP edge of authentication: a FastAPI dependency per route, and the token routes.

Wiring (control/api.py and control/server.py)::

    guard = Guard(lookup=store.get_token, now=clock.now, bind=service.bind_node_token, enabled=auth_on)
    r = APIRouter(prefix="/v1")

    @r.post("/tasks", dependencies=[guard.require(Action.SUBMIT)], responses=error_responses(401, 403, 409, 422))
    def submit(...): ...

    @r.get("/tasks/{task_id}")
    async def get_task(task_id: str, who: Principal = guard.require(Action.READ_TASK)) -> Any:
        return redact_task(task, who.role)

    @r.put("/nodes/{name}", dependencies=[guard.require(Action.NODE_AGENT, node=path_param("name"))])
    @r.post("/tasks/{task_id}/attempts/{token}/status",
            dependencies=[guard.require(Action.NODE_AGENT, node=service.attempt_node_of)])

    app.include_router(token_router(guard, store, clock.now, error_responses))   # /v1/tokens (token-admin)

Decisions stay in :mod:`updraft.security.tokens`; this module only reads the header, calls them, and raises
the refusal as ``Unauthorized`` (401) or ``Forbidden`` (403) so the shared error handlers render it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from updraft.errors import NotFound
from updraft.model.limits import NodeName
from updraft.security.tokens import (
    Action,
    Decision,
    Role,
    TokenRecord,
    authenticate,
    authorize,
    generate,
    parse_duration,
)

_bearer = HTTPBearer(auto_error=False, description="an updraft token: upd_<id>_<secret> (docs/security.md)")
NodeOf = Callable[[Request], str | Awaitable[str | None] | None]
"""How a route finds the node a node-agent action touches: a path parameter, or the attempt's node."""


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``record`` is None only when authentication is off (loopback, explicit flag)."""

    record: TokenRecord | None

    @property
    def role(self) -> Role:
        return self.record.role if self.record is not None else Role.ADMIN

    @property
    def token_id(self) -> str | None:
        return self.record.id if self.record is not None else None


ANONYMOUS_ADMIN = Principal(None)


def path_param(name: str) -> NodeOf:
    """``node=path_param("name")``: the node is the route's ``{name}``."""

    def node_of(request: Request) -> str | None:
        value = request.path_params.get(name)
        return str(value) if value is not None else None

    return node_of


class Guard:
    """Authenticates the bearer token of a request and authorizes one action (see module doc)."""

    def __init__(
        self,
        lookup: Callable[[str], TokenRecord | None],
        now: Callable[[], float],
        bind: Callable[[TokenRecord, str], TokenRecord] | None = None,
        enabled: bool = True,
    ) -> None:
        """``bind(record, node)`` persists a join token's first binding (after ``may_bind`` agrees) and returns
        the bound record; it raises ``Forbidden`` when the name is held by another identity."""
        self.lookup, self.now, self.bind, self.enabled = lookup, now, bind, enabled

    def principal(self, token: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS_ADMIN
        record, decision = authenticate(token, self.lookup, self.now())
        decision.check()
        return Principal(record)

    def decide(self, who: Principal, action: Action, node: str | None = None) -> Principal:
        """Authorize ``who`` for ``action``; bind a join token on its first use. Raises on refusal."""
        if who.record is None:
            return who
        decision: Decision = authorize(who.record, action, node)
        decision.check()
        if decision.code == "bind" and decision.node is not None:
            if self.bind is None:
                Decision(False, "unbound", "this server does not accept join tokens").check()
            assert self.bind is not None
            return Principal(self.bind(who.record, decision.node))
        return who

    def require(self, action: Action, node: NodeOf | None = None) -> Any:
        """A FastAPI dependency (``Depends``) that returns the :class:`Principal` or raises 401/403."""

        async def dependency(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
        ) -> Principal:
            token = credentials.credentials if credentials is not None else None
            who = self.principal(token)
            target: str | None = None
            if node is not None and who.record is not None and who.record.role is Role.NODE:
                found = node(request)
                target = await found if isinstance(found, Awaitable) else found
            who = self.decide(who, action, target)
            request.state.principal = who
            return who

        return Depends(dependency)


# -- token administration (/v1/tokens) ----------------------------------------------------------------------
class TokenStore(Protocol):
    """What the store keeps for tokens (records only, never a token)."""

    def get_token(self, token_id: str) -> TokenRecord | None: ...

    def put_token(self, record: TokenRecord) -> None: ...

    def list_tokens(self) -> list[TokenRecord]: ...


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    node: NodeName | None = Field(default=None, description="node tokens: the node it acts as (none: a join token)")
    ttl: str | None = Field(default=None, max_length=20, description="e.g. 3600, 90m, 12h, 30d, 2w (none: no expiry)")
    description: str = Field(default="", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")


class TokenView(BaseModel):
    """A token record as listed: never its hash."""

    id: str
    role: Role
    node: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    description: str


class TokenCreated(BaseModel):
    token: str = Field(description="shown once; the server keeps only its hash")
    record: TokenView


def _view(record: TokenRecord) -> TokenView:
    return TokenView.model_validate(record.public())


def token_router(
    guard: Guard,
    tokens: TokenStore,
    now: Callable[[], float],
    error_responses: Callable[..., dict[int | str, dict[str, Any]]] = lambda *statuses: {},
) -> APIRouter:
    """``POST /v1/tokens`` (create), ``GET /v1/tokens`` (list), ``POST /v1/tokens/{id}/revoke`` — admin only.

    Pass ``control.http_errors.error_responses`` so the OpenAPI documents the error statuses.
    """
    r = APIRouter(prefix="/v1/tokens", tags=["tokens"], dependencies=[guard.require(Action.TOKEN_ADMIN)])

    @r.post("", status_code=201, response_model=TokenCreated, responses=error_responses(401, 403, 422))
    def create(body: TokenCreate) -> Any:
        ttl = parse_duration(body.ttl) if body.ttl is not None else None
        token, record = generate(body.role, now(), node=body.node, ttl=ttl, description=body.description)
        tokens.put_token(record)
        return TokenCreated(token=token, record=_view(record))

    @r.get("", response_model=list[TokenView], responses=error_responses(401, 403))
    def list_all() -> Any:
        return [_view(t) for t in tokens.list_tokens()]

    @r.post("/{token_id}/revoke", response_model=TokenView, responses=error_responses(401, 403, 404, 422))
    def revoke(token_id: Annotated[str, Depends(_token_id)]) -> Any:
        record = tokens.get_token(token_id)
        if record is None:
            raise NotFound(f"no token {token_id}", token_id=token_id)
        if record.revoked_at is None:
            record = record.model_copy(update={"revoked_at": now()})
            tokens.put_token(record)
        return _view(record)

    return r


def _token_id(token_id: str) -> str:
    from updraft.errors import ValidationError

    if len(token_id) != 12 or any(c not in "0123456789abcdef" for c in token_id):
        raise ValidationError("token_id: 12 hex digits (the id `updraft token list` shows)", field="token_id")
    return token_id
