"""Scores in [0, 1]; higher is better. This is the scalar reference; the index computes the same numbers over
arrays (same operations in the same order, so the two agree to the bit, which the property tests check).

``spread`` counts both what the node measures and what is committed, and favours the least loaded node with
the fewest tasks. ``binpack`` favours the node whose committed requests will be fullest (what is measured does
not matter to packing). Both add image locality and, when the task has preferred node affinity, the matched
share of its weights. Scores are rounded to 4 decimals; ties go to the first node name.
"""

from __future__ import annotations

import numpy as np

from updraft.model import Effect, Node, TaskSpec
from updraft.scheduler.affinity import preferred_share
from updraft.scheduler.filters import Demand, Usage
from updraft.scheduler.index import NodeIndex
from updraft.scheduler.policy import Policy, Strategy


def strategy_for(node: Node, policy: Policy) -> Strategy:
    for tag, strategy in policy.scoring_by_tag.items():
        if tag in node.tags:
            return strategy
    return policy.strategy


def round4(value: float) -> float:
    """Round half to even at 4 decimals, the same operation numpy's ``rint`` performs on the array side."""
    return round(value * 10000.0) / 10000.0


def cpu_load_pct(node: Node, usage: Usage) -> float:
    """Real load: what the node measures plus what was just placed there and does not show yet (a task with
    no cpu limit is assumed to take every idle cycle), and never less than its committed requests. A burst
    thus counts before the next heartbeat shows it."""
    committed = 100.0 * usage.cpu_millis / node.capacity.cpu_millis
    if usage.pending_unbounded:
        return max(100.0, committed)
    incoming = 100.0 * usage.pending_cpu_millis / node.capacity.cpu_millis
    return max(node.metrics.cpu_pct + incoming, committed)


def memory_load_pct(node: Node, usage: Usage) -> float:
    committed = 100.0 * usage.memory_bytes / node.capacity.memory_bytes
    incoming = 100.0 * usage.pending_memory_bytes / node.capacity.memory_bytes
    return max(node.metrics.memory_pct + incoming, committed)


def holds_image(node: Node, spec: TaskSpec) -> bool:
    """A node reports the references and digests it holds; a pinned task matches on its digest."""
    held = set(node.images)
    digest = spec.image.partition("@")[2]
    return spec.image in held or (bool(digest) and digest in held)


def pull_seconds(node: Node, spec: TaskSpec, image_bytes: int | None, policy: Policy) -> float | None:
    """Estimated time for ``node`` to pull the task's image: 0 if it holds it, None if the size is unknown."""
    if holds_image(node, spec):
        return 0.0
    if image_bytes is None:
        return None
    return image_bytes / (node.bandwidth or policy.default_bandwidth)


def image_note(node: Node, spec: TaskSpec, image_bytes: int | None, policy: Policy) -> str:
    """What the image costs on ``node``, for the placement's reason."""
    pull = pull_seconds(node, spec, image_bytes, policy)
    if pull == 0.0:
        return "image cached"
    if pull is None:
        return "image not cached"
    rate = node.bandwidth or policy.default_bandwidth
    return f"pull ~{pull:.1f} s at {rate / 1e6:.0f} MB/s"


def score(node: Node, spec: TaskSpec, usage: Usage, policy: Policy, image_bytes: int | None = None) -> float:
    """Load (or fullness), image locality, spread, preferred affinity. Locality is the share of the image's pull
    time that is saved: 1 when the node holds the image, falling with the estimated pull (size over the node's
    bandwidth), 0 when the pull would take ``pull_time_scale`` or more, or when its size is unknown."""
    cap = node.capacity
    cpu_req, mem_req = spec.resources.request_cpu(), spec.resources.request_memory()
    pull = pull_seconds(node, spec, image_bytes, policy)
    image = 0.0 if pull is None else max(0.0, 1.0 - pull / policy.pull_time_scale)
    if strategy_for(node, policy) == "binpack":
        cpu = min((usage.cpu_millis + cpu_req) / cap.cpu_millis, 1.0)
        mem = min((usage.memory_bytes + mem_req) / cap.memory_bytes, 1.0)
        full = 0.7 * cpu + 0.3 * mem
        value = policy.weight_load * full + policy.weight_image * image
        total = policy.weight_load + policy.weight_image
    else:
        cpu = min(cpu_load_pct(node, usage) + 100.0 * cpu_req / cap.cpu_millis, 100.0)
        mem = min(memory_load_pct(node, usage) + 100.0 * mem_req / cap.memory_bytes, 100.0)
        load = (0.7 * cpu + 0.3 * mem) / 100
        spread = 1.0 / (1.0 + usage.tasks)
        value = policy.weight_load * (1 - load) + policy.weight_image * image + policy.weight_spread * spread
        total = policy.weight_load + policy.weight_image + policy.weight_spread
    share = preferred_share(node.labels, spec.affinity)
    if share is not None:
        value += policy.weight_affinity * share
        total += policy.weight_affinity
    value = value / total if total > 0 else 0.0
    if any(t.effect == Effect.PREFER_NO_SCHEDULE and not spec.tolerates(t) for t in node.taints):
        value *= 0.5
    return round4(value)


