"""Trust boundaries of the API, tried as an attacker against a real ``updraft server`` process (issue 15).

Each test holds one credential and tries what its role must not do. Agents are played over plain HTTP with
node tokens (no Docker needed): the boundary is the server's, whatever process holds the token.

These tests describe phase 2 of issue 15: authentication on by default, the first admin token in
``DATA_DIR/admin.token``, ``/v1/tokens``, roles and node identity enforced per route, secret env redacted.
"""

from __future__ import annotations

import stat
import time
from typing import Any

import httpx
import pytest

from tests.cluster import Cluster, wait_for
from tests.security.conftest import admin_token

SECRET = "hunter2-very-secret"
CAPACITY = {"cpu": "2", "memory": "2Gi"}


class Api:
    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=10)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)


@pytest.fixture(scope="module")
def cluster(server: Cluster) -> Cluster:
    return server


@pytest.fixture(scope="module")
def admin(cluster: Cluster) -> Api:
    return Api(cluster.url, admin_token(cluster))


def new_token(admin: Api, role: str, node: str | None = None, ttl: str | None = None) -> str:
    body: dict[str, Any] = {"role": role}
    if node is not None:
        body["node"] = node
    if ttl is not None:
        body["ttl"] = ttl
    resp = admin.post("/v1/tokens", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["token"])


def as_role(cluster: Cluster, admin: Api, role: str, node: str | None = None) -> Api:
    return Api(cluster.url, new_token(admin, role, node))


def refused(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status, (resp.request.method, resp.request.url, resp.status_code, resp.text)
    body = resp.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == {401: "unauthorized", 403: "forbidden"}[status]


# -- authentication ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/tasks"),
        ("POST", "/v1/tasks"),
        ("GET", "/v1/nodes"),
        ("PUT", "/v1/nodes/evil"),
        ("POST", "/v1/nodes/evil/heartbeat"),
        ("GET", "/v1/events"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/v1/tokens"),
    ],
)
def test_no_credential_is_401(cluster: Cluster, admin: Api, method: str, path: str) -> None:
    refused(httpx.request(method, cluster.url + path, json={}, timeout=10), 401)
    wrong = {"Authorization": "Bearer upd_000000000000_" + "A" * 43}
    refused(httpx.request(method, cluster.url + path, json={}, headers=wrong, timeout=10), 401)


def test_probes_stay_open(cluster: Cluster) -> None:
    assert httpx.get(cluster.url + "/health", timeout=5).status_code == 200
    assert httpx.get(cluster.url + "/ready", timeout=5).status_code == 200


def test_the_admin_token_lives_only_in_a_private_file(cluster: Cluster, admin: Api) -> None:
    path = cluster.dir / "server" / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = path.read_text().strip()
    assert admin.get("/v1/tasks").status_code == 200
    assert token not in (cluster.dir / "server.log").read_text(errors="replace")
    for db in path.parent.glob("*.db*"):
        assert token.encode() not in db.read_bytes()
        assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_a_revoked_token_is_refused(cluster: Cluster, admin: Api) -> None:
    token = new_token(admin, "submitter")
    caller = Api(cluster.url, token)
    assert caller.get("/v1/tasks").status_code == 200
    listed = admin.get("/v1/tokens").json()
    assert all("hash" not in t and "token" not in t for t in listed)
    ident = token.split("_")[1]
    assert admin.post(f"/v1/tokens/{ident}/revoke").status_code == 200
    refused(caller.get("/v1/tasks"), 401)


# -- roles -------------------------------------------------------------------------------------------------
def test_a_submitter_cannot_register_a_node_nor_run_the_fleet(cluster: Cluster, admin: Api) -> None:
    sub = as_role(cluster, admin, "submitter")
    refused(sub.put("/v1/nodes/evil", json={"capacity": {"cpu": "1000", "memory": "1Ti"}}), 403)
    refused(sub.post("/v1/nodes/evil/heartbeat", json={"cpu_pct": 0, "memory_pct": 0}), 403)
    refused(sub.post("/v1/nodes/anything/drain"), 403)
    refused(sub.get("/metrics"), 403)
    refused(sub.get("/v1/tokens"), 403)
    refused(sub.post("/v1/tokens", json={"role": "admin"}), 403)
    assert sub.post("/v1/tasks", json={"image": "busybox", "command": ["true"]}).status_code == 201


