"""An agent killed -9 and back 5 s later (issue 14): real server, real agents, real Docker.

By then its node has been declared unreachable (~2 s). A task that may only run there keeps its attempt: the
same token and the same container, re-adopted, and it completes. An offloadable task has moved to another
node; the copy the returning agent finds is stale and is stopped (fenced), and only the new copy's result is
accepted.
"""

from __future__ import annotations

import time

import docker
import docker.errors
import httpx

from tests.cluster import BASE_IMAGE, Cluster, wait_for

RESTART_AFTER = 5.0  # seconds the agent stays dead: well past the ~2 s after which its node is unreachable


def _running(engine: docker.DockerClient, cid: str) -> bool:
    try:
        return bool(engine.api.inspect_container(cid)["State"]["Running"])
    except docker.errors.NotFound:
        return False


def _node_state(cluster: Cluster, name: str) -> str:
    return str(httpx.get(f"{cluster.url}/v1/nodes/{name}", timeout=2, headers=cluster.headers).json()["state"])


def _task(seconds: float, **fields: object) -> dict[str, object]:
    script = f"import time; time.sleep({seconds}); print('done')"
    return {"image": BASE_IMAGE, "command": ["python3", "-c", script], "origin": "edge", **fields}


def test_a_pinned_task_keeps_its_token_and_container_across_an_agent_restart(two_nodes: Cluster) -> None:
    engine = docker.from_env()
    with two_nodes.client() as c:
        task = c.submit(**_task(15, offloadable=False))
        wait_for(lambda: c.get(task.id).state == "running", 60, what="running")
        before = c.get(task.id)
        assert before.current is not None and before.current.container_id
        token, cid = before.token, before.current.container_id
        edge = two_nodes.agents["edge"]
        edge.kill9()
        wait_for(lambda: _node_state(two_nodes, "edge") == "unreachable", 30, what="edge unreachable")
        time.sleep(RESTART_AFTER)  # the scenario: back only 5 s later
        assert _running(engine, cid)  # it ran on while its agent was away
        edge.start()
        done = c.wait(task.id, timeout=120)
        assert done.state == "succeeded", (done.state, done.reason)
        assert done.token == token and len(done.attempts) == 1
        assert done.current is not None and done.current.container_id == cid and done.current.node == "edge"
        assert done.current.exit_code == 0 and "done" in done.current.log_tail


def test_an_offloadable_task_moves_and_its_stale_copy_is_fenced(two_nodes: Cluster) -> None:
    engine = docker.from_env()
    with two_nodes.client() as c:
        task = c.submit(**_task(20, offloadable=True))
        wait_for(lambda: c.get(task.id).state == "running", 60, what="running")
        before = c.get(task.id)
        assert before.current is not None and before.current.node == "edge" and before.current.container_id
        old_token, old_cid = before.token, before.current.container_id
        edge = two_nodes.agents["edge"]
        edge.kill9()
        wait_for(lambda: c.get(task.id).token > old_token, 30, what="a new attempt elsewhere")
        moved = c.get(task.id)
        assert moved.current is not None and moved.current.node == "cloud"
        time.sleep(max(0.0, RESTART_AFTER - 2.0))
        assert _running(engine, old_cid)  # the stale copy ran on while its agent was away …
        edge.start()
        wait_for(lambda: not _running(engine, old_cid), 30, what="the stale copy stopped by its returning agent")
        done = c.wait(task.id, timeout=120)
        assert done.state == "succeeded", (done.state, done.reason)
        assert done.token == moved.token and done.current is not None and done.current.node == "cloud"
        assert done.current.container_id != old_cid
        succeeded = [e for e in c.events(task.id) if e.kind == "succeeded"]
        assert [e.token for e in succeeded] == [moved.token]  # only the new copy's result was accepted
