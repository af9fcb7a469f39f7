"""bench/scheduler_scale.py end to end on a small fleet: the keys the issues name, and the invariants it
checks (no node over-committed, no GPU task on a node without GPUs). The legacy run is left to the bench."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import scheduler_scale as bench  # noqa: E402


def test_the_bench_reports_what_the_issues_ask(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    written: dict[str, Any] = {}
    monkeypatch.setattr(_common, "write_results", lambda name, figures: written.setdefault(name, figures))
    monkeypatch.setattr(sys, "argv", ["scheduler_scale.py", "--sizes", "40,80", "--tasks", "400", "--no-legacy"])
    bench.main()
    out = json.loads(json.dumps(written["scheduler_scale"]))
    assert set(out["placements_per_s"]) == set(out["binpack_placements_per_s"]) == {"40", "80"}
    assert out["overcommitted_nodes"] == 0 and out["accelerator_tasks_on_nodes_without"] == 0
    for key in ("unplaced_that_first_fit_places", "binpack_unplaced_that_first_fit_places"):
        assert isinstance(out[key], int)
    assert {r["batch"] for r in out["runs"]} == {"pass", 1, 10, 100}
    assert "FFD places, not it" in capsys.readouterr().out


def test_first_fit_decreasing_honours_every_constraint() -> None:
    nodes, tasks = bench.build(bench.gen_nodes(60), bench.gen_tasks(500, 1.0), legacy=False)
    placed = bench.first_fit_decreasing(nodes, tasks)
    assert bench.overcommitted(nodes, tasks, placed) == 0
    assert bench.gpu_on_nodes_without(nodes, tasks, placed) == 0
    by_name = {n.name: n for n in nodes}
    from updraft.scheduler import Usage, filters

    for t in tasks:
        if t.id in placed:  # readiness, selector, affinity and taints pass; alone, it fits
            assert filters.why(by_name[placed[t.id]], t.spec, Usage()) is None
