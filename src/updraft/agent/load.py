"""How busy the node is, as a percentage of its capacity.

``host`` (the default on a real device) asks psutil for host-wide cpu and memory. ``containers`` measures
only this agent's containers against its declared capacity, so several agents on one machine behave like
separate devices.
"""

from __future__ import annotations

from typing import Protocol

import psutil

from updraft.agent.cgroup import ParentCgroup
from updraft.clock import Clock


class LoadMeter(Protocol):
    def sample(self) -> tuple[float, float]:
        """(cpu %, memory %) of capacity since the previous sample."""


class HostLoad:
    def __init__(self) -> None:
        psutil.cpu_percent(None)

    def sample(self) -> tuple[float, float]:
        return float(psutil.cpu_percent(None)), float(psutil.virtual_memory().percent)


class ContainerLoad:
    def __init__(self, cgroup: ParentCgroup, cpu_millis: int, memory_bytes: int, clock: Clock) -> None:
        self.cgroup, self.cpu_millis, self.memory_bytes, self.clock = cgroup, cpu_millis, memory_bytes, clock
        self._last = (clock.monotonic(), cgroup.cpu_usage_seconds() or 0.0)

    def sample(self) -> tuple[float, float]:
        now, used = self.clock.monotonic(), self.cgroup.cpu_usage_seconds()
        last_t, last_used = self._last
        cpu = 0.0
        if used is not None and now > last_t:
            cpu = 100.0 * (used - last_used) / (now - last_t) / (self.cpu_millis / 1000)
            self._last = (now, used)
        mem = 100.0 * (self.cgroup.memory_bytes() or 0) / self.memory_bytes
        return max(0.0, min(cpu, 100.0)), max(0.0, min(mem, 100.0))
