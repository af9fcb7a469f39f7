"""Feasibility on one node, and the committed usage it is checked against.

This is the scalar path: the plan applier re-checks a placement with :func:`check`, the scheduler checks an
origin with :func:`why`, and the property tests use it as the exhaustive reference. The scheduler's fast path
(:mod:`updraft.scheduler.index`) applies the same filters, in the same order, over arrays of nodes.

A rejection names the quantity and the numbers ("insufficient cpu (requested 500m, free 200m)") and carries a
stable code (:class:`~updraft.scheduler.reasons.Reject`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from updraft.model import Effect, Node, NodeState, TaskSpec, format_cpu, format_memory
from updraft.scheduler.affinity import required_ok
from updraft.scheduler.reasons import Reject, Rejection


def _pending_cpu(spec: TaskSpec) -> int:
    """What a not-yet-running task adds to its node's measured cpu: its request or its limit, the larger."""
    limit = spec.resources.limits.cpu_millis if spec.resources.limits.cpu else 0
    return max(spec.resources.request_cpu(), limit)


def _unbounded(spec: TaskSpec) -> bool:
    return not spec.resources.limits.cpu


def _merge(a: Mapping[str, int], b: Mapping[str, int], sign: int) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        n = out.get(k, 0) + sign * v
        if n:
            out[k] = n
        else:
            out.pop(k, None)
    return out


@dataclass(frozen=True, slots=True)
class Usage:
    """Resources committed on a node by its active attempts.

    ``pending_*`` counts the attempts placed but not yet reported running: their load is not in the node's
    measured metrics yet, so the offload decision adds it on top of what the node measures. A pending task
    with no cpu limit may take every idle cycle, so it counts as unbounded until a heartbeat shows its use.

    Kept incrementally: ``plus`` when an attempt is committed, ``as_started`` when it reports running,
    ``minus`` (with the same ``started``) when it ends or leaves the node; ``shifted`` adds or takes back a
    contribution already computed. Each returns a new value.
    """

    cpu_millis: int = 0
    memory_bytes: int = 0
    tasks: int = 0
    pending_cpu_millis: int = 0
    pending_memory_bytes: int = 0
    pending_unbounded: int = 0
    extended: Mapping[str, int] = field(default_factory=dict)

    def _add(self, spec: TaskSpec, started: bool, sign: int) -> Usage:
        r = spec.resources
        cpu, mem = r.request_cpu(), r.request_memory()
        pending = not started
        return Usage(
            self.cpu_millis + sign * cpu,
            self.memory_bytes + sign * mem,
            self.tasks + sign,
            self.pending_cpu_millis + (sign * _pending_cpu(spec) if pending else 0),
            self.pending_memory_bytes + (sign * mem if pending else 0),
            self.pending_unbounded + (sign if pending and _unbounded(spec) else 0),
            _merge(self.extended, r.request_extended(), sign) if r.request_extended() else self.extended,
        )

    def plus(self, spec: TaskSpec, started: bool = False) -> Usage:
        return self._add(spec, started, 1)

    def minus(self, spec: TaskSpec, started: bool = False) -> Usage:
        """The inverse of ``plus`` with the same ``started``: an attempt ended or left the node."""
        return self._add(spec, started, -1)

    def shifted(self, other: Usage, sign: int = 1) -> Usage:
        """This usage with ``other`` (a task's contribution) added, or taken back with ``sign`` -1."""
        return Usage(
            self.cpu_millis + sign * other.cpu_millis,
            self.memory_bytes + sign * other.memory_bytes,
            self.tasks + sign * other.tasks,
            self.pending_cpu_millis + sign * other.pending_cpu_millis,
            self.pending_memory_bytes + sign * other.pending_memory_bytes,
            self.pending_unbounded + sign * other.pending_unbounded,
            _merge(self.extended, other.extended, sign) if other.extended else self.extended,
        )

    def as_started(self, spec: TaskSpec) -> Usage:
        """The attempt of ``spec`` went from placed to running: its load now shows in the node's metrics."""
        return self.minus(spec, started=False).plus(spec, started=True)


class Demand(NamedTuple):
    """What one task asks of a node, parsed once per decision."""

    cpu: int
    memory: int
    pending_cpu: int
    unbounded: int
    extended: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, spec: TaskSpec) -> Demand:
        r = spec.resources
        return cls(
            r.request_cpu(),
            r.request_memory(),
            _pending_cpu(spec),
            int(_unbounded(spec)),
            tuple(r.request_extended().items()),
        )


def ready(node: Node) -> Rejection | None:
    if node.state != NodeState.READY:
        return Rejection(Reject.NOT_READY, f"node is {node.state}")
    if node.draining:
        return Rejection(Reject.DRAINING, "node is draining")
    if node.cordoned:
        return Rejection(Reject.CORDONED, "node is cordoned")
    return None


def selector(node: Node, spec: TaskSpec) -> Rejection | None:
    for key, want in spec.node_selector.items():
        have = node.labels.get(key)
        if have != want:
            text = f"label {key}={want} required, node has {key}={have}" if have else f"lacks label {key}={want}"
            return Rejection(Reject.SELECTOR, text)
    return None


def affinity(node: Node, spec: TaskSpec) -> Rejection | None:
    if required_ok(node.labels, spec.affinity):
        return None
    return Rejection(Reject.AFFINITY, "matches no required node affinity term")


def taints(node: Node, spec: TaskSpec) -> Rejection | None:
    """NoSchedule and NoExecute taints repel; PreferNoSchedule only lowers the score."""
    for taint in node.taints:
        if taint.effect != Effect.PREFER_NO_SCHEDULE and not spec.tolerates(taint):
            return Rejection(Reject.TAINT, f"untolerated taint {taint}")
    return None


def fits(node: Node, spec: TaskSpec, usage: Usage) -> Rejection | None:
    cpu, mem = spec.resources.request_cpu(), spec.resources.request_memory()
    free_cpu = node.capacity.cpu_millis - usage.cpu_millis
    free_mem = node.capacity.memory_bytes - usage.memory_bytes
    if cpu > free_cpu:
        text = f"insufficient cpu (requested {format_cpu(cpu)}, free {format_cpu(max(free_cpu, 0))})"
        return Rejection(Reject.CPU, text)
    if mem > free_mem:
        text = f"insufficient memory (requested {format_memory(mem)}, free {format_memory(max(free_mem, 0))})"
        return Rejection(Reject.MEMORY, text)
    for name, want in spec.resources.request_extended().items():
        free = node.capacity.extended.get(name, 0) - usage.extended.get(name, 0)
        if want > free:
            return Rejection(Reject.EXTENDED, f"insufficient {name} (requested {want}, free {max(free, 0)})", name)
    return None


def why(node: Node, spec: TaskSpec, usage: Usage) -> Rejection | None:
    """The first filter ``node`` fails for ``spec``, or None when the task fits there."""
    return ready(node) or selector(node, spec) or affinity(node, spec) or taints(node, spec) or fits(node, spec, usage)


def check(node: Node, spec: TaskSpec, usage: Usage) -> str | None:
    """:func:`why` as text, for logs."""
    rejection = why(node, spec, usage)
    return rejection.text if rejection else None


def carries_target_tag(node: Node, tags: list[str]) -> bool:
    return any(t in node.tags for t in tags)
