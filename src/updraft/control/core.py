"""The core every service command builds on: the in-memory state, the writer (the one commit path), lookups."""

from __future__ import annotations

import random
import threading

from updraft.clock import Clock
from updraft.control.detector import PhiAccrualDetector
from updraft.control.forecast import Forecaster
from updraft.control.notify import Notifier
from updraft.control.pinning import make_pinner
from updraft.control.state import ClusterState
from updraft.control.writer import EventListener, Writer
from updraft.errors import Conflict, NotFound
from updraft.model import ACTIVE, DriftCause, Event, EventKind, Node, Task, TaskState
from updraft.scheduler import NodeIndex
from updraft.settings import ServerSettings
from updraft.store import Store, Txn


def pinned_to(task: Task) -> str | None:
    """The one node a task may run on, if there is one: its origin when it is not offloadable."""
    return task.spec.origin if not task.spec.offloadable else None


class ServiceCore:
    def __init__(
        self,
        store: Store,
        settings: ServerSettings,
        clock: Clock,
        notifier: Notifier | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.policy = settings.policy
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.rng = rng or random.Random()
        self.forecaster = Forecaster(self.policy)
        self.listeners: list[EventListener] = []
        self.detector = PhiAccrualDetector(settings.detector, clock, settings.heartbeat_interval)
        self.pinner = make_pinner(settings, clock)
        self.state = ClusterState(load=store.get_task)
        self.state.load(store)
        self.writer = Writer(store, self.state, self.notifier, self.listeners)
        self._facts_in_flight: set[str] = set()
        self._assignment_json: dict[tuple[str, int], bytes] = {}
        self.index = NodeIndex()
        self._pass = threading.Lock()

    def close(self) -> None:
        self.writer.close()

    # -- the commit path ---------------------------------------------------------------------------------
    def _event(
        self,
        kind: EventKind,
        message: str,
        task: Task | None = None,
        node: str | None = None,
        code: str | None = None,
    ) -> Event:
        return Event(
            at=self.clock.now(),
            kind=kind,
            message=message,
            task_id=task.id if task else None,
            node=node if node is not None else (task.node if task else None),
            token=task.token if task else None,
            code=code,
        )

    def _commit(self, txn: Txn) -> int:
        """Commit through the writer and wait (never call this on the event loop)."""
        return self.writer.commit(txn)

    # -- lookups ------------------------------------------------------------------------------------------
    def task(self, task_id: str) -> Task:
        task = self.state.pending_task(task_id) or self.store.get_task(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}", field="task_id", task_id=task_id)
        return task

    def live_task(self, task_id: str) -> Task | None:
        """The task from memory if it is pending (no store read: safe on the event loop)."""
        return self.state.pending_task(task_id)

    def node(self, name: str) -> Node:
        node = self.state.node(name)
        if node is None:
            raise NotFound(f"no node {name!r}", field="node", node=name)
        return node

    def requeue(self, task: Task, cause: DriftCause, why: str) -> Task:
        """Take a task off its node; its token is retired at once so the old copy is fenced.

        The node is not excluded: while it is unreachable or draining the filters keep the task off it anyway,
        and once it is healthy again it is as good a target as any. A task pinned to its node (offloadable:
        false) is never requeued: no other node may run it (see ``pinned_to``).
        """
        if task.state not in ACTIVE or pinned_to(task) == task.node:
            return task
        attempt = task.current
        attempts = task.attempts
        reason = f"drifted from {task.node}: {why}"
        if attempt is not None and attempt.finished_at is None:
            attempts = task.with_attempt(
                attempt.model_copy(
                    update={"state": TaskState.CANCELLED, "error": reason, "finished_at": self.clock.now()}
                )
            )
        new = task.model_copy(
            update={
                "state": TaskState.PENDING,
                "token": None,
                "node": None,
                "attempts": attempts,
                "drifted_from": task.node,
                "drift_cause": cause,
                "drift_why": why,
                "reason": reason,
                "updated_at": self.clock.now(),
            }
        )
        try:
            self._commit(Txn().put_task(new).event(self._event(EventKind.DRIFTED, reason, task, code=str(cause))))
        except Conflict:
            return self.task(task.id)
        self.notifier.notify("scheduler")
        return new
