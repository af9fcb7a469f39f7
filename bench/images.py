"""What image locality and multi-stage builds buy: offload latency with the image cached on the target vs not,
and the size of the example's multi-stage image vs a single-stage build of the same app.

Setup: a real registry (Debian's docker-registry on 127.0.0.1), a server with ``image_policy: enforce``, an
``edge`` origin kept over its cpu threshold by a pinned task of its own, and two targets: ``near`` on the
engine the example was built on (it holds the image) and ``far`` on a second Docker engine whose image store
is emptied before each run (a device that has never pulled it). One target is cordoned per run, so the
same task from the same origin is offloaded to a cached or an uncached target. Offload latency is submit →
container started on the target (pull included); completion is reported too.

Writes ``bench/results/images.json``: ``cached_s``, ``uncached_s``, ``multistage_mb``, ``singlestage_mb`` (and
the details), and prints a table.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import docker
from _common import table, write_results

from tests.cluster import BASE_IMAGE, Cluster, ensure_docker, wait_for
from tests.tools.imagehost import ExtraDockerd, Registry, build_example, untag_pushed, updraft

RUNS = 3
MB = 1e6


def image_sizes(pinned: str) -> tuple[float, float]:
    """(size on disk, bytes a node pulls) in MB for a pushed image."""
    from updraft.images import ImageRef, RegistryClient

    on_disk = docker.from_env().images.get(pinned).attrs["Size"] / MB
    pulled = RegistryClient().resolve(ImageRef.parse(pinned)).size or 0
    return on_disk, pulled / MB


def offload_once(c: Any, image: str) -> dict[str, Any]:
    task = c.run(image=image, origin="edge", timeout=300)
    att = task.current
    if task.state != "succeeded" or att is None or att.placement != "offload":
        raise RuntimeError(f"task {task.id} {task.state} ({task.reason}); attempt {att}")
    assert att.started_at is not None and att.finished_at is not None
    return {"start_s": att.started_at - task.created_at, "done_s": att.finished_at - task.created_at,
            "node": att.node, "reason": att.reason}


def hold_edge(c: Any, image: str) -> str:
    """A long, pinned, non-offloadable task committing all of edge's cpu: every other task from edge offloads."""
    task = c.submit(image=image, origin="edge", offloadable=False, resources={"requests": {"cpu": "500m"}},
                    command=["python3", "-c", "import time; time.sleep(600)"])
    wait_for(lambda: c.get(task.id).state == "running", 60, what="edge held")
    return str(task.id)


def measure(image: str, hold_image: str, far_engine: ExtraDockerd) -> dict[str, Any]:
    with Cluster(server_config={"image_policy": "enforce"}) as cluster:
        cluster.start_server()
        cluster.start_agent("edge", tags=["edge"], cpus="0.5", cpuset="0", memory="1Gi")
        cluster.start_agent("near", tags=["low-util"], cpus="1", cpuset="1", memory="2Gi")
        cluster.start_agent("far", tags=["low-util"], cpus="1", cpuset="1", memory="2Gi",
                            env={"DOCKER_HOST": far_engine.host})
        with cluster.client() as c:
            hold = hold_edge(c, hold_image)
            c.cordon("far")
            cached = [offload_once(c, image) for _ in range(RUNS)]
            c.uncordon("far")
            c.cordon("near")
            uncached = []
            for _ in range(RUNS):
                for ref in far_engine.docker("images", "-q").stdout.split():
                    far_engine.docker("rmi", "-f", ref)
                wait_for(lambda: not c.node("far").images, 60, what="far forgets the image")
                uncached.append(offload_once(c, image))
            bandwidth = wait_for(lambda: c.node("far").bandwidth, 60, what="far reports its pull rate")
            c.cancel(hold)
    return {"cached": cached, "uncached": uncached, "far_bandwidth_MBps": bandwidth / MB}


def main() -> None:
    ensure_docker()
    with tempfile.TemporaryDirectory(prefix="updraft-bench-") as tmp, Registry(Path(tmp)) as registry:
        multi = build_example(f"{registry.host}/example:multi")
        single = build_example(f"{registry.host}/example:single", dockerfile="Dockerfile.single")
        pushed = updraft("push", BASE_IMAGE, "--registry", registry.host, "-q")  # enforce: hold by digest
        if pushed.returncode != 0:
            raise RuntimeError(pushed.stderr)
        multi_disk, multi_pull = image_sizes(multi)
        single_disk, single_pull = image_sizes(single)
        try:
            with ExtraDockerd() as far_engine:
                runs = measure(multi, pushed.stdout.strip(), far_engine)
        finally:
            untag_pushed(registry.host)
    cached = statistics.median(r["start_s"] for r in runs["cached"])
    uncached = statistics.median(r["start_s"] for r in runs["uncached"])
    figures = {
        "cached_s": round(cached, 3),
        "uncached_s": round(uncached, 3),
        "multistage_mb": round(multi_disk, 1),
        "singlestage_mb": round(single_disk, 1),
        "multistage_pull_mb": round(multi_pull, 1),
        "singlestage_pull_mb": round(single_pull, 1),
        "cached_done_s": round(statistics.median(r["done_s"] for r in runs["cached"]), 3),
        "uncached_done_s": round(statistics.median(r["done_s"] for r in runs["uncached"]), 3),
        "far_bandwidth_MBps": round(runs["far_bandwidth_MBps"], 1),
        "runs": RUNS,
        "digest": multi.rpartition("@")[2],
    }
    print(table(["offload target", "submit → started (s)", "submit → done (s)"], [
        ["image cached", f"{figures['cached_s']:.2f}", f"{figures['cached_done_s']:.2f}"],
        ["not cached", f"{figures['uncached_s']:.2f}", f"{figures['uncached_done_s']:.2f}"],
    ]))
    print()
    print(table(["example build", "image size (MB)", "pulled (MB, compressed)"], [
        ["multi-stage", f"{figures['multistage_mb']:.1f}", f"{figures['multistage_pull_mb']:.1f}"],
        ["single-stage", f"{figures['singlestage_mb']:.1f}", f"{figures['singlestage_pull_mb']:.1f}"],
    ]))
    print(f"far's measured pull rate: {figures['far_bandwidth_MBps']:.0f} MB/s (loopback registry)")
    print(f"wrote {write_results('images', figures)}")


if __name__ == "__main__":
    main()
