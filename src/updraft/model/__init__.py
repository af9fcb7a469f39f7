"""Plain data: specs, nodes, tasks, attempts, events, quantities. Imports nothing else of ours."""

from updraft.model.events import PLACEMENT_KINDS, DriftCause, EventKind
from updraft.model.quantity import format_cpu, format_memory, parse_cpu, parse_memory
from updraft.model.spec import Effect, ResourceList, Resources, Taint, TaskSpec, Toleration
from updraft.model.state import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    Attempt,
    Capacity,
    Event,
    Node,
    NodeMetrics,
    NodeState,
    Task,
    TaskState,
    check_transition,
)

__all__ = [
    "ACTIVE",
    "PLACEMENT_KINDS",
    "TERMINAL",
    "TRANSITIONS",
    "Attempt",
    "Capacity",
    "DriftCause",
    "Effect",
    "Event",
    "EventKind",
    "Node",
    "NodeMetrics",
    "NodeState",
    "ResourceList",
    "Resources",
    "Taint",
    "Task",
    "TaskSpec",
    "TaskState",
    "Toleration",
    "check_transition",
    "format_cpu",
    "format_memory",
    "parse_cpu",
    "parse_memory",
]
