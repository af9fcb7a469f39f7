"""The HTTP API in-process: error bodies {code, message, details}, submit semantics, OpenAPI, auth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from updraft.control import create_app
from updraft.settings import ServerSettings

TASK = {"image": "busybox:1.36", "command": ["echo", "hi"], "resources": {"requests": {"cpu": "100m"}}}
NODE = {"capacity": {"cpu": "2", "memory": "2Gi"}, "tags": ["edge"]}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerSettings(data_dir=tmp_path, auth=False))) as client:  # auth: tests below
        yield client


def error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Check the shape of an error response; return its body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"code", "message", "details"} and body["code"] == code
    return body


def invalid_field(resp: Any) -> tuple[str, str]:
    body = error(resp, 422, "invalid")
    return body["details"]["field"], body["message"]


# -- errors ----------------------------------------------------------------------------------------------


def test_malformed_json(api: TestClient) -> None:
    resp = api.post("/v1/tasks", content=b'{"image": "busybox",', headers={"content-type": "application/json"})
    assert invalid_field(resp) == ("body", "body: malformed JSON")


def test_unknown_field(api: TestClient) -> None:
    field, message = invalid_field(api.post("/v1/tasks", json={**TASK, "imagee": "x"}))
    assert (field, message) == ("imagee", "imagee: unknown field")
    field, _ = invalid_field(api.post("/v1/tasks", json={**TASK, "resources": {"requests": {"gpu": "1"}}}))
    assert field == "resources.requests.gpu"


def test_bad_quantity(api: TestClient) -> None:
    resp = api.post("/v1/tasks", json={**TASK, "resources": {"limits": {"memory": "12Zi"}}})
    field, message = invalid_field(resp)
    assert field == "resources.limits.memory"
    assert message.startswith("resources.limits.memory: invalid memory quantity '12Zi'")
    assert resp.json()["details"]["errors"] == [{"field": field, "message": message.split(": ", 1)[1]}]


def test_bad_capacity_quantity(api: TestClient) -> None:
    resp = api.put("/v1/nodes/n1", json={"capacity": {"cpu": "2", "memory": "12Zi"}})
    assert invalid_field(resp)[0] == "capacity.memory"


def test_requests_over_limits(api: TestClient) -> None:
    resp = api.post("/v1/tasks", json={**TASK, "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}})
    field, message = invalid_field(resp)
    assert field == "resources" and "requests.cpu 2 exceeds limits.cpu 1" in message


def test_bad_image_reference(api: TestClient) -> None:
    field, message = invalid_field(api.post("/v1/tasks", json={**TASK, "image": "Not An Image"}))
    assert field == "image" and "'Not An Image' is not a valid image reference" in message


def test_missing_required_field(api: TestClient) -> None:
    assert invalid_field(api.post("/v1/tasks", json={"command": ["true"]}))[0] == "image"


def test_unknown_origin(api: TestClient) -> None:
    assert invalid_field(api.post("/v1/tasks", json={**TASK, "origin": "nowhere"})) == (
        "origin",
        "origin: unknown node 'nowhere'",
    )


def test_unknown_node(api: TestClient) -> None:
    body = error(api.get("/v1/nodes/nope"), 404, "not_found")
    assert body["details"] == {"field": "node", "node": "nope"} and "nope" in body["message"]
    error(api.post("/v1/nodes/nope/cordon"), 404, "not_found")
    error(api.get("/v1/nodes/nope/assignments"), 404, "not_found")


def test_unknown_task(api: TestClient) -> None:
    body = error(api.get("/v1/tasks/t-nope"), 404, "not_found")
    assert body["details"]["field"] == "task_id"
    error(api.post("/v1/tasks/t-nope/cancel"), 404, "not_found")


def test_body_over_one_mib(api: TestClient) -> None:
    big = {**TASK, "env": {"BLOB": "x" * (1 << 20)}}
    body = error(api.post("/v1/tasks", json=big), 413, "too_large")
    assert body["details"] == {"field": "body", "limit": 1 << 20}
    assert body["message"].startswith("body: ")


def test_chunked_body_over_one_mib(api: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"image": "busybox", "env": {"BLOB": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}}'

    resp = api.post("/v1/tasks", content=chunks(), headers={"content-type": "application/json"})
    assert error(resp, 413, "too_large")["details"]["field"] == "body"


def test_chunked_body_under_the_limit_still_works(api: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        text = json.dumps(TASK).encode()
        yield text[:10]
        yield text[10:]

    resp = api.post("/v1/tasks", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 201, resp.text


def test_stale_token_is_409(api: TestClient) -> None:
    api.put("/v1/nodes/n1", json=NODE)
    tid = api.post("/v1/tasks", json=TASK).json()["id"]
    resp = api.post(f"/v1/tasks/{tid}/attempts/999/status", json={"state": "running"})
    body = error(resp, 409, "stale_token")
    assert body["details"]["token"] == 999


# -- happy paths ---------------------------------------------------------------------------------------


def test_submit_201_then_idempotent_200(api: TestClient) -> None:
    first = api.post("/v1/tasks", json=TASK, headers={"Idempotency-Key": "abc"})
    assert first.status_code == 201
    again = api.post("/v1/tasks", json=TASK, headers={"Idempotency-Key": "abc"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    by_body = api.post("/v1/tasks", json={**TASK, "idempotency_key": "abc"})
    assert by_body.status_code == 200 and by_body.json()["id"] == first.json()["id"]
    other = api.post("/v1/tasks", json=TASK, headers={"Idempotency-Key": "xyz"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert len(api.get("/v1/tasks").json()) == 2


def test_task_round_trip(api: TestClient) -> None:
    created = api.post("/v1/tasks", json=TASK).json()
    assert created["state"] == "pending" and created["spec"]["command"] == ["echo", "hi"]
    got = api.get(f"/v1/tasks/{created['id']}").json()
    assert got["id"] == created["id"]
    events = api.get(f"/v1/tasks/{created['id']}/events").json()
    assert events[0]["kind"] == "submitted"  # the background scheduler may add a "deferred" (no nodes)
    assert api.post(f"/v1/tasks/{created['id']}/cancel").json()["state"] == "cancelled"
    assert [t["id"] for t in api.get("/v1/tasks", params={"state": "cancelled"}).json()] == [created["id"]]


def test_node_registration_and_listing(api: TestClient) -> None:
    assert api.put("/v1/nodes/n1", json=NODE).json()["capacity"] == {"cpu_millis": 2000, "memory_bytes": 2 << 30}
    assert [n["name"] for n in api.get("/v1/nodes").json()] == ["n1"]
    hb = api.post("/v1/nodes/n1/heartbeat", json={"cpu_pct": 10, "memory_pct": 20}).json()
    assert hb["known"] is True and hb["stale"] == []
    assert api.get("/v1/nodes/n1/assignments").json()["assignments"] == []


def test_policy_endpoint(api: TestClient) -> None:
    assert api.get("/v1/policy").json()["threshold_cpu"] == 75


def test_openapi_lists_the_routes(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    assert "/v1/tasks" in doc["paths"] and "post" in doc["paths"]["/v1/tasks"]
    assert "/v1/nodes/{name}" in doc["paths"]
    assert api.get("/health").json() == {"status": "ok"}
    assert api.get("/ready").json()["status"] == "ready"


# -- auth ------------------------------------------------------------------------------------------------


def test_authentication_is_on_by_default(tmp_path: Path) -> None:
    with TestClient(create_app(ServerSettings(data_dir=tmp_path))) as api:
        admin = (tmp_path / "admin.token").read_text().strip()  # written at the first start, 0600
        assert (tmp_path / "admin.token").stat().st_mode & 0o777 == 0o600
        body = error(api.get("/v1/tasks"), 401, "unauthorized")
        assert body["details"] == {"reason": "missing"}
        error(api.get("/v1/tasks", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        error(api.post("/v1/tasks", json=TASK), 401, "unauthorized")
        for closed in ("/metrics", "/openapi.json", "/docs"):
            assert api.get(closed).status_code == 401, closed
        ok = api.get("/v1/tasks", headers={"Authorization": f"Bearer {admin}"})
        assert ok.status_code == 200 and ok.json() == []
        assert api.get("/openapi.json", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
        assert api.get("/health").status_code == 200  # probes stay open
    assert admin not in (tmp_path / "tokens.json").read_text()  # only its hash is kept


def test_health_names_what_stopped(tmp_path: Path) -> None:
    """The liveness probe (answered before the framework) fails, naming the part, when the writer stops."""
    with TestClient(create_app(ServerSettings(data_dir=tmp_path))) as api:
        assert api.get("/health").json() == {"status": "ok"}
        api.app.state.service.writer.close()  # type: ignore[attr-defined]
        failing = api.get("/health")
        assert failing.status_code == 503
        assert failing.json() == {"status": "failing", "problems": {"writer": "stopped"}}
