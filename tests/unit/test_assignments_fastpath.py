"""The long-poll fast path answers as the route: same credentials and query rules, the same attempt and token."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from updraft.control import create_app
from updraft.settings import ServerSettings

CAPACITY = {"capacity": {"cpu": "2", "memory": "2Gi"}}


def _token(api: TestClient, admin: dict[str, str], role: str, node: str | None = None) -> dict[str, str]:
    made = api.post("/v1/tokens", json={"role": role, **({"node": node} if node else {})}, headers=admin)
    return {"Authorization": f"Bearer {made.json()['token']}"}


def test_a_node_polls_its_own_attempts_from_memory(tmp_path: Path) -> None:
    with TestClient(create_app(ServerSettings(data_dir=tmp_path, image_policy="off"))) as api:
        admin = {"Authorization": f"Bearer {(tmp_path / 'admin.token').read_text().strip()}"}
        n1, n2 = _token(api, admin, "node", "n1"), _token(api, admin, "node", "n2")
        assert api.put("/v1/nodes/n1", json=CAPACITY, headers=n1).status_code == 200
        assert api.put("/v1/nodes/n2", json={"capacity": {"cpu": "1m", "memory": "1Mi"}}, headers=n2).status_code == 200
        service = api.app.state.service  # type: ignore[attr-defined]
        served: list[Any] = []
        real, reads = service.assignments_cached, service.store.get_task
        read_ids: list[str] = []

        def cached(name: str, index: int, read: bool = False) -> Any:
            served.append((name, read))
            return real(name, index, read)

        def reading(task_id: str) -> Any:
            read_ids.append(task_id)
            return reads(task_id)

        service.assignments_cached, service.store.get_task = cached, reading
        empty = api.get("/v1/nodes/n1/assignments?index=0&wait=0", headers=n1)
        assert empty.status_code == 200 and empty.json()["assignments"] == []
        version = empty.json()["index"]

        answers: list[Any] = []
        poll = threading.Thread(
            target=lambda: answers.append(api.get(f"/v1/nodes/n1/assignments?index={version}&wait=30", headers=n1))
        )
        poll.start()  # the agent's long-poll waits first, as it does all the time ...
        deadline = time.monotonic() + 30
        while not service.notifier.waiting("node:n1") and time.monotonic() < deadline:
            time.sleep(0.01)
        task = api.post("/v1/tasks", json={"image": "busybox", "resources": {"requests": {"cpu": "500m"}}},
                        headers=admin).json()  # fmt: skip  # ... so the scheduler caches the attempt as it places it
        poll.join(30)
        polled = answers[0]
        while not polled.json()["assignments"] and time.monotonic() < deadline:  # woken by another change first
            polled = api.get(f"/v1/nodes/n1/assignments?index={polled.json()['index']}&wait=5", headers=n1)
        assert task["id"] not in read_ids  # the attempt's JSON came from the scheduler's cache, not the store
        stored = api.get(f"/v1/tasks/{task['id']}", headers=admin).json()
        (got,) = polled.json()["assignments"]
        assert got["task_id"] == task["id"] and got["token"] == stored["token"] and stored["node"] == "n1"
        assert served and all(call == ("n1", False) for call in served)  # memory only, on the event loop

        assert api.get("/v1/nodes/n1/assignments?wait=0", headers=n2).status_code == 403  # another node's
        assert api.get("/v1/nodes/n1/assignments?wait=0").status_code == 401
        for query in ("index=-1", "wait=61", "wait=nan", "index=%C2%B2"):
            bad = api.get(f"/v1/nodes/n1/assignments?{query}", headers=n1)
            assert bad.status_code == 422, query
        assert api.get("/v1/nodes/nobody/assignments?wait=0", headers=admin).status_code == 404
        assert 'route="/v1/nodes/{name}/assignments"' in api.get("/metrics", headers=admin).text


def test_the_attempt_cache_stays_bounded_and_keeps_answering(tmp_path: Path, monkeypatch: Any) -> None:
    """Past its bound the cache drops dead entries, then the oldest live ones, down to 90 %: a poll of a node
    whose attempt was dropped is answered from the store, with the same attempt."""
    from updraft.control import nodes

    monkeypatch.setattr(nodes, "ASSIGNMENT_CACHE", 10)
    with TestClient(create_app(ServerSettings(data_dir=tmp_path, image_policy="off"))) as api:
        admin = {"Authorization": f"Bearer {(tmp_path / 'admin.token').read_text().strip()}"}
        n1 = _token(api, admin, "node", "n1")
        assert api.put("/v1/nodes/n1", json={"capacity": {"cpu": "64", "memory": "64Gi"}}, headers=n1).status_code == 200
        service = api.app.state.service  # type: ignore[attr-defined]
        ids = [api.post("/v1/tasks", json={"image": "busybox", "resources": {"requests": {"cpu": "100m"}}},
                        headers=admin).json()["id"] for _ in range(25)]  # fmt: skip
        deadline = time.monotonic() + 30
        while sum(1 for i in ids if service.state.live(i) and service.state.live(i).token) < 25:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for i in ids:  # what the scheduler does for a polled node, 25 times past a bound of 10
            service.remember_assignment(service.task(i))
            assert len(service._assignment_json) <= 10
        polled = api.get("/v1/nodes/n1/assignments?wait=0", headers=n1).json()["assignments"]
        assert sorted((a["task_id"], a["token"]) for a in polled) == sorted(
            (i, service.state.live(i).token) for i in ids
        )
