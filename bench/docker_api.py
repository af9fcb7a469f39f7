"""What the Docker API front door costs: ``docker run --rm`` of a no-op container through Updraft against the
local engine.

The unchanged ``docker`` CLI runs ``docker run --rm updraft/noop:latest true`` with ``DOCKER_HOST`` pointed at
the edge agent's Docker API socket, and the same command against the local engine, interleaved, ``RUNS``
each after a warm-up; whole processes timed, medians compared. Twice:

* **local**: the edge is idle, so the normal policy keeps every container on the edge (goal: median ratio
  ≤ 1.3);
* **offloaded**: a pinned task requesting all of the edge's CPU makes it 100 % committed, so every container
  goes to the cloud agent and its output comes back over the control plane.

Every Updraft run is checked afterwards to have been placed as its arm says. Real processes
(``tests.cluster``), the real Docker engine. Prints a table and writes ``bench/results/docker_api.json``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from _common import ROOT, table, write_results
from overhead import interleaved, run_process

from tests.cluster import BASE_IMAGE, NOOP_IMAGE, Cluster, ensure_docker, wait_for

RUNS = 30
WARMUP = 3
COMMAND = ["true"]


def docker_run(host: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    if host:
        env["DOCKER_HOST"] = host
    args = ["docker", "run", "--rm", NOOP_IMAGE, *COMMAND]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"DOCKER_HOST={host} {' '.join(args)} exited {out.returncode}: {out.stderr[-500:]}")


def placements(cluster: Cluster, after: int) -> Counter[str]:
    """How the Docker API's tasks were placed, skipping the first ``after`` of them (oldest first)."""
    with cluster.client() as c:
        mine = [t for t in c.list(limit=10000) if "updraft.docker/container" in t.spec.labels]
    mine.sort(key=lambda t: t.created_at)
    return Counter(t.current.placement if t.current else "none" for t in mine[after:])


def main() -> None:
    ensure_docker()
    run_process(["docker", "image", "inspect", NOOP_IMAGE])  # present already; nothing here pulls
    sock = Path(tempfile.mkdtemp(prefix="ud-")) / "docker.sock"
    host = f"unix://{sock}"
    with Cluster() as cluster:
        cluster.start_server()
        cluster.start_agent("edge", tags=["edge"], env={"UPDRAFT_DOCKER_API": host})
        cluster.start_agent("cloud", tags=["low-util"])
        wait_for(sock.exists, 10, what="docker api socket")
        cases = {"updraft": lambda: docker_run(host), "docker": lambda: docker_run(None)}

        interleaved(cases, WARMUP)
        local = interleaved(cases, RUNS)
        local_places = placements(cluster, WARMUP)

        with cluster.client() as c:
            capacity = c.node("edge").capacity.cpu_millis
            hog = c.submit(image=BASE_IMAGE, command=["sleep", "3600"], origin="edge", offloadable=False,
                           resources={"requests": {"cpu": f"{capacity}m"}})
            wait_for(lambda: c.get(hog.id).state == "running", 60, what="the edge's own work running")
            interleaved(cases, WARMUP)
            busy = interleaved(cases, RUNS)
            c.cancel(hog.id)
        busy_places = placements(cluster, 2 * WARMUP + RUNS)

    if local_places != Counter({"local": RUNS}) or busy_places != Counter({"offload": RUNS}):
        raise RuntimeError(f"placements not as intended: idle edge {dict(local_places)}, busy {dict(busy_places)}")
    up, dk = statistics.median(local["updraft"]), statistics.median(local["docker"])
    off, dk_busy = statistics.median(busy["updraft"]), statistics.median(busy["docker"])
    docker_s = statistics.median(local["docker"] + busy["docker"])
    figures = {
        "local_ratio": round(up / dk, 3),
        "offloaded_s": round(off, 4),
        "docker_s": round(docker_s, 4),
        "local_s": round(up, 4),
        "docker_local_phase_s": round(dk, 4),
        "docker_offload_phase_s": round(dk_busy, 4),
        "offloaded_ratio": round(off / dk_busy, 3),
        "runs": RUNS,
        "image": NOOP_IMAGE,
    }
    print(table(
        ["docker run --rm (median s)", "through Updraft", "local engine", "ratio", "goal"],
        [
            ["edge idle: stays local", f"{up:.4f}", f"{dk:.4f}", f"{up / dk:.3f}", "≤ 1.3"],
            ["edge busy: offloaded to the cloud", f"{off:.4f}", f"{dk_busy:.4f}", f"{off / dk_busy:.3f}", ""],
        ],
    ))
    print(f"{RUNS} interleaved runs each after {WARMUP} warm-up; every Updraft run placed as intended")
    print(f"wrote {write_results('docker_api', figures).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
