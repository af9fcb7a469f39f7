"""Extended resources end to end (issue 20): GPUs declared by an agent, counted by the scheduler, handed to
containers one each — real server, agents and dockerd. The device side is the NVIDIA runtime's environment
contract (``--device-mode env``: ``NVIDIA_VISIBLE_DEVICES``), since this machine has no GPU; the accounting is
the real one."""

from __future__ import annotations

from tests.cluster import BASE_IMAGE, Cluster, wait_for

GPU = "nvidia.com/gpu"
TOLERATE = [{"key": GPU, "operator": "Exists"}]


def test_gpus_are_counted_and_each_container_gets_its_own(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_agent("gpu-1", cpus="1", cpuset="0", memory="1Gi", taints=[f"{GPU}=present:NoSchedule"],
                        extra=["--extended-resource", f"{GPU}=2"], env={"UPDRAFT_DEVICE_MODE": "env"})
    cluster.start_agent("cpu-1", cpus="1", cpuset="1", memory="1Gi")
    with cluster.client() as c:
        assert c.node("gpu-1").capacity.extended == {GPU: 2}

        def gpu_task() -> str:
            return c.submit(image=BASE_IMAGE, command=["sh", "-c", "echo gpus=$NVIDIA_VISIBLE_DEVICES; sleep 60"],
                            resources={"requests": {"cpu": "100m", GPU: 1}}, tolerations=TOLERATE).id

        first, second = gpu_task(), gpu_task()
        wait_for(lambda: all(c.get(t).state == "running" for t in (first, second)), 60, what="two GPU tasks running")
        third = gpu_task()
        plain = c.run(image=BASE_IMAGE, command=["true"], resources={"requests": {"cpu": "100m"}}, timeout=60)
        assert plain.current is not None and plain.current.node == "cpu-1"  # the taint keeps it off the GPU node
        wait_for(lambda: "insufficient nvidia.com/gpu" in c.get(third).reason, 30, what="the third task waits")
        assert c.get(third).state == "pending"
        assert all(c.get(t).node == "gpu-1" for t in (first, second))

        def gpus_of(task_id: str) -> str:
            lines = [ln["data"] for ln in c.logs(task_id) if ln["data"].startswith("gpus=")]
            return lines[0].removeprefix("gpus=") if lines else ""

        wait_for(lambda: gpus_of(first) and gpus_of(second), 30, what="GPU tasks printed their devices")
        held = {gpus_of(first), gpus_of(second)}
        assert held == {"0", "1"}  # one each, never the same one

        c.cancel(first)
        wait_for(lambda: c.get(third).state == "running", 60, what="the third task takes the freed GPU")
        assert c.get(third).node == "gpu-1"
        wait_for(lambda: gpus_of(third), 30, what="third printed its device")
        assert gpus_of(third) == gpus_of(first)
        c.cancel(second)
        c.cancel(third)
