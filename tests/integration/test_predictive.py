"""Predictive offload with a real agent: its load ramps (a real container burning more cpu each second)."""

from __future__ import annotations

import pytest

from tests.cluster import BASE_IMAGE, Cluster, wait_for

# Burns a growing share of one cpu: 5 % at start, +1 % of a cpu per second, i.e. +2 % of a half-cpu edge.
RAMP = """
import time
t0 = time.monotonic()
while True:
    duty = min(0.05 + 0.01 * (time.monotonic() - t0), 0.5)
    t = time.monotonic()
    while time.monotonic() - t < 0.1 * duty:
        pass
    time.sleep(0.1 * (1 - duty))
"""


@pytest.mark.parametrize("predictive", [True, False])
def test_ramping_origin_offloaded_before_threshold_only_when_predictive(cluster: Cluster, predictive: bool) -> None:
    cluster.server_config = {"predictive": predictive, "horizon_seconds": 30, "threshold_cpu": 75}
    cluster.start_server()
    cluster.start_agent("edge", tags=["edge"], cpus="0.5", cpuset="0", memory="1Gi")
    cluster.start_agent("cloud", tags=["low-util"], cpus="1", cpuset="1", memory="1Gi")
    with cluster.client() as c:
        c.submit(image=BASE_IMAGE, command=["python3", "-c", RAMP], origin="edge", offloadable=False,
                 resources={"requests": {"cpu": "10m"}})

        def edge_cpu() -> float:
            return c.node("edge").metrics.cpu_pct

        # Wait until the ramp is well on its way but clearly under the 75 % threshold.
        wait_for(lambda: 50 <= edge_cpu() < 70, 90, interval=0.2, what="edge between 50 % and 70 %")
        load = edge_cpu()
        probe = c.run(image=BASE_IMAGE, command=["true"], origin="edge",
                      resources={"requests": {"cpu": "10m"}, "limits": {"cpu": "100m"}}, timeout=60)
        att = probe.current
        assert att is not None and probe.state == "succeeded"
        if predictive:
            assert att.node == "cloud", f"at edge cpu {load:.0f}%: {att.reason}"
            assert "origin predicted to overload" in att.reason
        else:
            assert att.node == "edge", f"at edge cpu {load:.0f}%: {att.reason}"
            assert att.reason.startswith("local:")
