"""``/version`` and ``/info``: this API's identity, and Updraft's view of the cluster in Docker's shapes.

``docker info`` describes the engine it talks to; here that is the origin node as the control plane sees
it (capacity, load, offload mode), with the other nodes a container may be offloaded to in ``Updraft``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any

from updraft import __version__
from updraft.dockerapi.views import Container, state_of


class System:
    def __init__(self, origin: str, nodes: Callable[[], list[dict[str, Any]]]) -> None:
        self.origin = origin
        self.nodes = nodes

    def version(self, api: str, min_api: str) -> dict[str, Any]:
        uname = platform.uname()
        details = {"ApiVersion": api, "MinAPIVersion": min_api, "Os": "linux", "Arch": _arch(uname.machine)}
        return {
            "Platform": {"Name": f"Updraft {__version__}"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__,
            "ApiVersion": api,
            "MinAPIVersion": min_api,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": _arch(uname.machine),
            "KernelVersion": uname.release,
            "BuildTime": "",
        }

    def info(self, containers: list[Container]) -> dict[str, Any]:
        nodes = self.nodes()
        me = next((n for n in nodes if n.get("name") == self.origin), {})
        capacity = me.get("capacity") or {}
        metrics = me.get("metrics") or {}
        states = [state_of(c).status for c in containers]
        uname = platform.uname()
        return {
            "ID": self.origin,
            "Name": self.origin,
            "Containers": len(states),
            "ContainersRunning": states.count("running"),
            "ContainersPaused": 0,
            "ContainersStopped": states.count("exited") + states.count("created"),
            "Images": len(me.get("images") or []),
            "Driver": "updraft",
            "DriverStatus": [["control plane nodes", str(len(nodes))]],
            "NCPU": max(1, int(capacity.get("cpu_millis", 1000)) // 1000),
            "MemTotal": int(capacity.get("memory_bytes", 0)),
            "ServerVersion": __version__,
            "OperatingSystem": f"Updraft {__version__} (origin {self.origin})",
            "OSType": "linux",
            "Architecture": _arch(uname.machine),
            "KernelVersion": uname.release,
            "Labels": [f"{k}={v}" for k, v in (me.get("labels") or {}).items()]
            + [f"updraft.tag={t}" for t in me.get("tags") or []],
            "Swarm": {"LocalNodeState": "inactive"},
            "SecurityOptions": [],
            "Warnings": [] if me else [f"node {self.origin} is not registered with the control plane"],
            "Updraft": {
                "Origin": self.origin,
                "CpuPercent": metrics.get("cpu_pct"),
                "MemoryPercent": metrics.get("memory_pct"),
                "Offloading": me.get("offloading"),
                "Nodes": [
                    {"Name": n.get("name"), "State": n.get("state"), "Tags": n.get("tags"),
                     "CpuPercent": (n.get("metrics") or {}).get("cpu_pct")}
                    for n in nodes
                ],
            },
        }


def _arch(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
