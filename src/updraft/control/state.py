"""The control plane's in-memory view of the cluster: every node, every live task, usage per node.

The store is the truth on disk; this is the same truth in memory, so that answering a heartbeat, listing a
node's assignments or building a scheduling snapshot costs no store read. Only the writer (``writer.py``)
changes it, right after each commit, with the values exactly as committed (their new revisions included), so
a compare-and-set built from what is read here fails only if the store really moved.

Two things live here and not in the store, on purpose (issue: "heartbeats that are cheap and cannot lie"):
a node's latest metrics and heartbeat time. A heartbeat replaces them in memory; the store sees them when the
node's state or facts change, and at a slow cadence (``flush_due``), not on every beat.

Live tasks are those not yet terminal. A pending task is kept as a :class:`Queued` record: its place in the queue
and its JSON, parsed again only when a scheduling pass takes it (a batch at a time); a task placed on a node is
kept as a compact :class:`Live` record — id, node, token, state, revision and
what it adds to its node's usage — since a full task costs about 10 kB of Python objects and nothing on a hot
path needs more (the commands that do read it from the store, in worker threads). Committed usage per node is
the sum of its records' contributions, recomputed when one of them changes (a few tasks, not the whole cluster),
so it is never re-listed per pass. The ``epoch`` moves on every change that could let a deferred task fit (a
node appears or changes, a task leaves a node); a task deferred at the current epoch need not be tried again
until it moves.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from updraft.model import Node, NodeMetrics, Task, TaskState
from updraft.scheduler import Usage
from updraft.store import Store, Txn


@dataclass(frozen=True, slots=True)
class Live:
    """A task placed on a node, as the hot paths need it (heartbeats, usage, drift, assignments)."""

    id: str
    node: str | None
    token: int | None
    state: TaskState
    revision: int
    pinned_to: str | None
    """its origin when it is not offloadable: the one node it may run on"""
    contribution: Usage

    @classmethod
    def of(cls, task: Task) -> Live:
        pinned = task.spec.origin if not task.spec.offloadable else None
        usage = Usage().plus(task.spec, started=task.state == TaskState.RUNNING)
        return cls(task.id, task.node, task.token, task.state, task.revision, pinned, usage)


_QUEUE_KEY = operator.attrgetter("key")
PARSED = 512
"""Pending tasks kept whole beside their JSON (about 8 kB each): the latest submits and the latest parsed."""


@dataclass(frozen=True, slots=True)
class Queued:
    """A pending task: its place in the queue, what decides whether a pass may take it, and its JSON."""

    key: tuple[int, int]
    """(-priority, submitted_seq): queue order"""
    id: str
    not_before: float
    awaiting_pin: bool
    data: bytes

    @classmethod
    def of(cls, task: Task) -> Queued:
        key = (-task.spec.priority, task.submitted_seq)
        return cls(key, task.id, task.not_before, task.awaiting_pin, task.model_dump_json().encode())

    def task(self) -> Task:
        return Task.model_validate_json(self.data)


_NONE = Usage()

_NODE_FACTS = ("labels", "tags", "taints", "capacity", "state", "cordoned", "draining", "cpuset")


class ClusterState:
    def __init__(self, load: Callable[[str], Task | None] | None = None) -> None:
        self.lock = threading.RLock()
        self._load = load or (lambda task_id: None)
        self.nodes: dict[str, Node] = {}
        self.tasks: dict[str, Live] = {}
        self.by_node: dict[str, dict[str, Live]] = {}
        self.usage: dict[str, Usage] = {}
        self.epoch = 0
        self.deferred_at: dict[str, tuple[int, float]] = {}
        """task id → (epoch, time it may be decided again unless the epoch moves) after a deferral."""
        self._streak: dict[str, int] = {}
        """task id → deferrals in a row (the recheck delay doubles with each)."""
        self.flushed: dict[str, float] = {}
        """node → last_heartbeat as last written to the store."""
        self.counters = {"token": 0, "seq": 0}
        self._pending: dict[str, Queued] = {}
        self._order: list[Queued] | None = None
        self._parsed: dict[str, tuple[bytes, Task]] = {}
        """task id → (its record's JSON, the task): the latest pending tasks whole, so a submit is not parsed
        back from its JSON by the pass that places it (at most ``PARSED`` of them: memory stays bounded)."""

    # -- loading and applying commits ----------------------------------------------------------------
    def load(self, store: Store) -> None:
        live = store.list_tasks([TaskState.PENDING, TaskState.SCHEDULED, TaskState.RUNNING], limit=10**9)
        with self.lock:
            for node in store.list_nodes():
                self.nodes[node.name] = node
                self.flushed[node.name] = node.last_heartbeat
            for task in live:
                self._put_task(task)
            self.counters = {name: store.counter(name) for name in self.counters}
            self.epoch += 1

    def apply(self, txn: Txn, revision: int) -> None:
        """Record a committed transaction (called by the writer only)."""
        with self.lock:
            for name, floor in txn.counters.items():
                self.counters[name] = max(self.counters[name], floor)
            for node, _ in txn.nodes:
                old = self.nodes.get(node.name)
                new = node.model_copy(update={"revision": revision})
                if old is not None and old.last_heartbeat > new.last_heartbeat:
                    # a heartbeat arrived while this write was in flight: keep the newer liveness facts
                    new = new.model_copy(update={"metrics": old.metrics, "last_heartbeat": old.last_heartbeat})
                self.nodes[node.name] = new
                self.flushed[node.name] = node.last_heartbeat
                if old is None or any(getattr(old, f) != getattr(new, f) for f in _NODE_FACTS):
                    self.epoch += 1
            for task, _ in txn.tasks:
                self._put_task(task.model_copy(update={"revision": revision}))

    def _put_task(self, task: Task) -> None:
        old = self.tasks.get(task.id)
        live = Live.of(task)
        if old is not None and old.node:
            on_node = self.by_node.get(old.node, {})
            if on_node.pop(task.id, None) is not None:
                self._count(old.node, old.contribution, -1)
            if old.node != task.node or task.state.terminal:
                self.epoch += 1  # resources freed on old.node
        if old is not None and old.state == TaskState.PENDING:
            self._pending.pop(task.id, None)
            self._parsed.pop(task.id, None)
            self._order = None
        if task.state.terminal:
            self.tasks.pop(task.id, None)
            self.deferred_at.pop(task.id, None)
            self._streak.pop(task.id, None)
            return
        self.tasks[task.id] = live
        if task.state == TaskState.PENDING:
            queued = self._pending[task.id] = Queued.of(task)
            self._remember(queued, task)
            self._order = None
        else:
            self.deferred_at.pop(task.id, None)
            self._streak.pop(task.id, None)
        if task.node:
            self.by_node.setdefault(task.node, {})[task.id] = live
            self._count(task.node, live.contribution, 1)

    def _count(self, node: str, contribution: Usage, sign: int) -> None:
        """Usage kept incrementally: a task's contribution added or taken back (O(1), not a sum over the node)."""
        self.usage[node] = self.usage.get(node, _NONE).shifted(contribution, sign)

    # -- liveness, in memory ---------------------------------------------------------------------------
    def heartbeat(self, name: str, metrics: NodeMetrics, at: float) -> Node | None:
        """A heartbeat's metrics and time, in memory only. Returns the node as it now is."""
        with self.lock:
            node = self.nodes.get(name)
            if node is None:
                return None
            node = node.model_copy(update={"metrics": metrics, "last_heartbeat": at})
            self.nodes[name] = node
            return node

    def flush_due(self, now: float, every: float) -> list[Node]:
        """Nodes whose liveness facts were last written more than ``every`` seconds ago."""
        with self.lock:
            return [n for n in self.nodes.values() if n.last_heartbeat - self.flushed.get(n.name, 0.0) >= every]

    # -- reads -----------------------------------------------------------------------------------------
    def node(self, name: str) -> Node | None:
        return self.nodes.get(name)

    def live(self, task_id: str) -> Live | None:
        """The compact record of a task that is not finished (memory only: safe on the event loop)."""
        return self.tasks.get(task_id)

    def pending_task(self, task_id: str) -> Task | None:
        """A pending task, whole (memory only: parsed from its record unless it was parsed lately)."""
        queued = self._pending.get(task_id)
        return self.parsed(queued) if queued is not None else None

    def parsed(self, queued: Queued) -> Task:
        """The task of a pending record, whole."""
        hit = self._parsed.get(queued.id)
        if hit is not None and hit[0] is queued.data:
            return hit[1]
        task = queued.task()
        with self.lock:
            if self._pending.get(queued.id) is queued:
                self._remember(queued, task)
        return task

    def _remember(self, queued: Queued, task: Task) -> None:
        self._parsed.pop(queued.id, None)
        self._parsed[queued.id] = (queued.data, task)
        if len(self._parsed) > PARSED:
            del self._parsed[next(iter(self._parsed))]

    def task(self, task_id: str) -> Task | None:
        """A task that is not finished, whole: pending ones from memory, placed ones read from the store (so not
        on the event loop)."""
        if task_id not in self.tasks:
            return None
        pending = self.pending_task(task_id)
        return pending if pending is not None else self._load(task_id)

    def on_node(self, name: str) -> list[Live]:
        with self.lock:
            return list(self.by_node.get(name, {}).values())

    def queue(self) -> list[Queued]:
        """Every pending task's record in queue order: higher priority first, FIFO within a priority."""
        with self.lock:
            if self._order is None:
                self._order = sorted(self._pending.values(), key=_QUEUE_KEY)
            return self._order

    def pending(self) -> list[Task]:
        """Every pending task, whole, in queue order (parses them all: for start-up and tests, not per pass)."""
        return [self.parsed(q) for q in self.queue()]

    def pending_count(self) -> int:
        return len(self._pending)

    def counts(self) -> dict[str, int]:
        with self.lock:
            out = {str(s): 0 for s in (TaskState.PENDING, TaskState.SCHEDULED, TaskState.RUNNING)}
            for t in self.tasks.values():
                out[str(t.state)] += 1
            return out

    def issue(self, name: str, n: int = 1) -> list[int]:
        """Reserve ``n`` values of a counter (tokens, submit sequence); the txn using them records the floor."""
        with self.lock:
            first = self.counters[name] + 1
            self.counters[name] += n
            return list(range(first, first + n))

    def mark_deferred(self, task_ids: Iterable[str], now: float, first: float, most: float) -> None:
        """Deferred again: decided next when the epoch moves, or after ``first`` seconds, doubling with each
        deferral in a row up to ``most`` (kube-scheduler's backoff): a backlog of tasks that fit nowhere costs
        a pass next to nothing, however long it is, and each of them is still decided again in turn."""
        with self.lock:
            for task_id in task_ids:
                streak = self._streak[task_id] = self._streak.get(task_id, 0) + 1
                self.deferred_at[task_id] = (self.epoch, now + min(first * 2 ** (streak - 1), most))

    # -- the read view metrics use (same names as the store's) --------------------------------------------
    def list_nodes(self) -> list[Node]:
        with self.lock:
            return sorted(self.nodes.values(), key=lambda n: n.name)

    def list_tasks(
        self, states: Iterable[TaskState] | None = None, node: str | None = None, limit: int = 1000
    ) -> list[Live]:
        """Live tasks only, as compact records (finished ones are in the store)."""
        wanted = set(states) if states is not None else None
        with self.lock:
            found = [
                t for t in self.tasks.values()
                if (wanted is None or t.state in wanted) and (node is None or t.node == node)
            ]
        return found[:limit]