def vector_scores(
    index: NodeIndex,
    rows: np.ndarray,
    spec: TaskSpec,
    demand: Demand,
    soft: np.ndarray,
    preferred: np.ndarray | None,
    policy: Policy,
    image_bytes: int | None = None,
) -> np.ndarray:
    """:func:`score` for each of ``rows`` at once, operation for operation (so the results are equal)."""
    a = index.a
    cap_cpu, cap_mem = a["cap_cpu"][rows], a["cap_mem"][rows]
    used_cpu, used_mem = a["used_cpu"][rows], a["used_mem"][rows]
    if image_bytes is None:
        image = np.zeros(len(rows))
    else:
        bandwidth = a["bandwidth"][rows]
        pull = image_bytes / np.where(np.isnan(bandwidth), policy.default_bandwidth, bandwidth)
        image = np.maximum(0.0, 1.0 - pull / policy.pull_time_scale)
    digest = spec.image.partition("@")[2]
    held = index.image_mask((spec.image, digest) if digest else (spec.image,))[rows]
    image = np.where(held, 1.0, image)

    binpack = _strategy_mask(index, rows, policy)
    value = np.zeros(len(rows))
    total = np.zeros(len(rows))
    if binpack is None or not binpack.all():
        committed = 100.0 * used_cpu / cap_cpu
        incoming = 100.0 * a["pend_cpu"][rows] / cap_cpu
        measured = np.maximum(a["cpu_pct"][rows] + incoming, committed)
        cpu_load = np.where(a["pend_unb"][rows] > 0, np.maximum(100.0, committed), measured)
        mem_load = np.maximum(
            a["mem_pct"][rows] + 100.0 * a["pend_mem"][rows] / cap_mem, 100.0 * used_mem / cap_mem
        )
        cpu = np.minimum(cpu_load + 100.0 * demand.cpu / cap_cpu, 100.0)
        mem = np.minimum(mem_load + 100.0 * demand.memory / cap_mem, 100.0)
        load = (0.7 * cpu + 0.3 * mem) / 100
        spread = 1.0 / (1.0 + a["tasks"][rows])
        value = policy.weight_load * (1 - load) + policy.weight_image * image + policy.weight_spread * spread
        total = np.full(len(rows), policy.weight_load + policy.weight_image + policy.weight_spread)
    if binpack is not None:
        cpu_full = np.minimum((used_cpu + demand.cpu) / cap_cpu, 1.0)
        mem_full = np.minimum((used_mem + demand.memory) / cap_mem, 1.0)
        full = 0.7 * cpu_full + 0.3 * mem_full
        packed = policy.weight_load * full + policy.weight_image * image
        value = np.where(binpack, packed, value)
        total = np.where(binpack, policy.weight_load + policy.weight_image, total)
    if preferred is not None:
        value = value + policy.weight_affinity * preferred[rows]
        total = total + policy.weight_affinity
    value = np.divide(value, total, out=np.zeros(len(rows)), where=total > 0)
    value = np.where(soft[rows], value * 0.5, value)
    return np.rint(value * 10000.0) / 10000.0


def _strategy_mask(index: NodeIndex, rows: np.ndarray, policy: Policy) -> np.ndarray | None:
    """Which of ``rows`` are ranked by bin-packing; None when none are."""
    default = policy.strategy == "binpack"
    if not policy.scoring_by_tag:
        return np.ones(len(rows), np.bool_) if default else None
    out = np.full(len(rows), default)
    decided = np.zeros(len(rows), np.bool_)
    for tag, strategy in policy.scoring_by_tag.items():
        carries = index.tag_mask([tag])[rows] & ~decided
        out[carries] = strategy == "binpack"
        decided |= carries
    return out if out.any() else None
