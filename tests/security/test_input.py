"""No poisonous input (issue 15, item 8), against a real ``updraft server`` process: each body the issue found
breaking or silently changing the server is sent as raw bytes, and the server must answer 4xx with the
project's error shape — then still list, get and report as before.

Agents are played over HTTP with a node token (no Docker needed).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.cluster import Cluster, wait_for

CAPACITY = {"cpu": "2", "memory": "2Gi"}


@pytest.fixture(scope="module")
def cluster(server: Cluster) -> Cluster:
    return server


def node_client(cluster: Cluster, admin: httpx.Client, name: str) -> httpx.Client:
    made = admin.post("/v1/tokens", json={"role": "node", "node": name})
    assert made.status_code == 201, made.text
    return httpx.Client(base_url=cluster.url, headers={"Authorization": f"Bearer {made.json()['token']}"}, timeout=10)


def raw(client: httpx.Client, method: str, path: str, body: str, **headers: str) -> httpx.Response:
    return client.request(method, path, content=body.encode("utf-8", "surrogatepass"),
                          headers={"Content-Type": "application/json", **headers})


def refused(resp: httpx.Response, field: str | None = None, status: int = 422) -> dict[str, Any]:
    assert resp.status_code == status, (resp.request.method, str(resp.request.url), resp.status_code, resp.text)
    body = resp.json()
    assert set(body) == {"code", "message", "details"}, body
    if field is not None:
        assert body["details"].get("field") == field, body
    return body


def still_serving(admin: httpx.Client) -> None:
    assert admin.get("/v1/tasks", params={"limit": 10000}).status_code == 200
    assert admin.get("/v1/nodes").status_code == 200
    assert admin.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"image": "busybox", "liveness_probe": {"kind": "tcp", "port": 80, "period_seconds": 1e999}}',
         "liveness_probe.period_seconds"),
        ('{"image": "busybox", "timeout": 1e999}', "timeout"),
        ('{"image": "busybox", "timeout": NaN}', "timeout"),
        ('{"image": "busybox", "resources": {"requests": {"cpu": "' + "9" * 400 + '"}}}', "resources.requests.cpu"),
        ('{"image": "busybox", "resources": {"limits": {"memory": "99999999Ei"}}}', "resources.limits.memory"),
        ('{"image": "busybox", "env": {"K": "\\ud800"}}', "env.K"),
        ('{"image": "busybox", "labels": {"zone\\n": "a"}}', None),
        ('{"image": "busybox", "command": ["sh", "-c", "\\u0000"]}', "command.2"),
        ('{"image": "busybox", "priority": 9223372036854775808}', "priority"),
        ('{"image": "busybox\\n"}', "image"),
        ('{"image": "busybox"', "body"),
        ('\xff\xfe', "body"),
    ],
)
def test_a_poisonous_submit_is_422_naming_the_field(cluster: Cluster, admin: httpx.Client, body: str,
                                                    field: str | None) -> None:
    before = len(admin.get("/v1/tasks", params={"limit": 10000}).json())
    refused(raw(admin, "POST", "/v1/tasks", body), field)
    assert len(admin.get("/v1/tasks", params={"limit": 10000}).json()) == before  # nothing stored
    still_serving(admin)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/events", {"after": str(2**63)}),
        ("/v1/events", {"after": "-1"}),
        ("/v1/tasks", {"limit": str(2**64)}),
    ],
)
def test_out_of_range_query_integers_are_422(admin: httpx.Client, path: str, params: dict[str, str]) -> None:
    refused(admin.get(path, params=params))


def test_agent_bodies_are_checked_too(cluster: Cluster, admin: httpx.Client) -> None:
    node = node_client(cluster, admin, "in-1")
    assert node.put("/v1/nodes/in-1", json={"capacity": CAPACITY, "labels": {"who": "in-1"}}).status_code == 200
    refused(raw(node, "POST", "/v1/nodes/in-1/heartbeat", '{"cpu_pct": 1, "memory_pct": 1, "sent_at": NaN}'),
            "sent_at")
    refused(raw(node, "POST", "/v1/nodes/in-1/heartbeat", '{"cpu_pct": 1e999, "memory_pct": 1}'), "cpu_pct")
    refused(raw(node, "PUT", "/v1/nodes/in-1", '{"capacity": {"cpu": "1", "memory": "1Gi", "x.io/gpu": '
                + str(2**63) + "}}"))
    still_serving(admin)


@pytest.mark.parametrize("name", ["evil%0Aforged", "evil%0D", "-dash", "a%20b", "x" * 254, "%E2%80%AEevil"])
def test_a_node_name_outside_the_grammar_never_becomes_a_node(admin: httpx.Client, name: str) -> None:
    """Even for an admin: a name with a line break would forge log lines, one with a bidi override lie on screen."""
    refused(admin.put(f"/v1/nodes/{name}", json={"capacity": CAPACITY}), "name")
    assert all("evil" not in n["name"] for n in admin.get("/v1/nodes").json())


def _attempt(cluster: Cluster, admin: httpx.Client, node: httpx.Client, name: str) -> tuple[str, int]:
    task = admin.post("/v1/tasks", json={"image": "busybox", "command": ["true"], "node_selector": {"who": name}})
    assert task.status_code == 201, task.text
    task_id = task.json()["id"]

    def assigned() -> int | None:
        node.post(f"/v1/nodes/{name}/heartbeat", json={"cpu_pct": 1, "memory_pct": 1, "sent_at": time.time()})
        got = node.get(f"/v1/nodes/{name}/assignments").json()["assignments"]
        return next((a["token"] for a in got if a["task_id"] == task_id), None)

    return task_id, wait_for(assigned, 20, interval=0.2, what=f"{task_id} assigned")


def test_reports_logs_and_tokens_from_an_agent(cluster: Cluster, admin: httpx.Client) -> None:
    node = node_client(cluster, admin, "in-2")
    assert node.put("/v1/nodes/in-2", json={"capacity": CAPACITY, "labels": {"who": "in-2"}}).status_code == 200
    task_id, token = _attempt(cluster, admin, node, "in-2")
    base = f"/v1/tasks/{task_id}/attempts/{token}"
    refused(raw(node, "POST", f"{base}/logs", '{"lines": [{"at": NaN, "data": "x"}]}'), "lines.0.at")
    refused(raw(admin, "POST", f"/v1/tasks/{task_id}/attempts/{2**63}/status", '{"state": "running"}'), "token")
    now = time.time()
    done = {"state": "exited", "exit_code": 0, "started_at": now, "finished_at": now}
    first = node.post(f"{base}/status", json=done)
    assert first.status_code == 200 and first.json()["state"] == "succeeded"
    again = node.post(f"{base}/status", json=done)  # the same report again: a no-op
    assert again.status_code == 200 and again.json()["state"] == "succeeded"
    other = node.post(f"{base}/status", json={**done, "exit_code": 1})  # a different result for a finished attempt
    refused(other, status=409)
    final = admin.get(f"/v1/tasks/{task_id}").json()
    assert final["state"] == "succeeded" and final["attempts"][-1]["exit_code"] == 0
    still_serving(admin)


def test_a_reused_idempotency_key_with_another_body_is_refused(admin: httpx.Client) -> None:
    key = {"Idempotency-Key": "same-key-1"}
    first = admin.post("/v1/tasks", json={"image": "busybox", "command": ["true"]}, headers=key)
    assert first.status_code == 201
    again = admin.post("/v1/tasks", json={"image": "busybox", "command": ["true"]}, headers=key)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = admin.post("/v1/tasks", json={"image": "busybox", "command": ["false"]}, headers=key)
    assert other.status_code in (409, 422) and set(other.json()) == {"code", "message", "details"}


def test_unknown_routes_and_methods_have_the_error_shape(cluster: Cluster, admin: httpx.Client) -> None:
    refused(admin.get("/v1/nope"), status=404)
    refused(admin.delete("/v1/tasks"), status=405)
