"""The offload loop end to end: real server and agent processes, real dockerd."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from datetime import datetime

import docker
import httpx
import pytest

from tests.cluster import BASE_IMAGE, Cluster, wait_for
from updraft.errors import NotFound, ValidationError


def test_task_runs_and_returns_result_and_logs(two_nodes: Cluster) -> None:
    with two_nodes.client() as c:
        task = c.run(image=BASE_IMAGE, command=["python3", "-c", "import sys; print('hello'); print('oops', file=sys.stderr); sys.exit(3)"],
                     origin="edge", timeout=60)
        assert task.state == "failed"
        att = task.current
        assert att is not None and att.exit_code == 3 and att.node == "edge"
        assert "hello" in att.log_tail
        lines = list(c.logs(task.id))
        assert {ln["stream"]: ln["data"] for ln in lines} == {"stdout": "hello", "stderr": "oops"}
        ok = c.run(image=BASE_IMAGE, command=["python3", "-c", "print(6*7)"], origin="edge")
        assert ok.state == "succeeded" and ok.current is not None and ok.current.exit_code == 0
        assert ok.current.started_at is not None and ok.current.finished_at >= ok.current.started_at


def test_loaded_origin_offloads_to_tagged_node_and_says_why(two_nodes: Cluster) -> None:
    with two_nodes.client() as c:
        # Occupy the edge: a pinned task requesting all of its cpu makes it 100 % committed.
        hog = c.submit(image=BASE_IMAGE, command=["sleep", "60"], origin="edge", offloadable=False,
                       resources={"requests": {"cpu": "500m"}})
        wait_for(lambda: c.get(hog.id).state == "running", 30, what="hog running")
        task = c.run(image=BASE_IMAGE, command=["true"], origin="edge", timeout=60)
        assert task.state == "succeeded"
        assert task.current is not None and task.current.node == "cloud" and task.current.placement == "offload"
        events = c.events(task.id)
        offloaded = [e for e in events if e.kind == "offloaded"]
        assert offloaded and "origin cpu 100% ≥ 75%" in offloaded[0].message and "cloud" in offloaded[0].message
        c.cancel(hog.id)


def test_container_limits_in_hostconfig(two_nodes: Cluster) -> None:
    with two_nodes.client() as c:
        task = c.submit(image=BASE_IMAGE, command=["sleep", "30"], origin="edge",
                        resources={"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "250m", "memory": "64Mi"}})
        wait_for(lambda: c.get(task.id).state == "running", 30, what="running")
        cid = c.get(task.id).current.container_id
        attrs = docker.from_env().containers.get(cid).attrs
        host = attrs["HostConfig"]
        assert host["NanoCpus"] == 250_000_000
        assert host["CpuShares"] == 102  # the 100m request, as Kubernetes maps it
        assert host["Memory"] == 64 * 1024 * 1024
        assert host["CpusetCpus"] == "0"
        assert host["CgroupParent"] == "/updraft-edge"
        labels = attrs["Config"]["Labels"]
        assert labels["updraft.task"] == task.id and labels["updraft.token"] == str(c.get(task.id).token)
        c.cancel(task.id)


def test_spare_cpu_goes_to_the_oldest_container_and_follows_it(two_nodes: Cluster) -> None:
    """cloud has one cpu: two 100m containers keep 102 shares each, and the 820 nobody requested go to the
    older one; when it ends, the other inherits them. A restarted agent re-adopts both containers (the same
    ones: same tokens, same container ids, never killed) and rebuilds their weights, even ones changed while it
    was down."""
    engine = docker.from_env()
    with two_nodes.client() as c:
        def shares(cid: str) -> int:
            return int(engine.api.inspect_container(cid)["HostConfig"]["CpuShares"])

        def running(task_id: str) -> tuple[int, str]:
            task = c.get(task_id)
            assert task.state == "running" and task.current is not None and task.current.container_id
            return task.token, task.current.container_id

        spec = {"image": BASE_IMAGE, "command": ["sleep", "120"], "origin": "cloud", "offloadable": False,
                "resources": {"requests": {"cpu": "100m"}}}
        first = c.submit(**spec)
        wait_for(lambda: c.get(first.id).state == "running", 30, what="first running")
        one = running(first.id)
        wait_for(lambda: shares(one[1]) == 1024, 10, what="the lone container holds the whole cpu's weight")
        second = c.submit(**spec)
        wait_for(lambda: c.get(second.id).state == "running", 30, what="second running")
        two = running(second.id)
        wait_for(lambda: (shares(one[1]), shares(two[1])) == (1024 - 102, 102), 10, what="spare to the oldest")

        agent = two_nodes.agents["cloud"]
        agent.kill9()
        engine.api.update_container(one[1], cpu_shares=2)  # weights that are wrong when the agent returns
        engine.api.update_container(two[1], cpu_shares=2)
        agent.start()
        metrics = f"http://127.0.0.1:{two_nodes.agent_ports['cloud']}/metrics"
        wait_for(lambda: 'updraft_agent_containers{node="cloud"} 2.0' in httpx.get(metrics, timeout=2).text, 30,
                 what="the restarted agent follows both containers")
        wait_for(lambda: (shares(one[1]), shares(two[1])) == (1024 - 102, 102), 20,
                 what="the re-adopted containers' weights rebuilt")
        assert (running(first.id), running(second.id)) == (one, two)  # re-adopted, not replaced

        c.cancel(first.id)
        wait_for(lambda: _stopped(engine, one[1]), 20, what="first stopped")
        wait_for(lambda: shares(two[1]) == 1024, 20, what="the survivor inherits the spare")
        state = engine.api.inspect_container(two[1])["State"]
        assert state["Running"] and state["ExitCode"] == 0  # the survivor is alive, never stopped
        assert running(second.id) == two and len(c.get(second.id).attempts) == 1
        c.cancel(second.id)


def _stopped(engine: docker.DockerClient, cid: str) -> bool:
    try:
        return not engine.api.inspect_container(cid)["State"]["Running"]
    except docker.errors.NotFound:
        return True


def _seconds(stamp: str) -> float:
    """Docker's RFC 3339 time with nanoseconds → epoch seconds."""
    whole, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float("0." + (frac or "0"))


