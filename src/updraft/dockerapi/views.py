"""How a container looks to Docker clients: a pure rendering of the local record and its Updraft task.

A container is the create request (kept here until start) plus, once started, the task it became. Docker's
state follows the task: pending, scheduled and running all read as ``running`` (``docker start`` returned
and the container will run), a terminal task as ``exited`` with the attempt's exit code. Where it ran and why
are labels (``updraft.node``, ``updraft.placement``, ``updraft.reason``) and an ``Updraft`` section of
``docker inspect``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from updraft.dockerapi.frames import iso
from updraft.dockerapi.translate import CreatePlan
from updraft.errors import ValidationError

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
EXIT_DAEMON_ERROR = 125
"""Docker's exit status when the engine, not the program, failed (the task never ran: no image, no node…)."""
EXIT_KILLED = 137
"""128 + SIGKILL: a killed or stopped container whose program reported no status of its own."""
LABEL_NODE, LABEL_PLACEMENT, LABEL_REASON, LABEL_TASK = "updraft.node", "updraft.placement", "updraft.reason", \
    "updraft.task"


@dataclass
class Container:
    """The local record of one container: mutable, owned by the engine and changed under its lock."""

    id: str
    name: str
    created: float
    plan: CreatePlan
    task_id: str | None = None
    task: dict[str, Any] | None = None
    started: float | None = None
    removed: bool = False
    start_error: str = ""
    """Why the last start failed (the control plane refused or could not be reached); empty once one succeeds."""
    failed_starts: int = 0

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class State:
    status: str  # created | running | exited
    exit_code: int = 0
    error: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    oom_killed: bool = False

    @property
    def running(self) -> bool:
        return self.status == "running"


def attempt(task: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    attempts = (task or {}).get("attempts") or []
    return attempts[-1] if attempts else None


def state_of(c: Container) -> State:
    if c.task is None:
        if c.started is not None:
            return State("running", started_at=c.started)
        return State("created", EXIT_DAEMON_ERROR, c.start_error) if c.start_error else State("created")
    att = attempt(c.task) or {}
    started_at = att.get("started_at") or c.started
    if c.task["state"] not in TERMINAL:
        return State("running", started_at=started_at)
    code = att.get("exit_code")
    error = att.get("error") or ("" if att else str(c.task.get("reason") or ""))
    if code is None:
        code = {"succeeded": 0, "cancelled": EXIT_KILLED}.get(c.task["state"], EXIT_DAEMON_ERROR)
    finished = att.get("finished_at") or c.task.get("updated_at")
    return State("exited", int(code), error if code == EXIT_DAEMON_ERROR else "", started_at, finished,
                 bool(att.get("oom_killed")))


def wait_result(c: Container) -> dict[str, Any]:
    st = state_of(c)
    out: dict[str, Any] = {"StatusCode": st.exit_code}
    if st.error:
        out["Error"] = {"Message": st.error}
    return out


def labels_of(c: Container) -> dict[str, str]:
    labels = dict(c.plan.config.get("Labels") or {})
    att = attempt(c.task)
    if c.task_id:
        labels[LABEL_TASK] = c.task_id
    if att:
        labels[LABEL_NODE] = str(att.get("node") or "")
        labels[LABEL_PLACEMENT] = str(att.get("placement") or "")
        labels[LABEL_REASON] = str(att.get("reason") or "")
    return labels


def command_of(c: Container) -> list[str]:
    cfg = c.plan.config
    return [*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])]


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 1:
        return "Less than a second"
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}"
    if s < 3600:
        return f"{s // 60} minute{'s' if s // 60 != 1 else ''}"
    return f"{s // 3600} hour{'s' if s // 3600 != 1 else ''}"


def status_text(c: Container, now: float) -> str:
    st = state_of(c)
    if st.status == "created":
        return "Created"
    if st.status == "running":
        waiting = c.task is None or c.task["state"] in ("pending", "scheduled")
        return f"Up {_ago(now - (st.started_at or now))}" + (" (waiting for a node)" if waiting else "")
    return f"Exited ({st.exit_code}) {_ago(now - (st.finished_at or now))} ago"


