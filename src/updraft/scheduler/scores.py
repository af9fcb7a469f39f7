"""Scores in [0, 1]; higher is better. Load counts both what the node measures and what is committed."""

from __future__ import annotations

from updraft.model import Effect, Node, TaskSpec
from updraft.scheduler.filters import Usage
from updraft.scheduler.policy import Policy


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
    """Load, image locality and spread. Locality is the share of the image's pull time that is saved: 1 when
    the node holds the image, falling with the estimated pull (size over the node's bandwidth), 0 when the
    pull would take ``pull_time_scale`` or more, or when its size is unknown."""
    cap = node.capacity
    cpu = min(cpu_load_pct(node, usage) + 100.0 * spec.resources.request_cpu() / cap.cpu_millis, 100.0)
    mem = min(memory_load_pct(node, usage) + 100.0 * spec.resources.request_memory() / cap.memory_bytes, 100.0)
    load = (0.7 * cpu + 0.3 * mem) / 100
    pull = pull_seconds(node, spec, image_bytes, policy)
    image = 0.0 if pull is None else max(0.0, 1.0 - pull / policy.pull_time_scale)
    spread = 1.0 / (1.0 + usage.tasks)
    total = policy.weight_load + policy.weight_image + policy.weight_spread
    value = (policy.weight_load * (1 - load) + policy.weight_image * image + policy.weight_spread * spread) / total
    if any(t.effect == Effect.PREFER_NO_SCHEDULE and not spec.tolerates(t) for t in node.taints):
        value *= 0.5
    return round(value, 4)
