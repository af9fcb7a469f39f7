"""Bodies exchanged between agent, SDK and server, shared so both ends validate the same shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from updraft.errors import ValidationError
from updraft.model.quantity import parse_cpu, parse_memory
from updraft.model.spec import Taint, TaskSpec


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CapacitySpec(_Body):
    cpu: str
    memory: str

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
    labels: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    taints: list[Taint] = Field(default_factory=list)
    capacity: CapacitySpec
    cpuset: str | None = None
    address: str | None = None
    images: list[str] = Field(default_factory=list)


class Heartbeat(_Body):
    cpu_pct: float = Field(ge=0, le=1000)
    memory_pct: float = Field(ge=0, le=1000)
    running: list[tuple[str, int]] = Field(default_factory=list, description="(task id, token) pairs running")
    images: list[str] | None = Field(default=None, description="sent when the set changes")
    bandwidth: float | None = Field(default=None, ge=0, description="measured image pull rate, bytes/s")
    sent_at: float | None = None


class HeartbeatReply(_Body):
    stale: list[tuple[str, int]] = Field(default_factory=list)
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
    restarts: int = Field(default=0, ge=0)
    message: str = Field(default="", max_length=1024)


class Assignments(_Body):
    index: int
    assignments: list[Assignment]


class AttemptReport(_Body):
    """What an agent says about one attempt. ``exited`` carries the result."""

    state: Literal["running", "exited", "error"]
    container_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    error: str | None = Field(default=None, max_length=4096)
    log_tail: str = Field(default="", max_length=65536)
    image_digest: str | None = None


class LogLine(_Body):
    stream: Literal["stdout", "stderr"] = "stdout"
    at: float
    data: str = Field(max_length=65536)


class LogBatch(_Body):
    lines: list[LogLine] = Field(max_length=10000)


class LabelChange(_Body):
    set: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class TaintChange(_Body):
    add: list[Taint] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list, description="taint keys to remove")


class SubmitRequest(TaskSpec):
    """A task spec; the idempotency key may come in the body or the ``Idempotency-Key`` header."""

    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
