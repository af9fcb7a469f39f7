"""The store protocol (DESIGN.md, decision 2): snapshot reads and compare-and-set writes on revisions.

A :class:`Txn` maps onto one SQLite transaction here, and onto one etcd ``Txn`` whose compares are the
``mod_revision`` of each written key: every write names the revision it read, and the whole transaction
fails with :class:`~updraft.errors.Conflict` if any of them moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from updraft.model import Event, Node, Task, TaskState


@dataclass
class Txn:
    tasks: list[tuple[Task, int]] = field(default_factory=list)
    """(new value, revision it was read at; 0 = must not exist yet)"""
    nodes: list[tuple[Node, int]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    idempotency: tuple[str, str] | None = None
    """(key, task id) recorded with a submit so a repeated submit returns the same task."""

    def put_task(self, task: Task) -> Txn:
        self.tasks.append((task, task.revision))
        return self

    def put_node(self, node: Node) -> Txn:
        self.nodes.append((node, node.revision))
        return self

    def event(self, event: Event) -> Txn:
        self.events.append(event)
        return self


@dataclass(frozen=True)
class LogEntry:
    seq: int
    task_id: str
    token: int
    stream: str
    at: float
    data: str


class Store(Protocol):
    def revision(self) -> int: ...
    def commit(self, txn: Txn) -> int:
        """Apply atomically; return the new revision. Raises Conflict if a compare fails."""

    def next_tokens(self, n: int) -> list[int]:
        """``n`` fencing tokens, strictly greater than any issued before (survives restarts)."""

    def next_seq(self) -> int: ...
    def get_node(self, name: str) -> Node | None: ...
    def list_nodes(self) -> list[Node]: ...
    def get_task(self, task_id: str) -> Task | None: ...
    def list_tasks(
        self, states: Iterable[TaskState] | None = None, node: str | None = None, limit: int = 1000
    ) -> list[Task]: ...
    def task_for_key(self, key: str) -> str | None: ...
    def list_events(self, task_id: str | None = None, after: int = 0, limit: int = 1000) -> list[Event]: ...
    def append_logs(self, task_id: str, token: int, entries: list[tuple[str, float, str]]) -> int: ...
    def list_logs(self, task_id: str, after: int = 0, limit: int = 10000) -> list[LogEntry]: ...
    def close(self) -> None: ...