def test_an_operator_manages_nodes_but_not_tokens(cluster: Cluster, admin: Api) -> None:
    op = as_role(cluster, admin, "operator")
    assert op.get("/v1/nodes").status_code == 200
    refused(op.post("/v1/tokens", json={"role": "admin"}), 403)
    refused(op.put("/v1/nodes/op-node", json={"capacity": CAPACITY}), 403)  # not an agent


def test_a_metrics_token_reads_metrics_only(cluster: Cluster, admin: Api) -> None:
    scrape = as_role(cluster, admin, "metrics")
    assert scrape.get("/metrics").status_code == 200
    refused(scrape.get("/v1/tasks"), 403)


# -- node identity -----------------------------------------------------------------------------------------
def _assigned(node: Api, name: str, task_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        node.post(f"/v1/nodes/{name}/heartbeat", json={"cpu_pct": 1, "memory_pct": 1, "sent_at": time.time()})
        got = node.get(f"/v1/nodes/{name}/assignments").json()["assignments"]
        return next((a for a in got if a["task_id"] == task_id), None)

    return wait_for(found, 20, interval=0.2, what=f"task {task_id} assigned to {name}")


def test_node_a_cannot_act_as_b(cluster: Cluster, admin: Api) -> None:
    a = as_role(cluster, admin, "node", "node-a")
    b = as_role(cluster, admin, "node", "node-b")
    reg = {"capacity": CAPACITY, "labels": {"who": "a"}}
    assert a.put("/v1/nodes/node-a", json=reg).status_code == 200
    assert b.put("/v1/nodes/node-b", json={"capacity": CAPACITY, "labels": {"who": "b"}}).status_code == 200
    refused(a.put("/v1/nodes/node-b", json=reg), 403)  # register as b
    refused(a.post("/v1/nodes/node-b/heartbeat", json={"cpu_pct": 0, "memory_pct": 0}), 403)
    refused(a.get("/v1/nodes/node-b/assignments"), 403)
    refused(a.get("/v1/tasks"), 403)
    sub = as_role(cluster, admin, "submitter")
    task = sub.post("/v1/tasks", json={"image": "busybox", "command": ["true"], "node_selector": {"who": "a"},
                                       "secret_env": {"PASSWORD": SECRET}}).json()
    work = _assigned(a, "node-a", task["id"])
    assert work["spec"]["secret_env"] == {"PASSWORD": SECRET}  # the node that runs it needs the value
    status = f"/v1/tasks/{task['id']}/attempts/{work['token']}/status"
    refused(b.post(status, json={"state": "exited", "exit_code": 0}), 403)  # a forged exit 0 from b
    refused(b.post(f"/v1/tasks/{task['id']}/attempts/{work['token']}/logs",
                   json={"lines": [{"at": time.time(), "data": "forged"}]}), 403)
    assert a.post(status, json={"state": "running", "started_at": time.time()}).status_code == 200


def test_a_held_name_cannot_be_taken_over(cluster: Cluster, admin: Api) -> None:
    holder = as_role(cluster, admin, "node", "held-1")
    assert holder.put("/v1/nodes/held-1", json={"capacity": CAPACITY}).status_code == 200
    join = as_role(cluster, admin, "node")  # a join token: binds to the first name it registers
    refused(join.put("/v1/nodes/held-1", json={"capacity": {"cpu": "1000", "memory": "1Ti"}}), 403)
    assert join.put("/v1/nodes/joined-1", json={"capacity": CAPACITY}).status_code == 200
    refused(join.put("/v1/nodes/joined-2", json={"capacity": CAPACITY}), 403)  # bound now


# -- secrets -----------------------------------------------------------------------------------------------
def test_secret_env_is_never_returned_but_to_admin_nor_logged(cluster: Cluster, admin: Api) -> None:
    sub = as_role(cluster, admin, "submitter")
    created = sub.post("/v1/tasks", json={"image": "busybox", "command": ["true"], "env": {"MODE": "x"},
                                          "secret_env": {"API_KEY": SECRET}})
    assert created.status_code == 201
    task = created.json()
    assert task["spec"]["secret_env"] == {"API_KEY": "<redacted>"} and task["spec"]["env"] == {"MODE": "x"}
    op = as_role(cluster, admin, "operator")
    for caller in (sub, op):
        assert SECRET not in caller.get(f"/v1/tasks/{task['id']}").text
        assert SECRET not in caller.get("/v1/tasks").text
        assert SECRET not in caller.get(f"/v1/tasks/{task['id']}/events").text
    assert admin.get(f"/v1/tasks/{task['id']}").json()["spec"]["secret_env"] == {"API_KEY": SECRET}
    assert SECRET not in (cluster.dir / "server.log").read_text(errors="replace")
