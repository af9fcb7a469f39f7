"""The demo's measurement: the same burst of CPU-heavy tasks from a busy edge node, without and with offload.

An "edge" agent models a small device: half a CPU (a cgroup parent with a CFS quota on cpu 0, enforced on all
its containers) already busy with its own workload (a pinned, non-offloadable task burning ~40 % of it). A
"cloud" agent has a full CPU (cpu 1) and carries the ``low-util`` tag. The burst is submitted from the edge
twice — offload disabled, then enabled — each on a fresh server. Prints the seed's table and writes
``bench/results/offload.json``.

A third run, offload enabled with ``--cpu-excess shared`` on both agents, is the baseline for how the agents
hand out the CPU nobody requested: Kubernetes' proportional shares instead of Updraft's default, all of it to
the oldest task (docs/architecture.md, "CPU weights").
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from _common import table, write_results

from tests.cluster import BASE_IMAGE, Cluster, ensure_docker, wait_for

TASKS = 8
ROUNDS = 2
WORK = 3_600_000  # sha256 rounds per task: about 1.5 CPU-seconds here
BURN = f"import hashlib\nh=b'x'\nfor _ in range({WORK}): h=hashlib.sha256(h).digest()\nprint(h.hex()[:16])"
# The device's own work: 20 ms of cpu every 100 ms, i.e. 0.2 cpu = 40 % of the edge.
DEVICE_LOAD = "import time\nwhile True:\n t=time.process_time()\n while time.process_time()-t<0.02: pass\n time.sleep(0.08)"
POLICY = {"scheduler": "offload", "threshold_cpu": 75, "threshold_memory": 80, "target_node_tags": ["edge", "low-util"]}


def edge_cpu_seconds() -> float:
    for path in (Path("/sys/fs/cgroup/cpuacct/updraft-edge/cpuacct.usage"),):
        if path.exists():
            return int(path.read_text()) / 1e9
    usage = Path("/sys/fs/cgroup/updraft-edge/cpu.stat").read_text().split()
    return int(usage[usage.index("usage_usec") + 1]) / 1e6


def run_burst(enable_offload: bool, cpu_excess: str = "oldest") -> dict[str, float]:
    with Cluster(server_config={**POLICY, "enable_offload": enable_offload}) as cluster:
        # The control plane and both agents run on cpu 0 beside the edge's containers, so that the cloud's
        # containers get cpu 1 to themselves, as a separate machine's would.
        pin = ["taskset", "-c", "0"]
        cluster.start_server(prefix=pin)
        cluster.start_agent("edge", tags=["edge"], cpus="0.5", cpuset="0", memory="1Gi", prefix=pin,
                            cpu_excess=cpu_excess)
        cluster.start_agent("cloud", tags=["low-util"], cpus="1", cpuset="1", memory="2Gi", prefix=pin,
                            cpu_excess=cpu_excess)
        with cluster.client() as c:
            device = c.submit(image=BASE_IMAGE, command=["python3", "-c", DEVICE_LOAD], origin="edge",
                              offloadable=False, resources={"requests": {"cpu": "200m"}})
            wait_for(lambda: c.get(device.id).state == "running", 30, what="device workload running")
            time.sleep(3)  # let the edge's measured load settle at its own workload
            cpu0, t0 = edge_cpu_seconds(), time.monotonic()
            ids = [c.submit(image=BASE_IMAGE, command=["python3", "-c", BURN], origin="edge",
                            resources={"requests": {"cpu": "100m"}}).id for _ in range(TASKS)]
            done = [c.wait(i, timeout=300) for i in ids]
            cpu1, t1 = edge_cpu_seconds(), time.monotonic()
            c.cancel(device.id)
        failed = [t.id for t in done if t.state != "succeeded"]
        if failed:
            raise RuntimeError(f"tasks failed: {failed}")
        times = [(t.current.finished_at or 0) - t.created_at for t in done if t.current]
        offloaded = sum(1 for t in done if t.current and t.current.placement == "offload")
        return {
            "mean_ms": statistics.mean(times) * 1000,
            "edge_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0) / 0.5,
            "offloaded": offloaded,
        }


def mean_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.mean(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ensure_docker()
    # Interleaved rounds, each with all three arms, so that a slow spell of this shared machine hits every arm.
    arms: dict[str, list[dict[str, float]]] = {"local": [], "offload": [], "shared": []}
    for _ in range(ROUNDS):
        arms["local"].append(run_burst(enable_offload=False))
        arms["offload"].append(run_burst(enable_offload=True))
        arms["shared"].append(run_burst(enable_offload=True, cpu_excess="shared"))
    local, offload, shared = (mean_of(arms[k]) for k in ("local", "offload", "shared"))
    figures = {
        "local_mean_ms": round(local["mean_ms"], 1),
        "offload_mean_ms": round(offload["mean_ms"], 1),
        "local_edge_cpu_pct": round(local["edge_cpu_pct"], 1),
        "offload_edge_cpu_pct": round(offload["edge_cpu_pct"], 1),
        "tasks": TASKS,
        "offloaded": round(offload["offloaded"], 1),
        "ratio": round(offload["mean_ms"] / local["mean_ms"], 3),
        "offload_shared_mean_ms": round(shared["mean_ms"], 1),
        "offload_shared_edge_cpu_pct": round(shared["edge_cpu_pct"], 1),
        "shared_ratio": round(shared["mean_ms"] / local["mean_ms"], 3),
        "rounds": ROUNDS,
        "local_ms_per_round": [round(r["mean_ms"], 1) for r in arms["local"]],
        "offload_ms_per_round": [round(r["mean_ms"], 1) for r in arms["offload"]],
        "ratio_per_round": [
            round(o["mean_ms"] / lo["mean_ms"], 3) for o, lo in zip(arms["offload"], arms["local"], strict=True)
        ],
    }
    print(table(["strategy", "mean task time (ms)", "edge CPU use (%)", "offloaded"], [
        ["local only", f"{figures['local_mean_ms']:.0f}", f"{figures['local_edge_cpu_pct']:.0f}", 0],
        ["offload, spare cpu shared (Kubernetes)", f"{figures['offload_shared_mean_ms']:.0f}",
         f"{figures['offload_shared_edge_cpu_pct']:.0f}", f"{shared['offloaded']:.0f}/{TASKS}"],
        ["offload", f"{figures['offload_mean_ms']:.0f}", f"{figures['offload_edge_cpu_pct']:.0f}",
         f"{offload['offloaded']:.0f}/{TASKS}"],
    ]))
    print(f"means of {ROUNDS} interleaved rounds; offload / local mean time: {figures['ratio']:.2f} (goal ≤ 0.40; "
          f"per round {figures['ratio_per_round']}); with spare cpu shared: {figures['shared_ratio']:.2f}")
    print(f"wrote {write_results('offload', figures)}")


if __name__ == "__main__":
    main()
