"""A parent cgroup for all of one agent's containers.

Docker's ``cgroup_parent`` puts every container of the agent under one cgroup, so a declared capacity
(``--cpus 0.5 --memory 512Mi --cpuset 0``) is enforced on the containers together, the way a small device
would be, and the agent can read its containers' total usage from one place. Works on cgroup v1 (one
hierarchy per controller) and v2 (unified).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
log = logging.getLogger("updraft.cgroup")


def is_v2(root: Path = ROOT) -> bool:
    return (root / "cgroup.controllers").exists()


class ParentCgroup:
    def __init__(self, name: str, root: Path = ROOT) -> None:
        self.name = name  # e.g. "updraft-edge-1"; docker's cgroup_parent is "/" + name
        self.root = root
        self.v2 = is_v2(root)

    @property
    def docker_parent(self) -> str:
        return "/" + self.name

    def _dir(self, controller: str) -> Path:
        return self.root / self.name if self.v2 else self.root / controller / self.name

    def _write(self, controller: str, file: str, value: str) -> None:
        path = self._dir(controller) / file
        try:
            path.write_text(value)
        except OSError as exc:
            log.warning("cannot write %s=%s: %s", path, value, exc)

    def ensure(self, cpu_millis: int | None, memory_bytes: int | None, cpuset: str | None) -> None:
        """Create the cgroup and set its limits (idempotent)."""
        if self.v2:
            with contextlib.suppress(OSError):
                (self.root / "cgroup.subtree_control").write_text("+cpu +cpuset +memory")
            self._dir("").mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                (self._dir("") / "cgroup.subtree_control").write_text("+cpu +cpuset +memory")
            quota = f"{cpu_millis * PERIOD_US // 1000} {PERIOD_US}" if cpu_millis else f"max {PERIOD_US}"
            self._write("", "cpu.max", quota)
            self._write("", "memory.max", str(memory_bytes) if memory_bytes else "max")
            if cpuset:
                self._write("", "cpuset.cpus", cpuset)
            return
        for controller in ("cpu", "cpuacct", "memory", "cpuset", "pids", "blkio", "devices", "freezer"):
            if (self.root / controller).is_dir():
                with contextlib.suppress(OSError):
                    self._dir(controller).mkdir(exist_ok=True)
        self._write("cpu", "cpu.cfs_period_us", str(PERIOD_US))
        self._write("cpu", "cpu.cfs_quota_us", str(cpu_millis * PERIOD_US // 1000) if cpu_millis else "-1")
        if memory_bytes:
            self._write("memory", "memory.limit_in_bytes", str(memory_bytes))
        parent_cpuset = self.root / "cpuset"
        if parent_cpuset.is_dir():
            mems = (parent_cpuset / "cpuset.mems").read_text().strip()
            cpus = cpuset or (parent_cpuset / "cpuset.cpus").read_text().strip()
            self._write("cpuset", "cpuset.mems", mems)
            self._write("cpuset", "cpuset.cpus", cpus)

    def cpu_usage_seconds(self) -> float | None:
        """Total CPU time used by everything under the parent (None if unreadable)."""
        try:
            if self.v2:
                for line in (self._dir("") / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec"):
                        return int(line.split()[1]) / 1e6
                return None
            return int((self._dir("cpuacct") / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def memory_bytes(self) -> int | None:
        try:
            if self.v2:
                return int((self._dir("") / "memory.current").read_text())
            usage = int((self._dir("memory") / "memory.usage_in_bytes").read_text())
            cache = 0
            for line in (self._dir("memory") / "memory.stat").read_text().splitlines():
                if line.startswith("total_inactive_file "):
                    cache = int(line.split()[1])
            return max(usage - cache, 0)
        except (OSError, ValueError):
            return None


def host_cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
