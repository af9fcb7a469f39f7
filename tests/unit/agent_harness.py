"""A harness for the agent's state machine: a fake clock, events in, instructions out, and the usual answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from builders import spec as build_spec

from updraft.agent import events as ev
from updraft.agent.events import Instruction
from updraft.agent.runtime import ContainerInfo, Key
from updraft.agent.state import AgentState, Config
from updraft.clock import FakeClock
from updraft.model.api import Assignment

T = TypeVar("T")


def assignment(task_id: str, token: int = 1, **fields: Any) -> Assignment:
    return Assignment(task_id=task_id, token=token, spec=build_spec(**fields))


def container(task_id: str, token: int = 1, running: bool = True, **fields: Any) -> ContainerInfo:
    return ContainerInfo(fields.pop("container_id", f"c-{task_id}-{token}"), task_id, token, running, **fields)


@dataclass
class Harness:
    config: Config = field(default_factory=lambda: Config(node="n1"))
    clock: FakeClock = field(default_factory=lambda: FakeClock(1_000_000.0))
    out: list[Instruction] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.m = AgentState(self.config, self.clock)

    def send(self, *events: ev.Event) -> list[Instruction]:
        got = self.m.handle_all(events)
        self.out.extend(got)
        return got

    def tick(self, seconds: float = 0.0) -> list[Instruction]:
        self.clock.advance(seconds)
        return self.send(ev.Tick())

    def boot(self, containers: tuple[ContainerInfo, ...] = (), **booted: Any) -> list[Instruction]:
        """Start, list the engine's containers, register: the machine then heartbeats and polls."""
        return [*self.send(ev.Booted(**booted)), *self.send(ev.ContainersListed(containers)),
                *self.send(ev.RegisterAnswered(ok=True))]

    def assign(self, *assignments: Assignment, index: int = 1) -> list[Instruction]:
        return self.send(ev.AssignmentsReceived(index, assignments))

    def run(self, a: Assignment, cid: str | None = None, user: str | None = None) -> list[Instruction]:
        """Assign, pull and start ``a``: returns what the start produced."""
        key = (a.task_id, a.token)
        self.assign(a)
        self.send(ev.ImagePulled(key, "sha256:img", user))
        return self.started(key, cid or f"c-{a.task_id}-{a.token}")

    def started(self, key: Key, cid: str, **info: Any) -> list[Instruction]:
        return self.send(ev.ContainerStarted(key, container(key[0], key[1], container_id=cid, started_at=self.clock.now(), **info)))

    def exited(self, key: Key, cid: str, code: int = 0, generation: int = 0) -> list[Instruction]:
        info = container(key[0], key[1], running=False, container_id=cid, exit_code=code)
        return self.send(ev.ContainerExited(key, generation, info))

    def deliver_all(self) -> list[ev.Entry]:
        """Answer every delivery ok until the outbox is empty; the entries in the order they were sent."""
        sent: list[ev.Entry] = []
        while True:
            pending = [i for i in self.out if isinstance(i, ev.Deliver)]
            self.out.clear()
            if not pending:
                pending = [i for i in self.tick() if isinstance(i, ev.Deliver)]
                self.out.clear()
                if not pending:
                    return sent
            for d in pending:
                sent.extend(d.entries)
                self.send(ev.Delivered(tuple(x.seq for x in d.entries), ev.Outcome.OK))


def of(instructions: list[Instruction], kind: type[T]) -> list[T]:
    return [i for i in instructions if isinstance(i, kind)]


def statuses(instructions: list[Instruction], key: Key | None = None) -> list[dict[str, Any]]:
    return [p.entry.body for p in of(instructions, ev.Persist)
            if p.entry.kind is ev.EntryKind.STATUS and (key is None or p.entry.key == key)]
