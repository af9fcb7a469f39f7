"""One attempt as the agent's state machine tracks it, and the reports it produces (pure data and functions)."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from updraft.agent.devices import count_requests, device_env, device_requests, label_value
from updraft.agent.hardening import Hardened
from updraft.agent.probes import Verdict
from updraft.agent.runtime import (
    LABEL_CLUSTER,
    LABEL_CPU_REQUEST,
    LABEL_DEVICES,
    LABEL_NODE,
    LABEL_STOP_AFTER,
    LABEL_TASK,
    LABEL_TOKEN,
    ContainerInfo,
    CreateRequest,
    Key,
)
from updraft.model.api import Assignment
from updraft.model.spec import Probe, TaskSpec

TIMEOUT_EXIT_CODE = 124  # as timeout(1) exits


class Phase(StrEnum):
    PULLING = "pulling"  # the image is being made present
    QUEUED = "queued"  # waiting for a start slot (one start per CPU at a time)
    STARTING = "starting"  # create + start sent
    RUNNING = "running"  # followed: waited on, logs streamed, probed
    LOST = "lost"  # the engine went away while following it: found again by listing
    EXITED = "exited"  # exit seen; the last log lines are being read
    DONE = "done"  # result queued (or fenced); the container is being removed


@dataclass
class ProbeState:
    spec: Probe
    verdict: Verdict
    due: float
    in_flight: bool = False


@dataclass
class Attempt:
    key: Key
    order: int  # assignment order: queued attempts start in it
    phase: Phase
    assignment: Assignment | None = None  # None: adopted, and the control plane has not listed it yet
    hardened: Hardened | None = None
    container_id: str = ""
    info: ContainerInfo | None = None
    adopted: bool = False
    created_shares: int | None = None
    generation: int = 0  # bumped by each liveness restart: an exit of an older run is not the attempt's end
    restarting: bool = False
    deadline: float | None = None  # monotonic: stop it then (the task's timeout)
    stop_after: float | None = None  # seconds cut off before it stops itself (on_disconnect: stop)
    timed_out: bool = False
    stopping: str | None = None  # why a stop was sent
    fenced: bool = False
    unwanted: bool = False  # no longer assigned while starting: stop it once it runs
    streams: set[int] = field(default_factory=set)
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=200))
    logs_deadline: float | None = None
    probes: dict[str, ProbeState] = field(default_factory=dict)
    restarts: int = 0

    @property
    def spec(self) -> TaskSpec | None:
        return self.assignment.spec if self.assignment is not None else None


def owner(key: Key) -> str:
    """The name an attempt holds CPU rows and devices under before its container exists."""
    return f"{key[0]}/{key[1]}"


def create_request(a: Attempt, node: str, cluster: str, shares: int, cpuset: str | None, cgroup_parent: str | None,
                   devices: Mapping[str, list[str]], device_mode: str = "docker") -> CreateRequest:
    """The container of an attempt: its labels (how a restarted agent finds and rebuilds it), its command and
    environment, its limits and the hardening decided when it was admitted."""
    assert a.assignment is not None and a.hardened is not None
    spec, (task_id, token) = a.assignment.spec, a.key
    labels = {**spec.labels, LABEL_NODE: node, LABEL_CLUSTER: cluster, LABEL_TASK: task_id,
              LABEL_TOKEN: str(token), LABEL_CPU_REQUEST: str(spec.resources.request_cpu())}
    if spec.on_disconnect == "stop" and spec.stop_after:
        labels[LABEL_STOP_AFTER] = str(spec.stop_after)
    if devices:
        labels[LABEL_DEVICES] = label_value(devices)
    limits = spec.resources.limits
    return CreateRequest(
        name=f"updraft-{task_id}-{token}",
        image=spec.image,
        command=[*(spec.command or []), *(spec.args or [])] or None,
        env={**spec.container_env(), "UPDRAFT_TASK_ID": task_id, "UPDRAFT_TOKEN": str(token),
             **device_env(devices)},
        labels=labels,
        workdir=spec.workdir,
        hardening=a.hardened.hardening,
        mounts=a.hardened.mounts,
        cpu_shares=shares,
        nano_cpus=limits.cpu_millis * 1_000_000 if limits.cpu else None,
        memory_bytes=limits.memory_bytes if limits.memory else None,
        cpuset=cpuset,
        cgroup_parent=cgroup_parent,
        device_requests=() if device_mode == "env" else device_requests(devices) if devices else count_requests(spec),
    )


def running_report(info: ContainerInfo) -> dict[str, Any]:
    return {"state": "running", "container_id": info.container_id, "started_at": info.started_at,
            "image_digest": info.image_digest}


def exit_report(a: Attempt, info: ContainerInfo, tail_bytes: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "state": "exited",
        "container_id": info.container_id,
        "exit_code": info.exit_code,
        "oom_killed": info.oom_killed,
        "started_at": info.started_at,
        "finished_at": info.finished_at,
        "log_tail": "\n".join(a.tail)[-tail_bytes:] if tail_bytes else "",
        "image_digest": info.image_digest,
        "error": None,
    }
    spec = a.spec
    if a.timed_out and spec is not None and spec.timeout is not None:
        report["error"] = f"timed out after {spec.timeout:g} s"
        if info.exit_code in (0, None):
            report["exit_code"] = TIMEOUT_EXIT_CODE
    return report


def error_report(message: str, code: str | None = None) -> dict[str, Any]:
    return {"state": "error", "error": message, **({"error_code": code} if code else {})}


def fresh_probes(spec: TaskSpec | None, now: float) -> dict[str, ProbeState]:
    """Liveness starts passing, readiness not ready; each first checked after its initial delay."""
    if spec is None:
        return {}
    out = {}
    for name, probe in (("liveness", spec.liveness_probe), ("readiness", spec.readiness_probe)):
        if probe is not None:
            out[name] = ProbeState(probe, Verdict(probe, passing=name == "liveness"), now + probe.initial_delay_seconds)
    return out
