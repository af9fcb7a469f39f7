"""Accelerators: what a node declares, and what Docker needs to hand a container its devices (``--gpus``).

The scheduler counts extended resources (``nvidia.com/gpu: 2``) as it counts cpu; the agent then has to give
each container *its own* devices. ``docker run --gpus 1`` would always pick the first GPU, so two one-GPU tasks
would share it: the agent keeps a :class:`DevicePool` and asks Docker for the device ids it assigned.

Pure, except :func:`detect_gpus`, which runs ``nvidia-smi -L`` when it is installed (a node without it, or
without GPUs, declares none; an operator may still declare them by flag, see :func:`parse_declared`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from docker.types import DeviceRequest

from updraft.errors import ValidationError
from updraft.model import TaskSpec
from updraft.model.quantity import check_extended_name

GPU = "nvidia.com/gpu"
DRIVERS: Mapping[str, tuple[str, list[list[str]]]] = {GPU: ("nvidia", [["gpu"]])}
"""extended resource → (Docker device driver, capabilities), for the resources Docker can hand over."""

_SMI_LINE = re.compile(r"^GPU (?P<index>\d+): (?P<model>.+?) \(UUID: (?P<uuid>[^)]+)\)\s*$")


@dataclass(frozen=True, slots=True)
class Gpu:
    index: str
    model: str
    uuid: str


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """``nvidia-smi -L`` lines (``GPU 0: Tesla V100-SXM2-16GB (UUID: GPU-…)``) → GPUs; other lines ignored."""
    found = []
    for line in output.splitlines():
        match = _SMI_LINE.match(line.strip())
        if match:
            found.append(Gpu(match["index"], match["model"], match["uuid"]))
    return found


def detect_gpus(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> list[Gpu]:
    """The node's NVIDIA GPUs, or none when ``nvidia-smi`` is missing or fails."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else []


def gpu_capacity(gpus: list[Gpu]) -> dict[str, int]:
    """The extended capacity to register: ``{"nvidia.com/gpu": n}``, or nothing."""
    return {GPU: len(gpus)} if gpus else {}


def gpu_labels(gpus: list[Gpu]) -> dict[str, str]:
    """Labels affinity can match on, as GPU feature discovery names them (one model per node assumed)."""
    if not gpus:
        return {}
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", gpus[0].model).strip("-.")[:63]
    return {"nvidia.com/gpu.product": model, "nvidia.com/gpu.count": str(len(gpus))}


def parse_declared(items: Iterable[str]) -> dict[str, int]:
    """``--extended-resource nvidia.com/gpu=2`` values → ``{"nvidia.com/gpu": 2}``."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition("=")
        problem = check_extended_name(name) if sep else f"{item!r}: use name=count, e.g. nvidia.com/gpu=2"
        if problem is None and not count.isdigit():
            problem = f"{item!r}: the count must be a whole number"
        if problem is not None:
            raise ValidationError(f"extended resource: {problem}", field="extended_resource")
        out[name] = int(count)
    return out


class DevicePool:
    """Which device ids of each resource are free on this node; one container's devices are its own."""

    def __init__(self, devices: Mapping[str, Iterable[str]]) -> None:
        self._free = {name: list(ids) for name, ids in devices.items()}
        self._held: dict[str, dict[str, list[str]]] = {}

    def free(self, name: str) -> list[str]:
        return list(self._free.get(name, []))

    def take(self, owner: str, spec: TaskSpec) -> dict[str, list[str]] | None:
        """Reserve the devices ``spec`` requests for ``owner`` (a container or attempt key); None if they are
        not all free (nothing is reserved then). Taking again for the same owner returns what it holds."""
        if owner in self._held:
            return self._held[owner]
        wanted = {name: n for name, n in spec.resources.request_extended().items() if name in DRIVERS}
        if any(len(self._free.get(name, [])) < n for name, n in wanted.items()):
            return None
        got = {}
        for name, n in wanted.items():
            got[name], self._free[name] = self._free[name][:n], self._free[name][n:]
        self._held[owner] = got
        return got

    def adopt(self, owner: str, held: Mapping[str, list[str]]) -> None:
        """Record devices a container found running (after an agent restart) already holds."""
        for name, ids in held.items():
            self._free[name] = [i for i in self._free.get(name, []) if i not in ids]
        self._held[owner] = {name: list(ids) for name, ids in held.items()}

    def release(self, owner: str) -> None:
        for name, ids in self._held.pop(owner, {}).items():
            self._free.setdefault(name, []).extend(ids)
            self._free[name].sort(key=lambda i: (len(i), i))


def device_requests(assigned: Mapping[str, list[str]]) -> tuple[DeviceRequest, ...]:
    """docker-py ``device_requests`` for the devices a container was assigned (``--gpus '"device=0,1"'``)."""
    out = []
    for name, ids in sorted(assigned.items()):
        if ids and name in DRIVERS:
            driver, capabilities = DRIVERS[name]
            out.append(DeviceRequest(driver=driver, device_ids=list(ids), capabilities=capabilities))
    return tuple(out)


def count_requests(spec: TaskSpec) -> tuple[DeviceRequest, ...]:
    """Without a pool (devices not enumerated): ``--gpus N`` for the count the spec requests."""
    out = []
    for name, n in sorted(spec.resources.request_extended().items()):
        if name in DRIVERS:
            driver, capabilities = DRIVERS[name]
            out.append(DeviceRequest(driver=driver, count=n, capabilities=capabilities))
    return tuple(out)


def device_env(assigned: Mapping[str, list[str]]) -> dict[str, str]:
    """What the container is told of its GPUs (``NVIDIA_VISIBLE_DEVICES``, which the NVIDIA runtime also reads)."""
    ids = assigned.get(GPU)
    return {"NVIDIA_VISIBLE_DEVICES": ",".join(ids)} if ids else {}


def label_value(assigned: Mapping[str, list[str]]) -> str:
    """The container label recording its devices, so an agent that restarts can :meth:`DevicePool.adopt`."""
    return ";".join(f"{name}={','.join(ids)}" for name, ids in sorted(assigned.items()) if ids)


def parse_label(value: str) -> dict[str, list[str]]:
    out = {}
    for part in filter(None, value.split(";")):
        name, _, ids = part.partition("=")
        out[name] = [i for i in ids.split(",") if i]
    return out
