"""Scores in [0, 1]; higher is better. Load counts both what the node measures and what is committed."""

from __future__ import annotations

from updraft.model import Effect, Node, TaskSpec
from updraft.scheduler.filters import Usage
from updraft.scheduler.policy import Policy


def cpu_load_pct(node: Node, usage: Usage) -> float:
    """Real load: what the node measures plus what was just placed there and does not show yet, and never
    less than its committed requests. A burst thus counts before the next heartbeat shows it."""
    committed = 100.0 * usage.cpu_millis / node.capacity.cpu_millis
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


def score(node: Node, spec: TaskSpec, usage: Usage, policy: Policy) -> float:
    after = usage.plus(spec)
    load = (0.7 * min(cpu_load_pct(node, after), 100.0) + 0.3 * min(memory_load_pct(node, after), 100.0)) / 100
    image = 1.0 if holds_image(node, spec) else 0.0
    spread = 1.0 / (1.0 + usage.tasks)
    total = policy.weight_load + policy.weight_image + policy.weight_spread
    value = (policy.weight_load * (1 - load) + policy.weight_image * image + policy.weight_spread * spread) / total
    if any(t.effect == Effect.PREFER_NO_SCHEDULE and not spec.tolerates(t) for t in node.taints):
        value *= 0.5
    return round(value, 4)
