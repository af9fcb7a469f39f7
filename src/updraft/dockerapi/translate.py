"""``POST /containers/create`` → an Updraft task spec, or the list of options Updraft refuses.

A pure decision: the request body in, a :class:`CreatePlan` out. Every field of the body is accounted for —
mapped onto the task spec, accepted because it holds Docker's default (the docker CLI sends most fields
zero-valued), or refused with a :class:`Refusal` that names the option and says why. Nothing is silently
dropped: a field this module does not know is refused as soon as it carries a non-default value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RESERVED_LABEL_PREFIX = "updraft."


@dataclass(frozen=True)
class Refusal:
    """One refused option: ``code`` for programs, ``option`` and ``reason`` for people."""

    code: str
    option: str
    reason: str

    @property
    def message(self) -> str:
        return f"{self.option}: {self.reason}"


@dataclass(frozen=True)
class CreatePlan:
    spec: dict[str, Any]
    """The task spec (API JSON) submitted on start; ``origin`` and the container's own labels are added then."""
    auto_remove: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    """What ``docker inspect`` echoes under ``Config`` (image, cmd, entrypoint, env, workdir, labels)."""
    host_config: dict[str, Any] = field(default_factory=dict)
    """What it echoes under ``HostConfig`` (the mapped resource fields, AutoRemove)."""
    refusals: tuple[Refusal, ...] = ()

    @property
    def message(self) -> str:
        return "Updraft's Docker API cannot honour " + "; ".join(r.message for r in self.refusals)


_OFFLOAD = "a container may run on another node, where"
# Body path → (code, option as the user typed it, why). Checked only when the value is not Docker's default.
KNOWN_REFUSALS: dict[str, tuple[str, str, str]] = {
    "Tty": ("tty", "-t/--tty", "no terminal is allocated; output streams as logs (run without -t)"),
    "OpenStdin": ("stdin", "-i/--interactive", "a task has no standard input (run without -i)"),
    "AttachStdin": ("stdin", "-i/--interactive", "a task has no standard input (run without -i)"),
    "StdinOnce": ("stdin", "-i/--interactive", "a task has no standard input (run without -i)"),
    "ExposedPorts": ("ports", "--expose/-p", f"ports are not supported: {_OFFLOAD} this host's ports mean nothing"),
    "HostConfig.PortBindings": ("ports", "-p/--publish",
                                f"published ports are not supported: {_OFFLOAD} this host's ports mean nothing"),
    "HostConfig.PublishAllPorts": ("ports", "-P/--publish-all",
                                   f"published ports are not supported: {_OFFLOAD} this host's ports mean nothing"),
    "HostConfig.Privileged": ("privileged", "--privileged", "refused by the container hardening"),
    "HostConfig.CapAdd": ("privileged", "--cap-add", "refused by the container hardening"),
    "HostConfig.CapDrop": ("privileged", "--cap-drop", "capabilities are the agent's to set, not the task's"),
    "HostConfig.SecurityOpt": ("privileged", "--security-opt", "refused by the container hardening"),
    "HostConfig.Devices": ("privileged", "--device", "host devices are refused by the container hardening"),
    "HostConfig.DeviceRequests": ("privileged", "--gpus", "device requests are not supported"),
    "HostConfig.Binds": ("mounts", "-v/--volume", f"host mounts are refused: {_OFFLOAD} the host path differs"),
    "HostConfig.Mounts": ("mounts", "--mount", f"mounts are refused: {_OFFLOAD} the host path differs"),
    "HostConfig.VolumesFrom": ("mounts", "--volumes-from", "other containers' volumes are not supported"),
    "HostConfig.Tmpfs": ("mounts", "--tmpfs", "tmpfs mounts are not supported"),
    "HostConfig.VolumeDriver": ("mounts", "--volume-driver", "volume drivers are not supported"),
    "Volumes": ("mounts", "-v/--volume", "anonymous volumes are not supported"),
    "HostConfig.NetworkMode": ("network", "--network", "only the default network is supported"),
    "NetworkingConfig": ("network", "--network/--network-alias/--ip", "only the default network is supported"),
    "HostConfig.Links": ("network", "--link", "links between containers are not supported"),
    "HostConfig.Dns": ("network", "--dns", "the node's resolver is used"),
    "HostConfig.DnsSearch": ("network", "--dns-search", "the node's resolver is used"),
    "HostConfig.DnsOptions": ("network", "--dns-option", "the node's resolver is used"),
    "HostConfig.ExtraHosts": ("network", "--add-host", "host entries are not supported"),
    "Hostname": ("network", "-h/--hostname", "the node names the container"),
    "Domainname": ("network", "--domainname", "the node names the container"),
    "MacAddress": ("network", "--mac-address", "only the default network is supported"),
    "HostConfig.PidMode": ("namespaces", "--pid", "sharing the host's namespaces is refused by the hardening"),
    "HostConfig.IpcMode": ("namespaces", "--ipc", "sharing namespaces is refused by the hardening"),
    "HostConfig.UTSMode": ("namespaces", "--uts", "sharing namespaces is refused by the hardening"),
    "HostConfig.UsernsMode": ("namespaces", "--userns", "sharing namespaces is refused by the hardening"),
    "HostConfig.CgroupnsMode": ("namespaces", "--cgroupns", "the agent sets the cgroup namespace"),
    "HostConfig.Cgroup": ("namespaces", "--cgroup", "the agent sets the cgroup"),
    "HostConfig.CgroupParent": ("resources", "--cgroup-parent", "the agent places containers in its own cgroup"),
    "HostConfig.CpusetCpus": ("resources", "--cpuset-cpus", "the agent pins containers to its own cpuset"),
    "HostConfig.CpusetMems": ("resources", "--cpuset-mems", "the agent pins containers to its own cpuset"),
    "HostConfig.MemorySwap": ("resources", "--memory-swap", "swap is off: a memory limit is the limit"),
    "HostConfig.RestartPolicy": ("restart", "--restart", "Updraft retries failed tasks itself (updraft run "
                                 "--max-retries); a restart policy is not supported"),
    "HostConfig.LogConfig": ("logging", "--log-driver/--log-opt", "output goes to the control plane's log"),
    "User": ("user", "-u/--user", "the user is the image's; choosing another is not supported"),
    "Healthcheck": ("probes", "--health-*", "use Updraft's readiness/liveness probes (task spec)"),
    "StopSignal": ("stop", "--stop-signal", "the agent stops containers with its own signal and grace"),
    "StopTimeout": ("stop", "--stop-timeout", "the agent stops containers with its own signal and grace"),
    "HostConfig.Runtime": ("runtime", "--runtime", "the node's default runtime is used"),
    "HostConfig.Isolation": ("runtime", "--isolation", "the node's default isolation is used"),
    "HostConfig.Init": ("runtime", "--init", "not supported"),
    "HostConfig.ReadonlyRootfs": ("runtime", "--read-only", "not supported"),
    "HostConfig.ShmSize": ("resources", "--shm-size", "not supported"),
    "HostConfig.PidsLimit": ("resources", "--pids-limit", "not supported"),
    "HostConfig.Ulimits": ("resources", "--ulimit", "not supported"),
    "HostConfig.OomKillDisable": ("resources", "--oom-kill-disable", "not supported"),
    "HostConfig.Sysctls": ("privileged", "--sysctl", "refused by the container hardening"),
}

