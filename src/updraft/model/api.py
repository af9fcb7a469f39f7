"""Bodies exchanged between agent, SDK and server, shared so both ends validate the same shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import JsonDict

from updraft.errors import ValidationError
from updraft.model.limits import (
    CPU_DOC,
    MAX_LOG_LINES,
    MAX_NAMES,
    MAX_RUNNING,
    MAX_TAINTS,
    MEMORY_DOC,
    Count,
    Images,
    LabelKey,
    Labels,
    Line,
    Percent,
    Quantity,
    Seconds,
    Tags,
    TaskId,
    Text,
    Timestamp,
)
from updraft.model.quantity import parse_cpu, parse_memory
from updraft.model.spec import ExtendedKeys, Taint, TaskSpec
from updraft.model.state import Capacity


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CapacitySpec(_Body, ExtendedKeys):
    """cpu and memory quantities; any other key is an extended resource count (``"nvidia.com/gpu": 2``)."""

    model_config = ConfigDict(extra="allow")

    cpu: Quantity = Field(json_schema_extra=CPU_DOC)
    memory: Quantity = Field(json_schema_extra=MEMORY_DOC)

    def to_capacity(self) -> Capacity:
        """The parsed capacity a Node stores (fields named as the errors name them: capacity.cpu, …)."""
        return Capacity(
            cpu_millis=parse_cpu(self.cpu, "capacity.cpu"),
            memory_bytes=parse_memory(self.memory, "capacity.memory"),
            extended={k: v for k, v in sorted(self.extended.items()) if v > 0},
        )

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: str) -> str:
        try:
            millis = parse_cpu(v)
        except ValidationError as exc:  # re-raised as ValueError so pydantic names the path (capacity.cpu)
            raise ValueError(exc.message.removeprefix("cpu: ")) from exc
        if millis <= 0:
            raise ValueError("cpu capacity must be positive")
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        try:
            n = parse_memory(v)
        except ValidationError as exc:
            raise ValueError(exc.message.removeprefix("memory: ")) from exc
        if n <= 0:
            raise ValueError("memory capacity must be positive")
        return v


class NodeRegistration(_Body):
    labels: Labels = Field(default_factory=dict)
    tags: Tags = Field(default_factory=list)
    taints: list[Taint] = Field(default_factory=list, max_length=MAX_TAINTS)
    capacity: CapacitySpec
    cpuset: str | None = Field(default=None, max_length=256, pattern=r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")
    address: Line | None = Field(default=None, max_length=2048)
    images: Images = Field(default_factory=list)


# (task id, token) pairs, described without prefixItems: schemathesis cannot use that keyword (its generator
# fails on it in a request, its validator refuses it in a response). The server still validates each pair.
_PAIR_SCHEMA: JsonDict = {"type": "array", "minItems": 2, "maxItems": 2, "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}


class Heartbeat(_Body):
    cpu_pct: Percent
    memory_pct: Percent
    running: list[tuple[TaskId, Count]] = Field(
        default_factory=list,
        max_length=MAX_RUNNING,
        description="(task id, token) pairs running",
        json_schema_extra={"items": _PAIR_SCHEMA},
    )
    images: Images | None = Field(default=None, description="sent when the set changes")
    bandwidth: float | None = Field(
        default=None, ge=0, le=1e15, allow_inf_nan=False, description="measured image pull rate, bytes/s"
    )
    sent_at: Timestamp | None = None
    rtt: Seconds | None = Field(default=None, description="the round trip of the agent's previous heartbeat, s")


class HeartbeatReply(_Body):
    stale: list[tuple[str, int]] = Field(
        default_factory=list,
        description="(task id, token) pairs to stop",
        json_schema_extra={"items": _PAIR_SCHEMA},
    )
    known: bool = True
    interval: float = 1.0


class Assignment(_Body):
    task_id: str
    token: int
    spec: TaskSpec
    traceparent: str | None = None


class ProbeReport(_Body):
    """What an agent's probes found about a running attempt: readiness, and liveness restarts so far."""

    ready: bool | None = None
    restarts: Count = 0
    message: Text = Field(default="", max_length=1024)


class Assignments(_Body):
    index: int
    assignments: list[Assignment]


class AttemptReport(_Body):
    """What an agent says about one attempt. ``exited`` carries the result."""

    state: Literal["running", "exited", "error"]
    container_id: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    oom_killed: bool = False
    error: Text | None = Field(default=None, max_length=4096)
    error_code: str | None = Field(
        default=None, max_length=64, pattern=r"^[a-z0-9_-]+$", description="why, as data (e.g. a hardening refusal)"
    )
    log_tail: Text = Field(default="", max_length=65536)
    image_digest: str | None = Field(default=None, max_length=512, pattern=r"^[A-Za-z0-9._:/@+-]+$")


class LogLine(_Body):
    stream: Literal["stdout", "stderr"] = "stdout"
    at: Timestamp
    data: Text = Field(max_length=65536)


class LogBatch(_Body):
    lines: list[LogLine] = Field(max_length=MAX_LOG_LINES)


class LabelChange(_Body):
    set: Labels = Field(default_factory=dict)
    remove: list[LabelKey] = Field(default_factory=list, max_length=MAX_NAMES)


class TaintChange(_Body):
    add: list[Taint] = Field(default_factory=list, max_length=MAX_TAINTS)
    remove: list[LabelKey] = Field(default_factory=list, max_length=MAX_NAMES, description="taint keys to remove")


class SubmitRequest(TaskSpec):
    """A task spec; the idempotency key may come in the body or the ``Idempotency-Key`` header."""

    idempotency_key: Line | None = Field(default=None, min_length=1, max_length=200)
