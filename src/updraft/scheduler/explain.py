"""Why no node fits: candidate nodes counted by the first filter they fail, over the index's arrays.

The filters run in the scalar order (:func:`updraft.scheduler.filters.why`), so a node is counted once, under
the same code the applier would log for it. Computed only when a task finds no node, so it may be thorough.
"""

from __future__ import annotations

import numpy as np

from updraft.model import TaskSpec, format_cpu, format_memory
from updraft.scheduler.filters import Demand
from updraft.scheduler.index import NodeIndex
from updraft.scheduler.reasons import Reject, RejectionSummary, summarise


def explain(
    index: NodeIndex,
    spec: TaskSpec,
    demand: Demand,
    candidates: np.ndarray,
    excluded: np.ndarray,
    scope: str = "nodes",
) -> RejectionSummary:
    """``candidates``: the rows considered (live, and target-tagged when offloading); ``excluded``: rows the
    task must never use."""
    a, n = index.a, index.size
    left = candidates.copy()
    counts: dict[str, int] = {}
    details: dict[str, str] = {}

    def drop(key: str, failing: np.ndarray) -> np.ndarray:
        hit = left & failing
        counts[key] = counts.get(key, 0) + int(hit.sum())
        left[hit] = False
        return hit

    drop(Reject.NOT_READY, ~a["ready"][:n])
    drop(Reject.DRAINING, a["draining"][:n])
    drop(Reject.CORDONED, ~a["ok"][:n])
    drop(Reject.EXCLUDED, excluded)
    if spec.node_selector:
        drop(Reject.SELECTOR, ~index.selector_mask(spec.node_selector))
    if spec.affinity is not None:
        drop(Reject.AFFINITY, ~index.affinity_mask(spec.affinity))
    drop(Reject.TAINT, ~index.taint_ok(spec)[0])
    if demand.cpu:
        hit = drop(Reject.CPU, a["free_cpu"][:n] < demand.cpu)
        if hit.any():
            most = max(int(a["free_cpu"][:n][hit].max()), 0)
            details[Reject.CPU] = f"requested {format_cpu(demand.cpu)}, largest free {format_cpu(most)}"
    if demand.memory:
        hit = drop(Reject.MEMORY, a["free_mem"][:n] < demand.memory)
        if hit.any():
            most = max(int(a["free_mem"][:n][hit].max()), 0)
            details[Reject.MEMORY] = f"requested {format_memory(demand.memory)}, largest free {format_memory(most)}"
    for name, want in demand.extended:
        key = f"{Reject.EXTENDED}:{name}"
        found = index.ext(name)
        free = found[0][:n] - found[1][:n] if found is not None else np.zeros(n, np.int64)
        hit = drop(key, free < want)
        if hit.any():
            details[key] = f"requested {want}, largest free {max(int(free[hit].max()), 0)}"
    return summarise(int(candidates.sum()), counts, details, scope)