def test_a_one_cpu_node_starts_its_containers_one_at_a_time(two_nodes: Cluster) -> None:
    """Starting containers is CPU work for the runtime: cloud (one cpu) creates the next container only once
    the previous one has started, so the first of a burst is not slowed down by the rest."""
    engine = docker.from_env()
    with two_nodes.client() as c:
        ids = [c.submit(image=BASE_IMAGE, command=["sleep", "30"], origin="cloud", offloadable=False).id
               for _ in range(4)]
        wait_for(lambda: all(c.get(i).state == "running" for i in ids), 60, what="all running")
        stamps = []
        for i in ids:
            attrs = engine.api.inspect_container(c.get(i).current.container_id)
            stamps.append((_seconds(attrs["Created"]), _seconds(attrs["State"]["StartedAt"])))
        stamps.sort()
        for (_, started), (created, _) in itertools.pairwise(stamps):
            assert created >= started, stamps
        for i in ids:
            c.cancel(i)


def test_memory_limit_exceeded_is_reported_oomkilled(two_nodes: Cluster) -> None:
    with two_nodes.client() as c:
        task = c.run(image=BASE_IMAGE, command=["python3", "-c", "x = bytearray(200 * 1024 * 1024); print(len(x))"],
                     origin="edge", resources={"limits": {"memory": "48Mi"}}, timeout=60)
        assert task.state == "failed"
        assert task.current is not None and task.current.oom_killed
        assert "OOMKilled" in (task.current.error or "")


