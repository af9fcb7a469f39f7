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
function :func:`cpu_weights`; :class:`CpuBook` says which Docker updates keep it true as containers start
and stop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

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


class CpuBook:
    """The running containers and the weights last applied to them: each change returns the Docker updates that
    keep the weights equal to :func:`cpu_weights`. No I/O and no lock: the agent's state machine owns it."""

    def __init__(self, capacity_millis: int, excess: CpuExcess) -> None:
        self.capacity_millis = capacity_millis
        self.excess = excess
        self.running: dict[str, Running] = {}
        self.applied: dict[str, int] = {}

    def weight_if_started(self, row: Running) -> int:
        """The weight a container about to be created should start with (no update call once it runs)."""
        return cpu_weights([*self.running.values(), row], self.capacity_millis, self.excess)[row.container_id]

    def started(self, row: Running, applied: int | None = None) -> list[tuple[str, int]]:
        """A container runs; ``applied`` is the weight it has now (None: unknown, set it)."""
        self.running[row.container_id] = row
        if applied is not None:
            self.applied[row.container_id] = applied
        return self._rebalance()

    def ended(self, container_id: str) -> list[tuple[str, int]]:
        if self.running.pop(container_id, None) is None:
            return []
        self.applied.pop(container_id, None)
        return self._rebalance()

    def failed(self, container_id: str) -> None:
        """An update did not apply (gone meanwhile, or Docker away): the next change sets it again."""
        self.applied.pop(container_id, None)

    def _rebalance(self) -> list[tuple[str, int]]:
        updates = []
        for cid, weight in cpu_weights(self.running.values(), self.capacity_millis, self.excess).items():
            if self.applied.get(cid) != weight:
                self.applied[cid] = weight
                updates.append((cid, weight))
        return updates
