"""The submit fast path answers exactly as the route would: same credentials, body rules, idempotency, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from updraft.control import create_app
from updraft.settings import ServerSettings

SPEC = {"image": "busybox:1.36", "command": ["true"], "resources": {"requests": {"cpu": "100m"}}}


def _spy(api: TestClient) -> list[str | None]:
    service = api.app.state.service  # type: ignore[attr-defined]
    real, seen = service.submit_async, []

    async def spying(spec: Any, key: str | None = None, traceparent: str | None = None) -> Any:
        seen.append(key)
        return await real(spec, key, traceparent=traceparent)

    service.submit_async = spying
    return seen


def _token(api: TestClient, tmp_path: Path, role: str, node: str | None = None) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {(tmp_path / 'admin.token').read_text().strip()}"}
    made = api.post("/v1/tokens", json={"role": role, **({"node": node} if node else {})}, headers=admin)
    return {"Authorization": f"Bearer {made.json()['token']}"}


def test_submit_keys_and_refusals_as_the_route(tmp_path: Path) -> None:
    with TestClient(create_app(ServerSettings(data_dir=tmp_path, image_policy="off"))) as api:
        seen = _spy(api)
        me = _token(api, tmp_path, "submitter")
        made = api.post("/v1/tasks", json=SPEC, headers={**me, "Idempotency-Key": "k1"})
        assert made.status_code == 201 and seen == ["k1"]  # taken by the fast path
        task = made.json()
        assert task["state"] == "pending" and task["spec"]["image"] == "busybox:1.36"
        assert api.get(f"/v1/tasks/{task['id']}", headers=me).json()["id"] == task["id"]  # stored, same task

        again = api.post("/v1/tasks", json=SPEC, headers={**me, "Idempotency-Key": "k1"})
        assert again.status_code == 200 and again.json()["id"] == task["id"]  # same key, same body: same task
        other = api.post("/v1/tasks", json={**SPEC, "command": ["false"]}, headers={**me, "Idempotency-Key": "k1"})
        assert other.status_code == 409 and other.json()["details"]["task_id"] == task["id"]

        unknown = api.post("/v1/tasks", json={**SPEC, "origin": "nowhere"}, headers=me)
        assert unknown.status_code == 422 and unknown.json()["details"]["field"] == "origin"
        bad = api.post("/v1/tasks", json={**SPEC, "resources": {"requests": {"cpu": "lots"}}}, headers=me)
        assert bad.status_code == 422 and "cpu" in bad.json()["details"]["field"]
        assert len(seen) == 4  # the invalid body went to the route, the unknown origin was the service's error

        in_body = api.post("/v1/tasks", json={**SPEC, "idempotency_key": "k2"}, headers=me)  # the route's case
        assert in_body.status_code == 201
        by_header = api.post("/v1/tasks", json=SPEC, headers={**me, "Idempotency-Key": "k2"})
        assert by_header.status_code == 200 and by_header.json()["id"] == in_body.json()["id"]

        assert api.post("/v1/tasks", json=SPEC).status_code == 401
        node = _token(api, tmp_path, "node", "n1")
        assert api.post("/v1/tasks", json=SPEC, headers=node).json()["code"] == "forbidden"
        listed = [t["id"] for t in api.get("/v1/tasks", headers=me).json()]
        assert sorted(listed) == sorted([task["id"], in_body.json()["id"]])  # nothing else was stored
        admin = {"Authorization": f"Bearer {(tmp_path / 'admin.token').read_text().strip()}"}
        assert 'route="/v1/tasks"' in api.get("/metrics", headers=admin).text


def test_a_retry_gets_its_task_when_the_backlog_is_full_and_after_a_restart(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path, image_policy="off", max_pending_tasks=1)
    with TestClient(create_app(settings)) as api:
        seen = _spy(api)
        me = _token(api, tmp_path, "submitter")
        first = api.post("/v1/tasks", json=SPEC, headers={**me, "Idempotency-Key": "a"}).json()
        full = api.post("/v1/tasks", json=SPEC, headers={**me, "Idempotency-Key": "b"})
        assert full.status_code == 429 and full.headers["Retry-After"]
        retry = api.post("/v1/tasks", json=SPEC, headers={**me, "Idempotency-Key": "a"})
        assert retry.status_code == 200 and retry.json()["id"] == first["id"]
        assert seen == ["a", "b", "a"]
        assert api.post(f"/v1/tasks/{first['id']}/cancel", headers=me).json()["state"] == "cancelled"
    with TestClient(create_app(settings)) as api:  # the key was stored with the task; it is no longer in memory
        _spy(api)
        me = _token(api, tmp_path, "submitter")
        replay = api.post("/v1/tasks", json=SPEC, headers={**me, "Idempotency-Key": "a"})
        assert replay.status_code == 200 and replay.json()["id"] == first["id"]
        assert replay.json()["state"] == "cancelled"
