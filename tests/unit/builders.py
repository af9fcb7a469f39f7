"""Test builders in the manner of Nomad's ``mock.Node()`` / ``mock.Job()``.

Each returns a valid value with sensible defaults; a test overrides only what it is about, so the setup
reads as the scenario: ``node("edge-1", tags=["edge"], cpu_pct=91)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from updraft.model import (
    Capacity,
    Effect,
    Node,
    NodeMetrics,
    NodeState,
    ResourceList,
    Resources,
    Taint,
    Task,
    TaskSpec,
    TaskState,
    Toleration,
    parse_cpu,
    parse_memory,
)
from updraft.model.api import AttemptReport, CapacitySpec, Heartbeat, NodeRegistration
from updraft.scheduler import Policy, Snapshot, Usage

NOW = 1_000_000.0
IMAGE = "busybox:1.36"
DIGEST = "sha256:" + "ab" * 32

_ids = itertools.count(1)


def node(
    name: str = "n1",
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    tags: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
    taints: Iterable[str | Taint] = (),
    state: NodeState = NodeState.READY,
    cordoned: bool = False,
    draining: bool = False,
    cpu_pct: float = 0.0,
    memory_pct: float = 0.0,
    images: Iterable[str] = (),
    offloading: bool = False,
    extended: Mapping[str, int] | None = None,
) -> Node:
    """A ready node; ``extended`` declares countable resources (``{"nvidia.com/gpu": 2}``)."""
    return Node(
        name=name,
        capacity=Capacity(cpu_millis=parse_cpu(cpu), memory_bytes=parse_memory(memory), extended=dict(extended or {})),
        tags=list(tags),
        labels=dict(labels or {}),
        taints=[t if isinstance(t, Taint) else Taint.parse(t) for t in taints],
        state=state,
        cordoned=cordoned,
        draining=draining,
        metrics=NodeMetrics(cpu_pct=cpu_pct, memory_pct=memory_pct),
        images=list(images),
        offloading=offloading,
    )


def tol(key: str = "", operator: str = "Equal", value: str = "", effect: Effect | str | None = None) -> Toleration:
    return Toleration(key=key, operator=operator, value=value, effect=Effect(effect) if effect else None)  # type: ignore[arg-type]


def spec(
    image: str = IMAGE,
    *,
    cpu: str | None = "100m",
    memory: str | None = "64Mi",
    origin: str | None = None,
    cpu_limit: str | None = None,
    extended: Mapping[str, int] | None = None,
    **fields: Any,
) -> TaskSpec:
    """A task spec requesting ``cpu``/``memory`` and ``extended`` resources (and limiting ``cpu_limit``); other
    TaskSpec fields by keyword."""
    fields.setdefault(
        "resources",
        Resources(
            requests=ResourceList(cpu=cpu, memory=memory, **dict(extended or {})), limits=ResourceList(cpu=cpu_limit)
        ),
    )
    return TaskSpec(image=image, origin=origin, **fields)


def task(
    id: str | None = None,
    *,
    seq: int | None = None,
    state: TaskState = TaskState.PENDING,
    not_before: float = 0.0,
    excluded: Iterable[str] = (),
    **spec_fields: Any,
) -> Task:
    """A pending task; ids and submission order default to creation order."""
    n = next(_ids)
    return Task(
        id=id or f"t{n}",
        spec=spec(**spec_fields),
        state=state,
        submitted_seq=n if seq is None else seq,
        not_before=not_before,
        excluded_nodes=list(excluded),
    )


def snapshot(
    nodes: Iterable[Node],
    pending: Iterable[Task],
    usage: Mapping[str, Usage] | None = None,
    forecasts: Mapping[str, str] | None = None,
) -> Snapshot:
    return Snapshot(
        nodes={n.name: n for n in nodes},
        pending=list(pending),
        usage=dict(usage or {}),
        forecasts=dict(forecasts or {}),
    )


def required(*expressions: tuple[str, str, list[str]]) -> dict[str, Any]:
    """``affinity`` requiring (key, operator, values) expressions, ANDed in one term."""
    exprs = [{"key": k, "operator": op, "values": v} for k, op, v in expressions]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": exprs}]}}}  # fmt: skip


def preferred(*terms: tuple[int, tuple[str, str, list[str]]]) -> dict[str, Any]:
    """``affinity`` preferring (weight, (key, operator, values)) terms."""
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": w, "preference": {"matchExpressions": [{"key": k, "operator": op, "values": v}]}}
        for w, (k, op, v) in terms]}}  # fmt: skip


def policy(**overrides: Any) -> Policy:
    return Policy(**overrides)


def registration(
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    tags: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
    taints: Iterable[str] = (),
    images: Iterable[str] = (),
) -> NodeRegistration:
    return NodeRegistration(
        capacity=CapacitySpec(cpu=cpu, memory=memory),
        tags=list(tags),
        labels=dict(labels or {}),
        taints=[Taint.parse(t) for t in taints],
        images=list(images),
    )


def heartbeat(cpu_pct: float = 0.0, memory_pct: float = 0.0, running: Iterable[tuple[str, int]] = ()) -> Heartbeat:
    return Heartbeat(cpu_pct=cpu_pct, memory_pct=memory_pct, running=list(running))


def running(container_id: str = "c0ffee") -> AttemptReport:
    return AttemptReport(state="running", container_id=container_id, started_at=NOW)


def exited(code: int = 0, *, oom: bool = False) -> AttemptReport:
    return AttemptReport(state="exited", exit_code=code, oom_killed=oom, container_id="c0ffee", log_tail="bye\n")
