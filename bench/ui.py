"""What the dashboard costs the control plane: heartbeats answered while Fleet pages are open.

Per run, against a fresh ``updraft server`` process (``tests.cluster``, authentication on): 1,000 simulated
nodes (``tests.browser.fleet``, the agents' wire protocol, no Docker) register and heartbeat every 5 s with
a load that changes on every beat (200 changed rows a second). Measured, in the same run:

* **baseline**: heartbeat round trips (p50, p99, max) over ``WINDOW`` seconds with no dashboard open;
* **with viewers**: the same with ``VIEWERS`` Fleet pages open — each logged in, its live stream read
  continuously, and its page loaded again every ``RELOAD`` seconds (the worst a person does: reload);
* the Fleet page's time to the first byte and its size, against ``GET /v1/nodes`` (the same 1,000 nodes as
  JSON) read the same way, and the bytes a live stream sends a second.

Why this and not the page render (that is measured in a browser by ``tests/browser/test_fleet_scale.py``):
the issue's promise is a dashboard that never slows the control plane down, and heartbeats are what a slow
event loop would delay first. ``--quick`` runs 10 s windows instead of 20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import table, write_results

from tests.browser.fleet import SimulatedFleet
from tests.cluster import Cluster

N, BEAT_S = 1000, 5.0
VIEWERS, RELOAD_S = 5, 5.0
WINDOW_S, QUICK_WINDOW_S = 20.0, 10.0
SERVER = {"image_policy": "off", "heartbeat_interval": BEAT_S,
          "detector": {"max_silence_seconds": 60, "min_std_seconds": 1.0, "acceptable_pause_seconds": 2.0}}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def beats(fleet: SimulatedFleet) -> dict[str, float]:
    lat = list(fleet.latency_ms)
    return {"count": len(lat), "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "max_ms": max(lat, default=0.0)}


class Viewer:
    """One open Fleet page: a session, its live stream read continuously, a reload every ``RELOAD_S``."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.loads_ms: list[float] = []
        self.page_bytes = 0
        self.stream_bytes = 0

    async def run(self, until: float) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            r = await http.post("/ui/login", data={"token": self.token})
            if r.status_code != 303:  # logged in: redirected to the dashboard
                raise RuntimeError(f"login refused: {r.status_code} {r.text[:200]}")
            while time.monotonic() < until:
                view = await self.load(http)
                stream_until = min(until, time.monotonic() + RELOAD_S)
                await self.follow(http, view, stream_until)

    async def load(self, http: httpx.AsyncClient) -> str:
        started = time.perf_counter()
        async with http.stream("GET", "/ui/fleet") as r:
            r.raise_for_status()
            first = True
            body = bytearray()
            async for chunk in r.aiter_bytes():
                if first:
                    self.loads_ms.append((time.perf_counter() - started) * 1000)
                    first = False
                body += chunk
        self.page_bytes = len(body)
        found = re.search(rb'data-view="([^"]+)"', body)
        return found.group(1).decode() if found else ""

    async def follow(self, http: httpx.AsyncClient, view: str, until: float) -> None:
        try:
            async with asyncio.timeout(max(0.1, until - time.monotonic())):
                async with http.stream("GET", "/ui/live/fleet", params={"view": view}) as r:
                    async for chunk in r.aiter_bytes():
                        self.stream_bytes += len(chunk)
        except TimeoutError:
            pass


async def api_nodes(url: str, headers: dict[str, str], times: int = 5) -> tuple[float, int]:
    ms, size = [], 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        for _ in range(times):
            started = time.perf_counter()
            async with http.stream("GET", "/v1/nodes") as r:
                first = None
                body = 0
                async for chunk in r.aiter_bytes():
                    first = first or time.perf_counter()
                    body += len(chunk)
            ms.append(((first or time.perf_counter()) - started) * 1000)
            size = body
    return statistics.median(ms), size


def run(window: float) -> dict[str, Any]:
    with Cluster(Path(tempfile.mkdtemp(prefix="updraft-bench-ui-"))) as c:
        c.start_server(**SERVER)
        operator = c.new_token("operator") if hasattr(c, "new_token") else None
        if operator is None:
            r = httpx.post(f"{c.url}/v1/tokens", json={"role": "operator"}, headers=c.headers, timeout=10)
            r.raise_for_status()
            operator = str(r.json()["token"])
        fleet = SimulatedFleet(c.url, N, BEAT_S, headers=c.headers)
        fleet.register()
        fleet.start()
        try:
            time.sleep(BEAT_S * 2)  # every node has beaten twice: the detector has a rhythm for each
            fleet.latency_ms.clear()
            time.sleep(window)
            baseline = beats(fleet)
            api_ms, api_bytes = asyncio.run(api_nodes(c.url, c.headers))

            viewers = [Viewer(c.url, operator) for _ in range(VIEWERS)]
            fleet.latency_ms.clear()

            async def watch() -> None:
                until = time.monotonic() + window
                await asyncio.gather(*(v.run(until) for v in viewers))

            asyncio.run(watch())
            loaded = beats(fleet)
        finally:
            fleet.stop()
    loads = [ms for v in viewers for ms in v.loads_ms]
    return {
        "nodes": N,
        "heartbeats_per_s": N / BEAT_S,
        "viewers": VIEWERS,
        "reload_every_s": RELOAD_S,
        "window_s": window,
        "heartbeat_baseline": baseline,
        "heartbeat_with_viewers": loaded,
        "p99_ratio": loaded["p99_ms"] / baseline["p99_ms"] if baseline["p99_ms"] else None,
        "fleet_page_ttfb_ms_median": statistics.median(loads) if loads else None,
        "fleet_page_loads": len(loads),
        "fleet_page_bytes": viewers[0].page_bytes,
        "api_nodes_ttfb_ms_median": api_ms,
        "api_nodes_bytes": api_bytes,
        "stream_bytes_per_s_per_viewer": sum(v.stream_bytes for v in viewers) / VIEWERS / window,
        "beat_errors": fleet.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(QUICK_WINDOW_S if args.quick else WINDOW_S)
    b, v = result["heartbeat_baseline"], result["heartbeat_with_viewers"]
    print(table(
        ["heartbeats (1,000 nodes, 200/s)", "count", "p50 ms", "p99 ms", "max ms"],
        [["no dashboard open (baseline)", b["count"], f"{b['p50_ms']:.1f}", f"{b['p99_ms']:.1f}", f"{b['max_ms']:.0f}"],
         [f"{VIEWERS} Fleet pages open, reloading every {RELOAD_S:.0f} s", v["count"], f"{v['p50_ms']:.1f}",
          f"{v['p99_ms']:.1f}", f"{v['max_ms']:.0f}"]],
    ))
    print()
    print(table(
        ["read of 1,000 nodes", "first byte ms (median)", "bytes"],
        [["Fleet page (/ui/fleet)", f"{result['fleet_page_ttfb_ms_median']:.0f}", result["fleet_page_bytes"]],
         ["API (/v1/nodes)", f"{result['api_nodes_ttfb_ms_median']:.0f}", result["api_nodes_bytes"]]],
    ))
    print(f"\nlive stream: {result['stream_bytes_per_s_per_viewer'] / 1000:.1f} kB/s per open Fleet page")
    print(f"wrote {write_results('ui', result)}")


if __name__ == "__main__":
    main()
