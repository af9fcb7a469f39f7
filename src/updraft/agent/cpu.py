"""Who gets the CPU nobody requested: the agent's containers' CPU weights.

A container's CPU request is its guaranteed share under contention: its weight (``cpu.shares``) is the
request in Kubernetes' mapping, 1024 per CPU. When the running containers request less than the node has,
the rest (the *excess*) is handed out by weight too, so under Kubernetes' rule a burst of CPU-heavy tasks
shares it evenly and every task of the burst finishes at about the same time, at the end. For jobs, whose
value is their result, that is the worst order: processor sharing maximises the mean completion time of
equal jobs.

``oldest`` (the default) adds the whole excess to the weight of the longest-running container without a
CPU limit, so a burst finishes one task after another, in order, while every container still gets at least
its request. ``shared`` leaves the weights at the requests (Kubernetes' behaviour). The decision is the pure
function :func:`cpu_weights`; :class:`CpuWeights` applies it to Docker when containers start and stop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger("updraft.agent.cpu")

CpuExcess = Literal["oldest", "shared"]
DOCKER_DEFAULT_SHARES = 1024
"""A container created without a CPU request keeps Docker's default weight."""


def request_shares(request_millis: int) -> int:
    """The weight of a request, as Kubernetes maps it (1024 per CPU; at least 2, the kernel's minimum)."""
    return max(2, request_millis * 1024 // 1000) if request_millis else DOCKER_DEFAULT_SHARES


def usable_millis(declared: int | None, cpuset: str | None, host_cpus: int) -> int:
    """The CPU the agent's containers can use: the declared capacity, at most the cpuset's (or host's) CPUs."""
    cpus = host_cpus
    if cpuset:
        cpus = 0
        for part in cpuset.split(","):
            first, _, last = part.strip().partition("-")
            cpus += int(last or first) - int(first) + 1
    return min(declared, cpus * 1000) if declared else cpus * 1000


@dataclass(frozen=True)
class Running:
    """A running container, as far as CPU weights are concerned."""

    container_id: str
    started: float  # when it started (any monotonic order): the oldest gets the excess
    request_millis: int
    limited: bool  # a CPU limit caps it: extra weight would be wasted on it


def cpu_weights(running: Iterable[Running], capacity_millis: int, excess: CpuExcess = "oldest") -> dict[str, int]:
    """Each running container's weight: its request's, plus, under ``oldest``, the node's unrequested
    capacity for the oldest container without a CPU limit."""
    rows = list(running)
    weights = {r.container_id: request_shares(r.request_millis) for r in rows}
    spare = capacity_millis * 1024 // 1000 - sum(weights.values())
    takers = [r for r in rows if not r.limited]
    if excess == "oldest" and spare > 0 and takers:
        oldest = min(takers, key=lambda r: (r.started, r.container_id))
        weights[oldest.container_id] += spare
    return weights


class CpuWeights:
    """Keeps the Docker weights of the agent's running containers equal to :func:`cpu_weights`."""

    def __init__(self, capacity_millis: int, excess: CpuExcess, apply: Callable[[str, int], None]) -> None:
        self.capacity_millis = capacity_millis
        self.excess = excess
        self._apply = apply  # (container id, weight) → Docker; may raise for a container already gone
        self._running: dict[str, Running] = {}
        self._applied: dict[str, int] = {}
        self._lock = threading.Lock()

    def started(self, row: Running, applied: int | None = None) -> None:
        """A container runs; ``applied`` is the weight it was created with (None: unknown, set it)."""
        with self._lock:
            self._running[row.container_id] = row
            if applied is not None:
                self._applied[row.container_id] = applied
            self._rebalance()

    def weight_if_started(self, row: Running) -> int:
        """The weight a container about to be created should start with (no update call once it runs)."""
        with self._lock:
            return cpu_weights([*self._running.values(), row], self.capacity_millis, self.excess)[row.container_id]

    def ended(self, container_id: str) -> None:
        with self._lock:
            if self._running.pop(container_id, None) is not None:
                self._applied.pop(container_id, None)
                self._rebalance()

    def weights(self) -> dict[str, int]:
        with self._lock:
            return dict(self._applied)

    def _rebalance(self) -> None:
        for cid, weight in cpu_weights(self._running.values(), self.capacity_millis, self.excess).items():
            if self._applied.get(cid) == weight:
                continue
            try:
                self._apply(cid, weight)
                self._applied[cid] = weight
            except Exception as exc:  # gone meanwhile, or Docker away: its end will rebalance again
                log.debug("cannot set the cpu weight of %s: %s", cid[:12], exc)