def updraft_section(c: Container) -> dict[str, Any]:
    att = attempt(c.task) or {}
    return {
        "Task": c.task_id,
        "State": (c.task or {}).get("state", "created" if c.started is None else "submitting"),
        "Origin": (c.task or {}).get("spec", {}).get("origin"),
        "Node": att.get("node"),
        "Placement": att.get("placement"),
        "Reason": att.get("reason") or (c.task or {}).get("reason"),
        "Token": att.get("token"),
        "Attempts": len((c.task or {}).get("attempts") or []),
    }


def inspect(c: Container) -> dict[str, Any]:
    st = state_of(c)
    cfg = c.plan.config
    command = command_of(c)
    att = attempt(c.task) or {}
    return {
        "Id": c.id,
        "Created": iso(c.created),
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": {
            "Status": st.status, "Running": st.running, "Paused": False, "Restarting": False,
            "OOMKilled": st.oom_killed, "Dead": False, "Pid": 0, "ExitCode": st.exit_code, "Error": st.error,
            "StartedAt": iso(st.started_at), "FinishedAt": iso(st.finished_at),
        },
        "Image": att.get("image_digest") or cfg["Image"],
        "Name": "/" + c.name,
        "RestartCount": 0,
        "Driver": "updraft",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": dict(c.plan.host_config),
        "Mounts": [],
        "Config": {
            "Hostname": c.short_id, "Domainname": "", "User": "", "AttachStdin": False,
            "AttachStdout": True, "AttachStderr": True, "Tty": False, "OpenStdin": False, "StdinOnce": False,
            "Env": cfg["Env"], "Cmd": cfg["Cmd"], "Image": cfg["Image"], "Volumes": None,
            "WorkingDir": cfg["WorkingDir"], "Entrypoint": cfg["Entrypoint"], "OnBuild": None,
            "Labels": labels_of(c),
        },
        "NetworkSettings": {"Networks": {}, "Ports": {}},
        "Updraft": updraft_section(c),
    }


def summary(c: Container, now: float) -> dict[str, Any]:
    """One entry of ``GET /containers/json`` (``docker ps``)."""
    st = state_of(c)
    command = command_of(c)
    return {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.plan.config["Image"],
        "ImageID": (attempt(c.task) or {}).get("image_digest") or "",
        "Command": " ".join(command),
        "Created": int(c.created),
        "Ports": [],
        "Labels": labels_of(c),
        "State": st.status,
        "Status": status_text(c, now),
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {"Networks": {}},
        "Mounts": [],
    }


# -- list filters -------------------------------------------------------------------------------------
FILTERS = ("id", "name", "label", "status", "exited", "ancestor")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def parse_filters(text: str | None) -> dict[str, list[str]]:
    """Both encodings clients send: ``{"label": ["a=b"]}`` (docker-py) and ``{"label": {"a=b": true}}`` (CLI)."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValidationError(f"invalid filters: {text[:80]!r} is not JSON", field="filters") from None
    if not isinstance(raw, dict):
        raise ValidationError("invalid filters: expected a JSON object", field="filters")
    out: dict[str, list[str]] = {}
    for key, values in raw.items():
        if key not in FILTERS:
            raise ValidationError(f"invalid filter '{key}' (Updraft supports {', '.join(FILTERS)})", field="filters")
        items = [k for k, on in values.items() if on] if isinstance(values, dict) else list(values)
        out[key] = [str(v) for v in items]
    for status in out.get("status", []):
        if status not in STATUSES:
            raise ValidationError(f"invalid filter 'status={status}'", field="filters")
    return out


def _label_matches(labels: Mapping[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


def matches(c: Container, filters: Mapping[str, list[str]]) -> bool:
    """Docker's rule: every filter key must match; within a key, any value may (labels: all of them)."""
    st = state_of(c)
    checks = {
        "id": lambda v: c.id.startswith(v),
        "name": lambda v: v.lstrip("/") in c.name,
        "status": lambda v: st.status == v,
        "exited": lambda v: st.status == "exited" and str(st.exit_code) == v,
        "ancestor": lambda v: c.plan.config["Image"] in (v, v + ":latest") or c.plan.config["Image"].split(":")[0]
        == v,
    }
    for key, values in filters.items():
        if not values:
            continue
        if key == "label":
            labels = labels_of(c)
            if not all(_label_matches(labels, v) for v in values):
                return False
        elif not any(checks[key](v) for v in values):
            return False
    return True
