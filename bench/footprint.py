"""Server memory and idle responsiveness at fleet size: 5,000 nodes and 10,000 tasks (issue 13, "bounded memory").

A real ``updraft server`` in a temporary data directory. The baseline is the same process idle and empty,
measured in the same run. Then 5,000 simulated nodes register (the agent's wire protocol, no Docker) and keep
beating (every ``BEAT_S`` seconds, with the server told that interval so the detector judges them by it), and
10,000 tasks are submitted; the scheduler places them (each asks for 100m, so every one fits). Measured: the
server's RSS (psutil) empty, after the nodes, after the tasks and at the end; how many were placed; ``/health``
latency while the fleet beats; and false suspicions (no simulated node ever stops).

Goal: RSS ≤ 200 MB with 10,000 tasks and 5,000 nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import psutil
from _common import table, write_results
from _http1 import Connection

from tests.cluster import Cluster

NODES, TASKS, BEAT_S = 5000, 10_000, 5.0
BODY = {"image": "busybox:1.36", "command": ["true"], "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}


def rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


AUTH: dict[str, str] = {}
"""The admin's Authorization header, set once the server is up (authentication is on by default)."""


async def register(port: int, names: list[str]) -> None:
    async def some(chunk: list[str]) -> None:
        c = Connection("127.0.0.1", port)
        for name in chunk:
            body = {"capacity": {"cpu": "4", "memory": "8Gi"}, "tags": ["edge"], "labels": {"zone": name[-1]}}
            reply = await c.request("PUT", f"/v1/nodes/{name}", body, headers=AUTH, timeout=60)
            assert reply.status == 200, reply.body[:200]
        c.close()

    await asyncio.gather(*(some(names[i::50]) for i in range(50)))


async def beat(port: int, names: list[str], stop: asyncio.Event) -> None:
    """Every node beats once per BEAT_S, spread over the interval, on 250 connections."""

    async def lane(chunk: list[str]) -> None:
        c = Connection("127.0.0.1", port)
        gap = BEAT_S / max(len(chunk), 1)
        while not stop.is_set():
            for name in chunk:
                t = time.monotonic()
                await c.request("POST", f"/v1/nodes/{name}/heartbeat",
                                {"cpu_pct": 10, "memory_pct": 20, "sent_at": time.time()}, headers=AUTH, timeout=60)
                await asyncio.sleep(max(0.0, gap - (time.monotonic() - t)))
                if stop.is_set():
                    break
        c.close()

    await asyncio.gather(*(lane(names[i::250]) for i in range(250)))


async def submit(port: int, n: int) -> int:
    accepted = 0

    async def some(count: int) -> None:
        nonlocal accepted
        c = Connection("127.0.0.1", port)
        for _ in range(count):
            while True:
                reply = await c.request("POST", "/v1/tasks", BODY, headers={"Idempotency-Key": uuid.uuid4().hex, **AUTH},
                                        timeout=60)
                if reply.status in (200, 201):
                    accepted += 1
                    break
                await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
        c.close()

    await asyncio.gather(*(some(n // 20) for _ in range(20)))
    return accepted


async def probe(port: int, samples: list[float], stop: asyncio.Event) -> None:
    c = Connection("127.0.0.1", port)
    while not stop.is_set():
        t = time.perf_counter()
        await c.request("GET", "/health", None, timeout=60)
        samples.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(0.1)
    c.close()


async def count(port: int, path: str) -> list:  # type: ignore[type-arg]
    return list((await Connection("127.0.0.1", port).request("GET", path, None, headers=AUTH, timeout=60)).json())


async def run(nodes: int, tasks: int) -> dict[str, object]:
    config = {"image_policy": "off", "heartbeat_interval": BEAT_S, "detector": {"max_silence_seconds": 6 * BEAT_S}}
    with Cluster(server_config=config) as cluster:
        server = cluster.start_server()
        cluster.wait_ready()
        port, pid = cluster.port, server.pid
        AUTH.update(cluster.headers)
        await asyncio.sleep(2)
        empty = rss_mb(pid)
        names = [f"fp-{i:05d}" for i in range(nodes)]
        t0 = time.monotonic()
        await register(port, names)
        registered_s = time.monotonic() - t0
        stop, health = asyncio.Event(), list[float]()
        beating = asyncio.create_task(beat(port, names, stop))
        probing = asyncio.create_task(probe(port, health, stop))
        with_nodes = rss_mb(pid)
        t0 = time.monotonic()
        accepted = await submit(port, tasks)
        submitted_s = time.monotonic() - t0
        deadline = time.monotonic() + 120
        placed = 0
        while time.monotonic() < deadline:
            placed = len(await count(port, "/v1/tasks?state=scheduled&limit=10000"))
            if placed >= accepted:
                break
            await asyncio.sleep(1)
        await asyncio.sleep(3 * BEAT_S)  # the fleet beats on, fully loaded
        end = rss_mb(pid)
        peak = max(end, with_nodes)
        stop.set()
        await asyncio.gather(beating, probing)
        events = await count(port, "/v1/events?limit=10000")
        suspicions = sum(1 for e in events if e["kind"] in ("node-suspect", "node-unreachable"))
        health.sort()
    return {
        "nodes": nodes,
        "tasks": accepted,
        "placed": placed,
        "rss_empty_mb": empty,
        "rss_nodes_mb": with_nodes,
        "rss_mb": peak,
        "register_per_s": round(nodes / registered_s, 1),
        "submit_per_s": round(accepted / submitted_s, 1),
        "health_p50_ms": round(statistics.median(health), 1),
        "health_p99_ms": round(health[int(0.99 * (len(health) - 1))], 1),
        "false_suspicions": suspicions,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=NODES)
    ap.add_argument("--tasks", type=int, default=TASKS)
    args = ap.parse_args()
    r = asyncio.run(run(args.nodes, args.tasks))
    rows = [
        ["idle, empty (baseline)", "0", "0", r["rss_empty_mb"]],
        [f"{r['nodes']} nodes", r["nodes"], "0", r["rss_nodes_mb"]],
        [f"{r['nodes']} nodes, {r['tasks']} tasks", r["nodes"], r["tasks"], r["rss_mb"]],
    ]
    print(table(["server", "nodes", "tasks", "RSS MB"], rows))
    print(f"placed {r['placed']}/{r['tasks']}; /health p50 {r['health_p50_ms']} ms, p99 {r['health_p99_ms']} ms "
          f"while {r['nodes']} nodes beat every {BEAT_S:g} s; false suspicions {r['false_suspicions']}; "
          f"goal RSS <= 200 MB: {'met' if float(r['rss_mb']) <= 200 else 'NOT met'}")  # type: ignore[arg-type]
    write_results("footprint", {**r, "goal_rss_mb": 200, "beat_s": BEAT_S})


if __name__ == "__main__":
    main()
