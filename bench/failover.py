"""Failover: how fast a task moves off a node that dies, and whether a jittery link is mistaken for one.

1. ``kill -9`` the agent running a task; time from the kill to the replacement container running on the other
   node (watched in Docker), median of ``--runs`` runs with the default settings (heartbeat 1 s).
2. Meanwhile, a third agent heartbeats through a proxy adding 0–300 ms of random delay for ``--minutes``;
   count how often the failure detector suspected it (it never should).

Writes ``bench/results/failover.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import docker
from _common import table, write_results

from tests.cluster import BASE_IMAGE, Cluster, ensure_docker, wait_for
from tests.tools.faultproxy import FaultProxy

PEERS = [("Kubernetes (default eviction)", "~300 s"), ("Nomad (heartbeat grace)", "≥ 20 s"),
         ("Ray (node death)", "20–55 s"), ("Dask (worker TTL)", "300 s")]


def replacement_running(client: docker.DockerClient, cluster: Cluster, task_id: str, old_token: int) -> bool:
    for c in client.containers.list(filters={"label": [f"updraft.task={task_id}",
                                                        f"updraft.cluster={cluster.cluster_id}"]}):
        if int(c.labels["updraft.token"]) != old_token and c.status == "running":
            return True
    return False


def failover_once(cluster: Cluster, docker_client: docker.DockerClient) -> float:
    with cluster.client() as c:
        task = c.submit(image=BASE_IMAGE, command=["sleep", "120"], origin="a",
                        resources={"requests": {"cpu": "10m"}})
        wait_for(lambda: c.get(task.id).state == "running", 60, what="task running on a")
        token = c.get(task.id).token
        assert token is not None
        killed = time.monotonic()
        cluster.agents["a"].kill9()
        wait_for(lambda: replacement_running(docker_client, cluster, task.id, token), 60, interval=0.01,
                 what="replacement running")
        elapsed = time.monotonic() - killed
        c.cancel(task.id)
    cluster.agents["a"].start()
    cluster.wait_node("a")
    time.sleep(3)  # let the detector learn the restarted agent's heartbeats
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    ensure_docker()
    docker_client = docker.from_env()
    with Cluster(server_config={"enable_offload": False}) as cluster:
        cluster.start_server()
        cluster.start_agent("a", cpus="1", memory="1Gi")
        cluster.start_agent("b", cpus="1", memory="1Gi")
        with FaultProxy(("127.0.0.1", cluster.port), latency=0.15, jitter=0.15, jitter_mode="connection") as proxy:
            began = time.monotonic()
            cluster.start_agent("jittery", cpus="1", memory="1Gi", server=proxy.url)
            times = [failover_once(cluster, docker_client) for _ in range(args.runs)]
            time.sleep(max(0.0, args.minutes * 60 - (time.monotonic() - began)))
            minutes = (time.monotonic() - began) / 60
            with cluster.client() as c:
                events = c.events(after=0)
            suspicions = [e for e in events if e.node == "jittery" and e.kind in ("node-suspect", "node-unreachable")]
    figures = {
        "median_failover_s": round(statistics.median(times), 3),
        "runs": len(times),
        "failover_s": [round(t, 3) for t in times],
        "false_suspicions": len(suspicions),
        "heartbeat_minutes": round(minutes, 2),
    }
    print(table(["system", "time to move work off a dead node"],
                [["Updraft (φ-accrual, heartbeat 1 s)", f"{figures['median_failover_s']:.2f} s (median of "
                  f"{len(times)}; max {max(times):.2f} s)"], *[[n, v] for n, v in PEERS]]))
    print(f"false suspicions over {minutes:.1f} min of heartbeats with 0–300 ms delay: {len(suspicions)}")
    print(f"wrote {write_results('failover', figures)}")


if __name__ == "__main__":
    main()
