"""The HTTP edge of authentication (security/http.py) on a small FastAPI app, as an attacker would use it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from updraft.control.http_errors import error_responses, install_error_handlers
from updraft.errors import Forbidden
from updraft.security import Action, Role, TokenRecord, generate, may_bind
from updraft.security.http import Guard, Principal, path_param, token_router

NOW = 1_000_000.0


class Tokens:
    def __init__(self) -> None:
        self.records: dict[str, TokenRecord] = {}

    def get_token(self, token_id: str) -> TokenRecord | None:
        return self.records.get(token_id)

    def put_token(self, record: TokenRecord) -> None:
        self.records[record.id] = record

    def list_tokens(self) -> list[TokenRecord]:
        return list(self.records.values())

    def bind(self, record: TokenRecord, node: str) -> TokenRecord:
        decision = may_bind(record, node, self.list_tokens(), NOW)
        decision.check()
        bound = record.model_copy(update={"node": node})
        self.put_token(bound)
        return bound

    def new(self, role: Role, node: str | None = None, ttl: float | None = None) -> str:
        token, record = generate(role, NOW, node=node, ttl=ttl)
        self.put_token(record)
        return token


class Clock:
    now = NOW


def make(tokens: Tokens, clock: Clock, enabled: bool = True) -> TestClient:
    guard = Guard(tokens.get_token, lambda: clock.now, bind=tokens.bind, enabled=enabled)
    app = FastAPI()
    install_error_handlers(app)
    r = APIRouter(prefix="/v1")
    attempt_nodes = {("t1", 1): "a"}

    @r.post("/tasks", dependencies=[guard.require(Action.SUBMIT)], responses=error_responses(401, 403))
    def submit() -> dict[str, Any]:
        return {"ok": True}

    @r.get("/tasks/t1")
    def get(who: Principal = guard.require(Action.READ_TASK)) -> dict[str, Any]:
        return {"role": who.role}

    @r.put("/nodes/{name}", dependencies=[guard.require(Action.NODE_AGENT, node=path_param("name"))])
    def register(name: str) -> dict[str, Any]:
        return {"name": name}

    @r.post("/nodes/{name}/drain", dependencies=[guard.require(Action.NODE_ADMIN)])
    def drain(name: str) -> dict[str, Any]:
        return {"name": name}

    async def attempt_node(request: Any) -> str | None:
        return attempt_nodes.get((request.path_params["task_id"], int(request.path_params["token"])))

    @r.post("/tasks/{task_id}/attempts/{token}/status",
            dependencies=[guard.require(Action.NODE_AGENT, node=attempt_node)])
    def report(task_id: str, token: int) -> dict[str, Any]:
        return {"task": task_id}

    app.include_router(r)
    app.include_router(token_router(guard, tokens, lambda: clock.now, error_responses))
    return TestClient(app, raise_server_exceptions=False)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_no_credential_is_401_with_the_error_shape(tokens: Tokens, clock: Clock) -> None:
    c = make(tokens, clock)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dTpw"}):
        resp = c.post("/v1/tasks", headers=headers)
        assert resp.status_code == 401 and resp.json()["code"] == "unauthorized"


def test_a_submitter_cannot_register_a_node_or_drain_one(tokens: Tokens, clock: Clock) -> None:
    c, sub = make(tokens, clock), tokens.new(Role.SUBMITTER)
    assert c.post("/v1/tasks", headers=auth(sub)).status_code == 200
    assert c.get("/v1/tasks/t1", headers=auth(sub)).json() == {"role": "submitter"}
    for call in (lambda: c.put("/v1/nodes/evil", headers=auth(sub)),
                 lambda: c.post("/v1/nodes/a/drain", headers=auth(sub))):
        resp = call()
        assert resp.status_code == 403 and resp.json()["code"] == "forbidden"


def test_node_a_cannot_act_as_b(tokens: Tokens, clock: Clock) -> None:
    c, a = make(tokens, clock), tokens.new(Role.NODE, node="a")
    assert c.put("/v1/nodes/a", headers=auth(a)).status_code == 200
    assert c.put("/v1/nodes/b", headers=auth(a)).status_code == 403
    assert c.post("/v1/tasks/t1/attempts/1/status", headers=auth(a)).status_code == 200  # its own attempt
    b = tokens.new(Role.NODE, node="b")
    resp = c.post("/v1/tasks/t1/attempts/1/status", headers=auth(b))  # a's attempt, reported by b
    assert resp.status_code == 403 and resp.json()["details"]["reason"] == "wrong_node"
    assert c.post("/v1/tasks/t9/attempts/1/status", headers=auth(b)).status_code == 403  # no such attempt
    assert c.post("/v1/tasks", headers=auth(a)).status_code == 403


def test_a_join_token_binds_to_its_first_name_and_cannot_take_a_held_one(tokens: Tokens, clock: Clock) -> None:
    c = make(tokens, clock)
    tokens.new(Role.NODE, node="a")
    join = tokens.new(Role.NODE)
    assert c.put("/v1/nodes/a", headers=auth(join)).status_code == 403  # held by another identity
    assert c.put("/v1/nodes/c", headers=auth(join)).status_code == 200
    assert c.put("/v1/nodes/d", headers=auth(join)).status_code == 403  # bound to c from now on
    assert c.put("/v1/nodes/c", headers=auth(join)).status_code == 200


def test_expired_and_revoked_tokens_are_401(tokens: Tokens, clock: Clock) -> None:
    c, admin = make(tokens, clock), tokens.new(Role.ADMIN)
    short = tokens.new(Role.SUBMITTER, ttl=60)
    clock.now = NOW + 61
    assert c.post("/v1/tasks", headers=auth(short)).json()["details"]["reason"] == "expired"
    created = c.post("/v1/tokens", json={"role": "operator", "ttl": "1h"}, headers=auth(admin))
    assert created.status_code == 201
    body = created.json()
    assert body["token"].startswith("upd_") and "hash" not in body["record"]
    assert c.post("/v1/tasks", headers=auth(body["token"])).status_code == 200
    revoked = c.post(f"/v1/tokens/{body['record']['id']}/revoke", headers=auth(admin))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] == clock.now
    assert c.post("/v1/tasks", headers=auth(body["token"])).json()["details"]["reason"] == "revoked"


def test_only_admin_manages_tokens(tokens: Tokens, clock: Clock) -> None:
    c, op, admin = make(tokens, clock), tokens.new(Role.OPERATOR), tokens.new(Role.ADMIN)
    assert c.get("/v1/tokens", headers=auth(op)).status_code == 403
    assert c.post("/v1/tokens", json={"role": "admin"}, headers=auth(op)).status_code == 403
    listed = c.get("/v1/tokens", headers=auth(admin)).json()
    assert {t["role"] for t in listed} == {"operator", "admin"} and all("hash" not in t for t in listed)
    assert c.post("/v1/tokens", json={"role": "submitter", "node": "a"}, headers=auth(admin)).status_code == 422
    assert c.post("/v1/tokens/xyz/revoke", headers=auth(admin)).status_code == 422
    assert c.post("/v1/tokens/0123456789ab/revoke", headers=auth(admin)).status_code == 404


def test_auth_off_is_admin(tokens: Tokens, clock: Clock) -> None:
    c = make(tokens, clock, enabled=False)
    assert c.get("/v1/tasks/t1").json() == {"role": "admin"}


def test_the_openapi_declares_bearer_auth(tokens: Tokens, clock: Clock) -> None:
    doc = make(tokens, clock).app.openapi()  # type: ignore[attr-defined]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert doc["paths"]["/v1/tasks"]["post"]["security"] == [{"HTTPBearer": []}]


def test_binding_refusal_is_forbidden() -> None:
    t = Tokens()
    t.new(Role.NODE, node="a")
    _, join = generate(Role.NODE, NOW)
    with pytest.raises(Forbidden):
        t.bind(join, "a")


def test_the_token_cli_over_the_api(tokens: Tokens, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from updraft.cli import common
    from updraft.cli.main import app as cli
    from updraft.sdk import Client

    api = make(tokens, clock)
    monkeypatch.setattr(common, "_client", lambda server, token: Client(server, token=token, transport=api._transport))
    admin = tokens.new(Role.ADMIN)
    run = CliRunner()
    made = run.invoke(cli, ["token", "create", "--role", "node", "--node", "edge-1", "--ttl", "30d", "--token", admin])
    assert made.exit_code == 0, made.output
    node_token = made.stdout.strip().splitlines()[-1]
    assert node_token.startswith("upd_") and tokens.get_token(node_token.split("_")[1]) is not None
    listed = run.invoke(cli, ["token", "list", "--token", admin])
    assert listed.exit_code == 0 and "edge-1" in listed.stdout and node_token not in listed.stdout
    revoked = run.invoke(cli, ["token", "revoke", node_token.split("_")[1], "--token", admin])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    denied = run.invoke(cli, ["token", "list", "--token", node_token])
    assert denied.exit_code == 2 and "unauthorized" in denied.output
