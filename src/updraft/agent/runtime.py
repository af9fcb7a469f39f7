"""The agent's seam to the container engine: a typed protocol and the plain data that crosses it.

:class:`ContainerRuntime` is everything the agent asks of Docker. :mod:`updraft.agent.docker_runtime` implements
it with docker-py's public API; :mod:`updraft.agent.fake_runtime` in memory, for tests. The state machine never
sees either: it decides with the data classes below and the driver calls the runtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

Key = tuple[str, int]
"""An attempt: (task id, token)."""
Stream = Literal["stdout", "stderr"]

LABEL_NODE, LABEL_TASK, LABEL_TOKEN = "updraft.node", "updraft.task", "updraft.token"
LABEL_CLUSTER = "updraft.cluster"
LABEL_STOP_AFTER = "updraft.stop_after"
LABEL_CPU_REQUEST = "updraft.cpu_request"  # millicores: a restarted agent rebuilds the containers' weights
LABEL_DEVICES = "updraft.devices"  # the devices it was given (agent.devices.label_value)


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """One of the agent's containers as the engine reports it (found by its labels after a restart)."""

    container_id: str
    task_id: str
    token: int
    running: bool
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float | None = None  # epoch seconds
    finished_at: float | None = None
    image_digest: str | None = None
    request_millis: int = 0
    limited: bool = False  # a CPU limit is set
    cpu_shares: int | None = None  # its current weight
    stop_after: float | None = None
    devices: str = ""  # its LABEL_DEVICES

    @property
    def key(self) -> Key:
        return (self.task_id, self.token)


@dataclass(frozen=True, slots=True)
class ImageFacts:
    image_id: str
    user: str | None  # the image's configured USER ("" or None: root)


@dataclass(frozen=True, slots=True)
class Mount:
    """A volume the hardening rules accepted: a host path (bind) or a named volume."""

    source: str
    target: str
    read_only: bool
    bind: bool


@dataclass(frozen=True, slots=True)
class Hardening:
    """Security options every container gets (see docs/security.md, "Container hardening")."""

    cap_add: tuple[str, ...]
    pids_limit: int
    read_only_rootfs: bool
    user: str | None
    no_new_privileges: bool = True


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """Everything needed to create and start one attempt's container: decided, not yet done."""

    name: str
    image: str
    command: list[str] | None
    env: dict[str, str]
    labels: dict[str, str]
    workdir: str | None
    hardening: Hardening
    mounts: tuple[Mount, ...] = ()
    cpu_shares: int | None = None
    nano_cpus: int | None = None
    memory_bytes: int | None = None
    cpuset: str | None = None
    cgroup_parent: str | None = None
    device_requests: tuple[object, ...] = field(default=())  # docker.types.DeviceRequest, from agent.devices


@dataclass(frozen=True, slots=True)
class LogFrame:
    at: float  # epoch seconds, from the engine's timestamp
    data: bytes


class ContainerRuntime(Protocol):
    """What the agent needs from a container engine. Every method may raise
    :class:`updraft.errors.Unavailable` when the engine does not answer."""

    def ping(self) -> bool: ...

    def containers(self) -> list[ContainerInfo]:
        """This agent's containers (by label), running or not."""

    def inspect(self, container_id: str) -> ContainerInfo: ...

    def images(self) -> list[str]:
        """Digests and tags held, for image locality."""

    def pull(self, ref: str) -> ImageFacts:
        """Pull ``ref`` unless present and check its pinned digest; raises ImageError with the reason."""

    def create(self, request: CreateRequest) -> str:
        """Create and start the container; its id. Raises ImageError when the engine refuses."""

    def stop(self, container_id: str, grace: float) -> None: ...

    def remove(self, container_id: str) -> None: ...

    def restart(self, container_id: str, grace: float) -> None: ...

    def set_cpu_shares(self, container_id: str, shares: int) -> None: ...

    def wait(self, container_id: str) -> None:
        """Block until the container is not running."""

    def logs(self, container_id: str, stream: Stream, follow: bool, since: float | None) -> Iterator[LogFrame]:
        """One stream's messages from ``since`` (inclusive) on; with ``follow`` until the container exits."""

    def exec(self, container_id: str, command: list[str], timeout: float) -> int | None:
        """Exit code of ``command`` run in the container, None if it outlived ``timeout``."""

    def pid(self, container_id: str) -> int | None: ...

    def address(self, container_id: str) -> str | None: ...