MAPPED_CONFIG = {"Image", "Cmd", "Entrypoint", "Env", "WorkingDir", "Labels", "AttachStdout", "AttachStderr"}
MAPPED_HOST = {"NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "Memory", "MemoryReservation", "AutoRemove"}
DEFAULT_NETWORKS = ("", "default", "bridge")


def is_default(value: Any) -> bool:
    """Docker's zero value: null, false, 0, "", and containers holding only zero values (``ConsoleSize [0, 0]``)."""
    if isinstance(value, Mapping):
        return all(is_default(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(is_default(v) for v in value)
    return value in (None, False, 0, "")


def _strslice(value: Any) -> list[str] | None:
    """Docker's ``strslice``: a JSON string is a one-element list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _refuse(path: str, value: Any) -> Refusal:
    code, option, reason = KNOWN_REFUSALS.get(path, ("unsupported", path, "not supported by Updraft's Docker API"))
    return Refusal(code, f"{option} ({path}={_short(value)})", reason)


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _network_refusals(body: Mapping[str, Any], host: Mapping[str, Any]) -> list[Refusal]:
    out = []
    mode = host.get("NetworkMode") or ""
    if mode not in DEFAULT_NETWORKS:
        out.append(_refuse("HostConfig.NetworkMode", mode))
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    for name, endpoint in endpoints.items():
        if name not in DEFAULT_NETWORKS or not is_default(endpoint):
            out.append(_refuse("NetworkingConfig", {name: endpoint}))
    return out


KEYED = frozenset({"ExposedPorts", "Volumes", "HostConfig.PortBindings", "HostConfig.Sysctls", "HostConfig.Tmpfs",
                   "HostConfig.StorageOpt", "HostConfig.Annotations"})
"""Maps whose keys are the setting (``ExposedPorts {"80/tcp": {}}``): default only when empty."""


def _is_default_at(path: str, value: Any) -> bool:
    if path in KEYED:
        return not value
    return is_default(value) or _special_defaults(path, value)


def _special_defaults(path: str, value: Any) -> bool:
    """Fields whose Docker default is not a zero value."""
    if path == "HostConfig.RestartPolicy":
        return isinstance(value, Mapping) and value.get("Name") in (None, "", "no") and not value.get(
            "MaximumRetryCount")
    if path == "HostConfig.LogConfig":
        return isinstance(value, Mapping) and value.get("Type") in (None, "") and not value.get("Config")
    if path == "HostConfig.MemorySwappiness":
        return value in (None, -1)
    return path in ("HostConfig.NetworkMode", "NetworkingConfig")  # judged by _network_refusals


def _resources(host: Mapping[str, Any]) -> tuple[dict[str, Any], list[Refusal]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    refusals: list[Refusal] = []
    nano, quota = int(host.get("NanoCpus") or 0), int(host.get("CpuQuota") or 0)
    period = int(host.get("CpuPeriod") or 0) or 100_000
    if nano and quota:
        refusals.append(Refusal("resources", "--cpus with --cpu-quota", "conflicting options: use one of them"))
    if nano:
        limits["cpu"] = f"{max(1, nano // 1_000_000)}m"
    elif quota > 0:
        limits["cpu"] = f"{max(1, quota * 1000 // period)}m"
    elif host.get("CpuPeriod"):
        refusals.append(_refuse("HostConfig.CpuPeriod", host.get("CpuPeriod")))
    shares = int(host.get("CpuShares") or 0)
    if shares:  # Kubernetes maps a request to shares = millicores * 1024 / 1000; this is the inverse
        requests["cpu"] = f"{max(1, round(shares * 1000 / 1024))}m"
    if host.get("Memory"):
        limits["memory"] = str(int(host["Memory"]))
        swap = host.get("MemorySwap")
        if swap and int(swap) != int(host["Memory"]):
            refusals.append(_refuse("HostConfig.MemorySwap", swap))
    elif host.get("MemorySwap"):
        refusals.append(_refuse("HostConfig.MemorySwap", host.get("MemorySwap")))
    if host.get("MemoryReservation"):
        requests["memory"] = str(int(host["MemoryReservation"]))
    out = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return out, refusals


def _env(values: list[str] | None) -> tuple[dict[str, str], list[Refusal]]:
    env: dict[str, str] = {}
    refusals = []
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep:
            refusals.append(Refusal("env", f"-e {key} (Env)", "a variable without a value: give KEY=VALUE"))
            continue
        env[key] = value
    return env, refusals


def plan_create(body: Mapping[str, Any], platform: str = "") -> CreatePlan:
    """Translate a create request. The plan carries refusals; the caller answers 400 when there are any."""
    host: Mapping[str, Any] = body.get("HostConfig") or {}
    refusals: list[Refusal] = []
    for key, value in body.items():
        if key in MAPPED_CONFIG or key == "HostConfig" or _is_default_at(key, value):
            continue
        refusals.append(_refuse(key, value))
    for key, value in host.items():
        path = f"HostConfig.{key}"
        if key in MAPPED_HOST or key == "MemorySwap" or _is_default_at(path, value):
            continue
        refusals.append(_refuse(path, value))
    refusals += _network_refusals(body, host)
    if platform:
        refusals.append(Refusal("platform", f"--platform ({platform})", "the node that runs it chooses"))
    image = str(body.get("Image") or "")
    if not image:
        refusals.append(Refusal("image", "IMAGE", "an image is required"))
    entrypoint, cmd = _strslice(body.get("Entrypoint")), _strslice(body.get("Cmd"))
    if entrypoint == [""]:
        refusals.append(Refusal("entrypoint", '--entrypoint ""', "resetting an image's entrypoint is not supported"))
    env, env_refusals = _env(body.get("Env"))
    refusals += env_refusals
    labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
    refusals += [
        Refusal("labels", f"--label {k}", f"labels under {RESERVED_LABEL_PREFIX} are Updraft's own")
        for k in labels
        if k.startswith(RESERVED_LABEL_PREFIX)
    ]
    resources, resource_refusals = _resources(host)
    refusals += resource_refusals
    spec: dict[str, Any] = {"image": image}
    command = [*(entrypoint or []), *(cmd or [])] if entrypoint != [""] else cmd
    if command:
        spec["command"] = command
    if env:
        spec["env"] = env
    if body.get("WorkingDir"):
        spec["workdir"] = str(body["WorkingDir"])
    if labels:
        spec["labels"] = labels
    if resources:
        spec["resources"] = resources
    config = {"Image": image, "Cmd": cmd, "Entrypoint": entrypoint, "Env": list(body.get("Env") or []),
              "WorkingDir": str(body.get("WorkingDir") or ""), "Labels": labels}
    host_echo = {k: host.get(k) or 0 for k in ("NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "Memory",
                                                "MemoryReservation")}
    auto_remove = bool(host.get("AutoRemove"))
    return CreatePlan(spec=spec, auto_remove=auto_remove, config=config,
                      host_config={**host_echo, "AutoRemove": auto_remove, "NetworkMode": "default",
                                   # docker logs works as with json-file (docker-py reads this to decide)
                                   "LogConfig": {"Type": "json-file", "Config": {}},
                                   "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                                   "PortBindings": {}, "Binds": None, "Privileged": False},
                      refusals=tuple(refusals))
