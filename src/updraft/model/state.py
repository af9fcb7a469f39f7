"""Nodes, tasks and attempts as stored, and the task state machine.

These are immutable values: every change produces a new object (``model_copy(update=...)``) that the plan
applier or a service command writes back with a compare-and-set on its revision.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from updraft.errors import Conflict
from updraft.model.events import DriftCause, EventKind
from updraft.model.spec import Taint, TaskSpec


class TaskState(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})
ACTIVE = frozenset({TaskState.SCHEDULED, TaskState.RUNNING})

# Which state may follow which. scheduled/running → pending is a drift or a retry (a new attempt follows).
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.SCHEDULED, TaskState.CANCELLED, TaskState.FAILED}),
    TaskState.SCHEDULED: frozenset(
        {TaskState.RUNNING, TaskState.PENDING, TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED}
    ),
    TaskState.RUNNING: frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.PENDING}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset(),
}


def check_transition(old: TaskState, new: TaskState) -> None:
    if new != old and new not in TRANSITIONS[old]:
        raise Conflict(f"a task cannot go from {old} to {new}", state=str(old), requested=str(new))


class NodeState(StrEnum):
    READY = "ready"
    SUSPECT = "suspect"
    UNREACHABLE = "unreachable"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Capacity(_Value):
    cpu_millis: int = Field(ge=1)
    memory_bytes: int = Field(ge=1)
    extended: dict[str, int] = Field(
        default_factory=dict, description="countable resources by name, e.g. {'nvidia.com/gpu': 2}"
    )

    @model_serializer(mode="wrap")
    def _omit_no_extended(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A node without extended resources serialises as before they existed."""
        out: dict[str, Any] = handler(self)
        if not out.get("extended"):
            out.pop("extended", None)
        return out


class NodeMetrics(_Value):
    cpu_pct: float = 0.0
    memory_pct: float = 0.0
    at: float = 0.0
    rtt: float | None = Field(default=None, description="the agent's last heartbeat round trip, seconds")


class Node(_Value):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    taints: list[Taint] = Field(default_factory=list)
    capacity: Capacity
    cpuset: str | None = None
    address: str | None = None
    state: NodeState = NodeState.READY
    state_since: float = 0.0
    cordoned: bool = False
    draining: bool = False
    metrics: NodeMetrics = NodeMetrics()
    images: list[str] = Field(default_factory=list, description="image digests and names present")
    bandwidth: float | None = Field(default=None, description="measured image pull rate, bytes/s")
    offloading: bool = Field(default=False, description="hysteresis: the origin is in offload mode")
    registered_at: float = 0.0
    last_heartbeat: float = 0.0
    revision: int = 0


class Attempt(_Value):
    token: int
    node: str
    state: TaskState = TaskState.SCHEDULED
    placement: str = Field(default="", description="local | offload | anywhere | drift | retry")
    reason: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    error: str | None = None
    error_code: str | None = Field(default=None, description="the reason as a code, when the agent gave one")
    log_tail: str = ""
    container_id: str | None = None
    image_digest: str | None = None
    ready: bool | None = Field(default=None, description="the readiness probe's verdict; None without one")
    restarts: int = Field(default=0, description="container restarts after a failing liveness probe")


class Task(_Value):
    id: str
    spec: TaskSpec
    state: TaskState = TaskState.PENDING
    node: str | None = None
    token: int | None = Field(default=None, description="the current attempt's fencing token")
    attempts: list[Attempt] = Field(default_factory=list)
    retries_used: int = 0
    not_before: float = 0.0
    excluded_nodes: list[str] = Field(
        default_factory=list,
        description="nodes the scheduler never places this task on; set only explicitly, never by drift or drain",
    )
    drifted_from: str | None = Field(default=None, description="the node this pending task was moved off")
    drift_cause: DriftCause | None = None
    drift_why: str = Field(default="", description="why it was moved off, for people (the migrated event says it)")
    created_at: float = 0.0
    updated_at: float = 0.0
    submitted_seq: int = 0
    reason: str = ""
    traceparent: str | None = Field(default=None, description="W3C trace context of the submit span")
    image_tag: str | None = Field(default=None, description="the image as submitted, when pinning rewrote it")
    image_size: int | None = Field(default=None, description="bytes a node without the image pulls")
    awaiting_pin: bool = Field(default=False, description="image_policy enforce: not schedulable until pinned")
    revision: int = 0

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def with_attempt(self, attempt: Attempt) -> list[Attempt]:
        """The attempts list with the attempt carrying ``attempt.token`` replaced."""
        return [attempt if a.token == attempt.token else a for a in self.attempts]


class Event(_Value):
    id: int = 0
    at: float
    kind: EventKind
    message: str
    code: str | None = Field(default=None, description="the decision's reason code, when it has one")
    task_id: str | None = None
    node: str | None = None
    token: int | None = None
