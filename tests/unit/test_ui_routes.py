"""The dashboard's routes in-process: login and sessions, roles, CSRF, secrets never shown, security headers."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from updraft.control import create_app
from updraft.security.tokenfile import FileTokenStore
from updraft.security.tokens import Role, TokenRecord, generate
from updraft.settings import ServerSettings
from updraft.store import SqliteStore

NODE = {"capacity": {"cpu": "2", "memory": "2Gi"}, "tags": ["edge"], "labels": {"zone": "a"}}


class Tokens:
    def __init__(self) -> None:
        self.records: dict[str, TokenRecord] = {}
        self.tokens: dict[Role, str] = {}
        for role in (Role.ADMIN, Role.OPERATOR, Role.SUBMITTER, Role.NODE):
            token, record = generate(role, time.time(), node="n1" if role is Role.NODE else None)
            self.records[record.id], self.tokens[role] = record, token


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def app(tmp_path: Path, tokens: Tokens) -> Iterator[TestClient]:
    """A server whose token records (DATA_DIR/tokens.json) hold one token per role; the API is called as admin."""
    store = FileTokenStore(tmp_path / "tokens.json", time.time)
    for record in tokens.records.values():
        store.put_token(record)
    admin = {"Authorization": f"Bearer {tokens.tokens[Role.ADMIN]}"}
    with TestClient(create_app(ServerSettings(data_dir=tmp_path, image_policy="off")), headers=admin) as client:
        assert client.put("/v1/nodes/n1", json=NODE).status_code == 200
        client.headers.pop("Authorization")  # the dashboard is used with its session cookie only
        yield client


@pytest.fixture
def admin(tokens: Tokens) -> dict[str, str]:
    """Headers for the API, as admin."""
    return {"Authorization": f"Bearer {tokens.tokens[Role.ADMIN]}"}


def cordoned(client: TestClient, admin: dict[str, str]) -> bool:
    r = client.get("/v1/nodes/n1", headers=admin)
    assert r.status_code == 200, r.text
    return bool(r.json()["cordoned"])


def login(client: TestClient, token: str) -> str:
    """Log in; return the page's CSRF token."""
    r = client.post("/ui/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    page = client.get("/ui/tasks")
    found = re.search(r'data-csrf="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_pages_need_a_login(app: TestClient) -> None:
    r = app.get("/ui/fleet", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert app.get("/ui/live/fleet").status_code == 401
    assert app.post("/ui/nodes/n1/cordon").status_code == 401
    bad = app.post("/ui/login", data={"token": "upd_000000000000_" + "x" * 43})
    assert bad.status_code == 401 and "not valid" in bad.text
    elsewhere = app.post("/ui/login", data={"token": "x"}, headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403


def test_an_operator_sees_the_fleet_and_cordons_with_the_csrf_token(app: TestClient, tokens: Tokens, admin: dict[str, str]) -> None:
    csrf = login(app, tokens.tokens[Role.OPERATOR])
    page = app.get("/ui/fleet")
    assert page.status_code == 200 and 'id="node-n1"' in page.text and "zone=a" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert app.post("/ui/nodes/n1/cordon").status_code == 403  # no CSRF token
    assert app.post("/ui/nodes/n1/cordon", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    other = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert app.post("/ui/nodes/n1/cordon", headers=other).status_code == 403
    assert not cordoned(app, admin)
    r = app.post("/ui/nodes/n1/cordon", headers={"X-CSRF-Token": csrf, "Origin": "http://testserver"})
    assert r.status_code == 200 and "node n1 cordoned" in r.text
    assert cordoned(app, admin)
    assert app.post("/ui/nodes/n1/explode", headers={"X-CSRF-Token": csrf}).status_code == 404


def test_a_submitter_is_refused_node_pages_and_actions(app: TestClient, tokens: Tokens, admin: dict[str, str]) -> None:
    csrf = login(app, tokens.tokens[Role.SUBMITTER])
    home = app.get("/ui/", follow_redirects=False)
    assert home.headers["location"] == "/ui/tasks"
    tasks = app.get("/ui/tasks")
    assert 'href="/ui/fleet"' not in tasks.text
    fleet = app.get("/ui/fleet")
    assert fleet.status_code == 403 and 'id="node-n1"' not in fleet.text
    for path in ("/ui/flows", "/ui/events", "/ui/live/fleet", "/ui/live/event-feed"):
        assert app.get(path).status_code == 403, path
    for verb in ("cordon", "uncordon", "drain"):
        assert app.post(f"/ui/nodes/n1/{verb}", headers={"X-CSRF-Token": csrf}).status_code == 403
    assert not cordoned(app, admin)


def test_node_tokens_cannot_log_in_and_revocation_ends_a_session(app: TestClient, tokens: Tokens, admin: dict[str, str]) -> None:
    r = app.post("/ui/login", data={"token": tokens.tokens[Role.NODE]})
    assert r.status_code == 403 and "cannot use the dashboard" in r.text
    login(app, tokens.tokens[Role.OPERATOR])
    assert app.get("/ui/fleet").status_code == 200
    operator = next(r for r in tokens.records.values() if r.role is Role.OPERATOR)
    revoked = app.post(f"/v1/tokens/{operator.id}/revoke", headers=admin)
    assert revoked.status_code == 200, revoked.text
    r = app.get("/ui/fleet", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"


def test_logout_ends_the_session(app: TestClient, tokens: Tokens) -> None:
    csrf = login(app, tokens.tokens[Role.ADMIN])
    assert app.post("/ui/logout", data={"csrf": "wrong"}).status_code == 403
    r = app.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert app.get("/ui/fleet", follow_redirects=False).status_code == 303


def test_the_task_page_never_shows_a_secret(app: TestClient, tokens: Tokens, admin: dict[str, str]) -> None:
    task = app.post("/v1/tasks", json={"image": "busybox:1.36", "origin": "n1",
                                       "secret_env": {"DB_PASSWORD": "hunter2-secret"}},
                    headers=admin).json()
    login(app, tokens.tokens[Role.ADMIN])  # even an admin, who may read secrets through the API
    page = app.get(f"/ui/tasks/{task['id']}")
    assert page.status_code == 200 and "DB_PASSWORD" in page.text
    assert "hunter2-secret" not in page.text and "&lt;redacted&gt;" in page.text
    listing = app.get("/ui/tasks", params={"q": task["id"][:6], "origin": "n1"})
    assert f'id="task-{task["id"]}"' in listing.text
    assert app.get("/ui/tasks/t-nope").status_code == 404


def test_without_authentication_everyone_is_the_anonymous_admin(tmp_path: Path) -> None:
    with TestClient(create_app(ServerSettings(data_dir=tmp_path, auth=False))) as client:
        r = client.get("/ui/fleet")
        assert r.status_code == 200 and 'id="role">admin' in r.text
        assert "HttpOnly" in r.headers["set-cookie"]
        assert client.get("/ui/static/htmx-2.0.11.min.js").status_code == 200


class LoopWatchingStore(SqliteStore):
    """Records every read made while an event loop runs in the calling thread (a read that blocks the loop)."""

    READS = ("revision", "get_node", "list_nodes", "get_task", "list_tasks", "key_use", "list_events", "list_logs")

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.on_loop: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        found = super().__getattribute__(name)
        if name not in LoopWatchingStore.READS:
            return found
        on_loop = super().__getattribute__("on_loop")

        def read(*args: Any, **kwargs: Any) -> Any:  # checked when called, not when looked up
            try:
                asyncio.get_running_loop()
                on_loop.append(name)
            except RuntimeError:
                pass
            return found(*args, **kwargs)

        return read


def test_no_page_reads_the_store_on_the_event_loop(tmp_path: Path, tokens: Tokens, admin: dict[str, str]) -> None:
    store = FileTokenStore(tmp_path / "tokens.json", time.time)
    for record in tokens.records.values():
        store.put_token(record)
    watched = LoopWatchingStore(tmp_path / "updraft.db")
    settings = ServerSettings(data_dir=tmp_path, image_policy="off")
    with TestClient(create_app(settings, store=watched)) as client:
        assert client.put("/v1/nodes/n1", json=NODE, headers=admin).status_code == 200
        task = client.post("/v1/tasks", json={"image": "busybox:1.36", "origin": "n1"}, headers=admin).json()
        csrf = login(client, tokens.tokens[Role.OPERATOR])
        watched.on_loop.clear()
        for path in ("/ui/fleet", "/ui/flows", "/ui/tasks", "/ui/tasks?state=scheduled&q=busy", "/ui/events",
                     f"/ui/tasks/{task['id']}"):
            assert client.get(path).status_code == 200, path
        for action in ("/ui/nodes/n1/cordon", "/ui/nodes/n1/uncordon", f"/ui/tasks/{task['id']}/cancel"):
            assert client.post(action, headers={"X-CSRF-Token": csrf}).status_code == 200, action
        assert client.get(f"/ui/tasks/{task['id']}").status_code == 200  # finished: from the store
        assert watched.on_loop == []
