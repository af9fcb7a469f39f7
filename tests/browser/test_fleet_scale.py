"""The Fleet page with 1,000 simulated nodes: how fast it renders, and that it keeps up under live updates.

A real server; 1,000 nodes registered through the API and heartbeating with a CPU load that changes on every
beat (each node every 5 s: 200 changed rows a second). Measured in the browser, and written to
``artifacts/browser/fleet_1000.json`` (the README quotes it):

* render: navigation start → the page's script has wired the table (``updraft.ready``), TTFB, first paint;
  the median of three fresh loads;
* under live updates: over ten updates with nothing else going on, the main-thread tasks over 50 ms
  (PerformanceObserver ``longtask``) and the slowest update batch applied; then how long the filter box and a
  sort take to show their result while the updates go on; then ten more updates with the rows sorted by CPU,
  which the updates change (rows move into place as they arrive; the order is checked).

Asserted: all 1,000 rows render; updates keep arriving; a cordon and a heartbeat of one node reach the open
page within 2 s; no console error. The timings are reported, not asserted (they depend on what else this
2-core machine runs); the README says whether the 1 s goal was met.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, LIVE_S, Dashboard, Screen, start_dashboard
from tests.browser.fleet import SimulatedFleet, node_name
from updraft.security.tokens import Role

N = 1000
BEAT_S = 5.0
LOADS = 3
SERVER = {
    "image_policy": "off",
    "heartbeat_interval": BEAT_S,
    "detector": {"max_silence_seconds": 60, "min_std_seconds": 1.0, "acceptable_pause_seconds": 2.0},
}

NAV_TIMING = """() => {
  const n = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return {ttfb_ms: n.responseStart - n.startTime, html_ms: n.responseEnd - n.startTime,
          dom_ms: n.domContentLoadedEventEnd - n.startTime, ready_ms: window.updraft.ready,
          first_paint_ms: paint ? paint.startTime : null, bytes: n.transferSize};
}"""
WATCH_LONG_TASKS = """() => {
  window.__long = [];
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); })
    .observe({type: 'longtask'});
  window.__updatesAtStart = window.updraft.updates;
  window.updraft.maxUpdateMs = 0;
}"""
LIVE_FIGURES = """() => ({long_tasks: window.__long.length, longest_task_ms: Math.max(0, ...window.__long),
    max_update_ms: window.updraft.maxUpdateMs, updates: window.updraft.updates - window.__updatesAtStart})"""
IN_ORDER = """(key) => {
  const v = Array.from(document.querySelectorAll('#fleet-rows > .frow')).map((r) => Number(r.dataset[key]));
  return v.every((x, i) => i === 0 || v[i - 1] <= x);
}"""
NEXT_FRAME = "new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))"
FILTER_LATENCY = f"""async (text) => {{
  const box = document.getElementById('fleet-filter');
  const t0 = performance.now();
  box.value = text; box.dispatchEvent(new Event('input'));
  await {NEXT_FRAME};
  const ms = performance.now() - t0;
  const shown = Array.from(document.querySelectorAll('#fleet-rows > .frow')).filter((tr) => !tr.hidden).length;
  return {{ms, shown}};
}}"""
SORT_LATENCY = f"""async (key) => {{
  const t0 = performance.now();
  document.querySelector(`#fleet [data-sort="${{key}}"]`).click();
  await {NEXT_FRAME};
  return performance.now() - t0;
}}"""


def test_fleet_of_1000_nodes_renders_fast_and_keeps_up(
    tmp_path: Path, screen: Callable[[Dashboard, Role | None], Screen]
) -> None:
    d = start_dashboard(tmp_path, **SERVER)
    watched = node_name(0)  # beaten by the test alone, so its load is the test's to set
    fleet = SimulatedFleet(d.url, N, BEAT_S, skip=frozenset({watched}), headers=d.admin)
    try:
        fleet.register()
        beat = f"{d.url}/v1/nodes/{watched}/heartbeat"
        httpx.post(beat, json={"cpu_pct": 10, "memory_pct": 10}, headers=d.admin).raise_for_status()
        fleet.start()
        s = screen(d, Role.OPERATOR)
        page = s.page
        loads = []
        for _ in range(LOADS):
            s.go("/ui/fleet")
            page.wait_for_function("() => window.updraft && window.updraft.ready")
            loads.append(page.evaluate(NAV_TIMING))
        expect(page.locator("#fleet-rows > .frow")).to_have_count(N)
        expect(page.locator("#fleet-count")).to_have_text(f"{N} nodes")

        page.evaluate(WATCH_LONG_TASKS)
        page.wait_for_function("() => window.updraft.updates >= window.__updatesAtStart + 10", timeout=30_000)
        live = page.evaluate(LIVE_FIGURES)  # ten live updates with nothing else going on
        filtered = page.evaluate(FILTER_LATENCY, node_name(999))
        assert filtered["shown"] == 1
        cleared = page.evaluate(FILTER_LATENCY, "")
        assert cleared["shown"] == N
        sort_ms = [page.evaluate(SORT_LATENCY, key) for key in ("cpu", "cpu", "name")]
        page.evaluate(SORT_LATENCY, "cpu")  # sorted by a column the updates change: rows move as they arrive
        page.evaluate(WATCH_LONG_TASKS)
        page.wait_for_function("() => window.updraft.updates >= window.__updatesAtStart + 10", timeout=30_000)
        live_sorted = page.evaluate(LIVE_FIGURES)
        assert page.evaluate(IN_ORDER, "cpu"), "rows out of cpu order after live updates"

        # live, while 200 rows a second change: a heartbeat and a cordon of one node reach the page
        httpx.post(beat, json={"cpu_pct": 99, "memory_pct": 10}, headers=d.admin).raise_for_status()
        expect(page.locator(f"#node-{watched} .pct").first).to_have_text("99%", timeout=LIVE_S * 1000)
        target = node_name(500)
        httpx.post(f"{d.url}/v1/nodes/{target}/cordon", headers=d.admin).raise_for_status()
        # (attached, not "visible": rows off screen are not laid out, by design — content-visibility)
        expect(page.locator(f"#node-{target} .f-cordoned")).to_have_count(1, timeout=LIVE_S * 1000)
        page.evaluate(WATCH_LONG_TASKS)
        page.wait_for_function("() => window.updraft.updates >= window.__updatesAtStart + 5", timeout=30_000)
        after_actions = page.evaluate(LIVE_FIGURES)
        s.shot("fleet-1000")
        s.no_errors()
    finally:
        fleet.stop()
        d.cluster.close()

    result = {
        "nodes": N,
        "heartbeats_per_s": N / BEAT_S,
        "render_ms_median": {k: statistics.median(x[k] for x in loads) for k in ("ttfb_ms", "dom_ms", "ready_ms")},
        "first_paint_ms_median": statistics.median(x["first_paint_ms"] or 0 for x in loads),
        "html_bytes": loads[-1]["bytes"],
        "loads": loads,
        "live": live,
        "live_sorted_by_cpu": live_sorted,
        "live_after_actions": after_actions,
        "filter_ms": filtered["ms"],
        "unfilter_ms": cleared["ms"],
        "sort_ms": sort_ms,
        "beats_sent": fleet.beats,
        "beat_errors": fleet.errors,
        "goal_render_within_1s": statistics.median(x["ready_ms"] for x in loads) <= 1000,
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "fleet_1000.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    assert fleet.errors == 0
