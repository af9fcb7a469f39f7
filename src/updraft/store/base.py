"""The store protocol (DESIGN.md, decision 2): snapshot reads and compare-and-set writes on revisions.

A :class:`Txn` maps onto one SQLite transaction here, and onto one etcd ``Txn`` whose compares are the
``mod_revision`` of each written key: every write names the revision it read, and the whole transaction
fails with :class:`~updraft.errors.Conflict` if any of them moved.

Counters (fencing tokens, submit sequence numbers) are issued by the one writer of the control plane from
memory and written with the transaction that uses them (``Txn.counters`` holds floors: the stored counter
becomes at least that value), so issuing a token costs no extra round trip and survives a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from updraft.errors import UpdraftError
from updraft.model import Event, Node, Task, TaskState

COUNTERS = ("token", "seq")


@dataclass
class Txn:
    tasks: list[tuple[Task, int]] = field(default_factory=list)
    """(new value, revision it was read at; 0 = must not exist yet)"""
    nodes: list[tuple[Node, int]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    idempotency: tuple[str, str, str] | None = None
    """(key, task id, body fingerprint) recorded with a submit so a repeated submit returns the same task."""
    counters: dict[str, int] = field(default_factory=dict)
    """counter name → value the stored counter must reach (see the module docstring)."""

    def put_task(self, task: Task) -> Txn:
        self.tasks.append((task, task.revision))
        return self

    def put_node(self, node: Node) -> Txn:
        self.nodes.append((node, node.revision))
        return self

    def event(self, event: Event) -> Txn:
        self.events.append(event)
        return self

    def empty(self) -> bool:
        return not (self.tasks or self.nodes or self.events or self.idempotency)


@dataclass(frozen=True)
class LogEntry:
    seq: int
    task_id: str
    token: int
    stream: str
    at: float
    data: str


@dataclass(frozen=True)
class KeyUse:
    """A recorded idempotency key: the task it created and the fingerprint of the body that created it."""

    task_id: str
    fingerprint: str


class Store(Protocol):
    def revision(self) -> int: ...
    def commit(self, txn: Txn) -> int:
        """Apply atomically; return the new revision. Raises Conflict if a compare fails."""

    def commit_many(self, txns: Sequence[Txn]) -> list[int | UpdraftError]:
        """Group commit: each txn applied atomically and independently (a failed compare fails that txn
        only); the batch costs one durable write. Returns each txn's revision or its error."""

    def counter(self, name: str) -> int:
        """The stored value of a counter (``token``, ``seq``)."""

    def next_tokens(self, n: int) -> list[int]:
        """``n`` fencing tokens, strictly greater than any issued before (survives restarts)."""

    def get_node(self, name: str) -> Node | None: ...
    def list_nodes(self) -> list[Node]: ...
    def get_task(self, task_id: str) -> Task | None: ...
    def list_tasks(
        self, states: Iterable[TaskState] | None = None, node: str | None = None, limit: int = 1000
    ) -> list[Task]: ...
    def key_use(self, key: str) -> KeyUse | None: ...
    def list_events(self, task_id: str | None = None, after: int = 0, limit: int = 1000) -> list[Event]: ...
    def append_logs(self, task_id: str, token: int, entries: list[tuple[str, float, str]]) -> int: ...
    def list_logs(self, task_id: str, after: int = 0, limit: int = 10000) -> list[LogEntry]: ...
    def broken(self) -> list[str]:
        """Ids of stored records that could not be read back (isolated, never served; see the log)."""

    def close(self) -> None: ...