def test_cancel_stops_the_container(two_nodes: Cluster) -> None:
    with two_nodes.client() as c:
        task = c.submit(image=BASE_IMAGE, command=["sleep", "120"], origin="edge")
        wait_for(lambda: c.get(task.id).state == "running", 30, what="running")
        cid = c.get(task.id).current.container_id
        t0 = time.monotonic()
        assert c.cancel(task.id).state == "cancelled"
        client = docker.from_env()

        def gone() -> bool:
            try:
                return client.containers.get(cid).status != "running"
            except docker.errors.NotFound:
                return True

        wait_for(gone, 15, what="container stopped")
        assert time.monotonic() - t0 < 10


def test_agent_restart_readopts_running_container(two_nodes: Cluster) -> None:
    with two_nodes.client() as c:
        # Pinned to edge: however long the new agent takes to start (the node may be declared unreachable
        # meanwhile, and an offloadable task would rightly move), the attempt waits for it.
        task = c.submit(image=BASE_IMAGE, command=["python3", "-c", "import time; time.sleep(4); print('done')"],
                        origin="edge", offloadable=False)
        wait_for(lambda: c.get(task.id).state == "running", 30, what="running")
        before = c.get(task.id)
        two_nodes.agents["edge"].kill9()
        two_nodes.agents["edge"].start()
        done = c.wait(task.id, timeout=60)
        assert done.state == "succeeded"
        assert done.token == before.token and len(done.attempts) == 1  # the same attempt, re-adopted, not rerun
        assert done.current is not None and before.current is not None
        assert done.current.container_id == before.current.container_id  # the same container


def test_server_kill9_loses_nothing(two_nodes: Cluster) -> None:
    with two_nodes.client() as c:
        ids = [c.submit(image=BASE_IMAGE, command=["python3", "-c", "import time; time.sleep(1)"], origin="edge").id
               for _ in range(5)]
        assert two_nodes.server is not None
        two_nodes.server.kill9()
        two_nodes.server.start()
        two_nodes.wait_ready()
        done = [c.wait(i, timeout=120) for i in ids]
        assert [t.state for t in done] == ["succeeded"] * 5


def test_unpullable_image_fails_with_reason(two_nodes: Cluster) -> None:
    with two_nodes.client() as c:
        task = c.run(image="127.0.0.1:1/missing/image:nope", command=["true"], origin="edge", timeout=60)
        assert task.state == "failed"
        assert "cannot be pulled" in (task.current.error or "")


def test_sdk_errors_are_project_classes(two_nodes: Cluster) -> None:
    with two_nodes.client() as c:
        with pytest.raises(NotFound):
            c.get("t-doesnotexist")
        with pytest.raises(ValidationError) as err:
            c.submit(image=BASE_IMAGE, resources={"requests": {"cpu": "12Zi"}})
        assert err.value.details["field"] == "resources.requests.cpu"
        with pytest.raises(ValidationError):
            c.submit(image=BASE_IMAGE, origin="no-such-node")


def test_cli_run_exits_with_task_code_and_prints_where(two_nodes: Cluster) -> None:
    cli = [sys.executable, "-m", "updraft.main"]
    env_server = ["--server", two_nodes.url]
    out = subprocess.run([*cli, "run", "--origin", "edge", *env_server, BASE_IMAGE, "python3", "-c",
                          "print('from the task'); raise SystemExit(7)"], capture_output=True, text=True, timeout=120, env=two_nodes.env())
    assert out.returncode == 7, out.stderr
    assert "from the task" in out.stdout
    assert "on edge (local)" in out.stderr
    ps = subprocess.run([*cli, "ps", *env_server], capture_output=True, text=True, timeout=30, env=two_nodes.env())
    assert ps.returncode == 0 and "failed" in ps.stdout
    nodes = subprocess.run([*cli, "nodes", *env_server], capture_output=True, text=True, timeout=30, env=two_nodes.env())
    assert "edge" in nodes.stdout and "cloud" in nodes.stdout
    drain = subprocess.run([*cli, "node", "cordon", "cloud", *env_server], capture_output=True, text=True, timeout=30, env=two_nodes.env())
    assert drain.returncode == 0 and "cordoned=True" in drain.stdout
