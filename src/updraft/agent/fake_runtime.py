"""An in-memory :class:`~updraft.agent.runtime.ContainerRuntime` for tests: containers are records, exits and
output are what the test says. Thread-safe, so the real driver can run over it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from updraft.agent.runtime import (
    LABEL_CPU_REQUEST,
    LABEL_STOP_AFTER,
    LABEL_TASK,
    LABEL_TOKEN,
    ContainerInfo,
    CreateRequest,
    ImageFacts,
    LogFrame,
    Stream,
)
from updraft.errors import ImageError, NotFound


@dataclass
class FakeContainer:
    request: CreateRequest
    info: ContainerInfo
    output: list[tuple[Stream, float, bytes]] = field(default_factory=list)


class FakeRuntime:
    def __init__(self, images: dict[str, str | None] | None = None) -> None:
        self.images_held: dict[str, str | None] = dict(images or {})  # ref → the image's USER
        self.by_id: dict[str, FakeContainer] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, container id or image)
        self.up = True
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self.clock_now = 1_000_000.0

    # -- what a test does -------------------------------------------------------------------------------
    def exit(self, container_id: str, code: int = 0, oom: bool = False) -> None:
        with self._cond:
            c = self.by_id[container_id]
            c.info = replace(c.info, running=False, exit_code=code, oom_killed=oom, finished_at=self.clock_now)
            self._cond.notify_all()

    def say(self, container_id: str, line: str, stream: Stream = "stdout") -> None:
        with self._cond:
            self.by_id[container_id].output.append((stream, self.clock_now, line.encode() + b"\n"))
            self._cond.notify_all()

    def running(self) -> list[str]:
        with self._cond:
            return [cid for cid, c in self.by_id.items() if c.info.running]

    # -- the protocol -----------------------------------------------------------------------------------
    def ping(self) -> bool:
        return self.up

    def containers(self) -> list[ContainerInfo]:
        with self._cond:
            return [c.info for c in self.by_id.values()]

    def inspect(self, container_id: str) -> ContainerInfo:
        with self._cond:
            if container_id not in self.by_id:
                raise NotFound(f"no container {container_id}")
            return self.by_id[container_id].info

    def images(self) -> list[str]:
        return sorted(self.images_held)

    def pull(self, ref: str) -> ImageFacts:
        self.calls.append(("pull", ref))
        if ref not in self.images_held:
            raise ImageError(f"image {ref} cannot be pulled: not found", image=ref)
        return ImageFacts(f"sha256:{abs(hash(ref)):064x}"[:71], self.images_held[ref])

    def create(self, request: CreateRequest) -> str:
        with self._cond:
            cid = f"c{next(self._ids)}"
            labels = request.labels
            stop_after = labels.get(LABEL_STOP_AFTER)
            info = ContainerInfo(cid, labels[LABEL_TASK], int(labels[LABEL_TOKEN]), True,
                                 started_at=self.clock_now, request_millis=int(labels.get(LABEL_CPU_REQUEST) or 0),
                                 limited=bool(request.nano_cpus), cpu_shares=request.cpu_shares,
                                 stop_after=float(stop_after) if stop_after else None)
            self.by_id[cid] = FakeContainer(request, info)
            self.calls.append(("create", cid))
            return cid

    def stop(self, container_id: str, grace: float) -> None:
        self.calls.append(("stop", container_id))
        if container_id in self.by_id and self.by_id[container_id].info.running:
            self.exit(container_id, 137)

    def remove(self, container_id: str) -> None:
        with self._cond:
            self.calls.append(("remove", container_id))
            self.by_id.pop(container_id, None)
            self._cond.notify_all()

    def restart(self, container_id: str, grace: float) -> None:
        self.calls.append(("restart", container_id))
        self.stop(container_id, grace)
        with self._cond:
            c = self.by_id[container_id]
            c.info = replace(c.info, running=True, exit_code=None)

    def set_cpu_shares(self, container_id: str, shares: int) -> None:
        with self._cond:
            if container_id not in self.by_id:
                raise NotFound(f"no container {container_id}")
            c = self.by_id[container_id]
            c.info = replace(c.info, cpu_shares=shares)

    def wait(self, container_id: str) -> None:
        with self._cond:
            self._cond.wait_for(lambda: container_id not in self.by_id or not self.by_id[container_id].info.running)

    def logs(self, container_id: str, stream: Stream, follow: bool, since: float | None) -> Iterator[LogFrame]:
        sent = 0
        while True:
            with self._cond:
                c = self.by_id.get(container_id)
                if c is None:
                    return
                mine = [(at, data) for st, at, data in c.output if st == stream and (since is None or at >= since)]
                if sent == len(mine) and (not follow or not c.info.running):
                    return
                if sent == len(mine):
                    self._cond.wait(0.5)
                    continue
            for at, data in mine[sent:]:
                yield LogFrame(at, data)
            sent = len(mine)

    def exec(self, container_id: str, command: list[str], timeout: float) -> int | None:
        return 0

    def pid(self, container_id: str) -> int | None:
        return None

    def address(self, container_id: str) -> str | None:
        return None
