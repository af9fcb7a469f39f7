"""Feasibility filters. Each returns None when the node passes, or the reason it does not.

The reasons are what users read in events ("cloud-1: insufficient cpu (requested 500m, free 200m)"), so
they name the quantity and the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from updraft.model import Effect, Node, NodeState, TaskSpec, format_cpu, format_memory


@dataclass(frozen=True, slots=True)
class Usage:
    """Resources committed on a node by its active attempts.

    ``pending_*`` counts the attempts placed but not yet reported running: their load is not in the node's
    measured metrics yet, so the offload decision adds it on top of what the node measures. A pending task
    with no cpu limit may take every idle cycle, so it counts as unbounded until a heartbeat shows its use.
    """

    cpu_millis: int = 0
    memory_bytes: int = 0
    tasks: int = 0
    pending_cpu_millis: int = 0
    pending_memory_bytes: int = 0
    pending_unbounded: int = 0

    def plus(self, spec: TaskSpec, started: bool = False) -> Usage:
        cpu, mem = spec.resources.request_cpu(), spec.resources.request_memory()
        limit = spec.resources.limits.cpu_millis if spec.resources.limits.cpu else None
        return Usage(
            self.cpu_millis + cpu,
            self.memory_bytes + mem,
            self.tasks + 1,
            self.pending_cpu_millis + (0 if started else max(cpu, limit or 0)),
            self.pending_memory_bytes + (0 if started else mem),
            self.pending_unbounded + (0 if started or limit is not None else 1),
        )


Filter = Callable[[Node, TaskSpec, Usage], "str | None"]


def ready(node: Node, spec: TaskSpec, usage: Usage) -> str | None:
    if node.state != NodeState.READY:
        return f"node is {node.state}"
    if node.cordoned or node.draining:
        return "node is cordoned" if not node.draining else "node is draining"
    return None


def selector(node: Node, spec: TaskSpec, usage: Usage) -> str | None:
    for key, want in spec.node_selector.items():
        have = node.labels.get(key)
        if have != want:
            return f"label {key}={want} required, node has {key}={have}" if have else f"lacks label {key}={want}"
    return None


def taints(node: Node, spec: TaskSpec, usage: Usage) -> str | None:
    """NoSchedule and NoExecute taints repel; PreferNoSchedule only lowers the score."""
    for taint in node.taints:
        if taint.effect == Effect.PREFER_NO_SCHEDULE:
            continue
        if not spec.tolerates(taint):
            return f"untolerated taint {taint}"
    return None


def fits(node: Node, spec: TaskSpec, usage: Usage) -> str | None:
    cpu, mem = spec.resources.request_cpu(), spec.resources.request_memory()
    free_cpu = node.capacity.cpu_millis - usage.cpu_millis
    free_mem = node.capacity.memory_bytes - usage.memory_bytes
    if cpu > free_cpu:
        return f"insufficient cpu (requested {format_cpu(cpu)}, free {format_cpu(max(free_cpu, 0))})"
    if mem > free_mem:
        return f"insufficient memory (requested {format_memory(mem)}, free {format_memory(max(free_mem, 0))})"
    return None


ALL: tuple[Filter, ...] = (ready, selector, taints, fits)


def check(node: Node, spec: TaskSpec, usage: Usage) -> str | None:
    for f in ALL:
        reason = f(node, spec, usage)
        if reason is not None:
            return reason
    return None


def carries_target_tag(node: Node, tags: list[str]) -> bool:
    return any(t in node.tags for t in tags)
