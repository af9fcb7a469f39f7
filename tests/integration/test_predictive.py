"""Predictive offload with a real agent: its load ramps (a real container burning more cpu each second)."""

from __future__ import annotations

import time

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
            return float(c.node("edge").metrics.cpu_pct)

        # Probe once a second while the ramp climbs from 40 % towards (but below) the 75 % threshold.
        wait_for(lambda: edge_cpu() >= 40, 90, interval=0.2, what="edge at 40 %")
        placements: list[tuple[float, str, str]] = []
        while (load := edge_cpu()) < 70:
            probe = c.run(image=BASE_IMAGE, command=["true"], origin="edge",
                          resources={"requests": {"cpu": "10m"}, "limits": {"cpu": "10m"}}, timeout=60)
            att = probe.current
            assert att is not None and probe.state == "succeeded"
            placements.append((load, att.node, att.reason))
            time.sleep(1)
        assert placements, "the ramp passed 70 % before any probe"
        early = [p for p in placements if p[1] == "cloud"]
        if predictive:
            assert early, f"never offloaded below 70 %: {placements}"
            # The first early offload is the prediction's; after it the origin is in offload mode (hysteresis).
            assert "origin predicted to overload" in early[0][2], placements
        else:
            assert not early, f"offloaded below the threshold without prediction: {early}"
            assert all(why.startswith("local:") for _, _, why in placements), placements
