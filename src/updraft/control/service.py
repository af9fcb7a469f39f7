"""The service layer: every command the API exposes, as plain methods over the in-memory state and the writer.

Routes are thin and call these; the scheduler loop and the failure detector call them too. A command reads
what it needs from :class:`ClusterState` (or the store, for finished tasks), builds one transaction, and
hands it to the :class:`Writer`, the one commit path: the writer records it in the state, tells the
listeners and wakes the long-polls. The commands are split by concern: tasks and scheduling here, nodes in
``nodes.py``, agent reports in ``reports.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import uuid
from collections.abc import Iterator

from updraft.control.applier import apply_plan
from updraft.control.nodes import NodeCommands
from updraft.control.pinning import at_submit
from updraft.control.reports import ReportCommands
from updraft.control.state import Queued
from updraft.control.writer import EventListener
from updraft.errors import Busy, Conflict, ValidationError
from updraft.model import EventKind, Task, TaskSpec, TaskState
from updraft.scheduler import Plan, Snapshot, schedule
from updraft.store import Txn

log = logging.getLogger("updraft.service")

__all__ = ["ControlService", "EventListener"]


MAX_RECHECK = 60.0
"""Seconds at most between two decisions of a task deferred again and again while the cluster does not change."""


def fingerprint(spec: TaskSpec) -> str:
    """What an idempotency key is bound to: the submitted spec, canonically serialised."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


class ControlService(NodeCommands, ReportCommands):
    """Every command of the control plane (the core's commit path and lookups are in ``core.py``)."""

    # -- tasks ----------------------------------------------------------------------------------------
    def admit(self) -> None:
        """Refuse a submit up front when the backlog of tasks waiting for a node is full."""
        limit = self.settings.max_pending_tasks
        if self.state.pending_count() >= limit:
            raise Busy(
                f"{limit} tasks are already waiting to be placed; retry later", retry_after=5, limit=limit
            )

    def submit(self, spec: TaskSpec, key: str | None = None, traceparent: str | None = None) -> tuple[Task, bool]:
        """Create a task; with an idempotency key already seen for the same spec, return the original instead."""
        fp = fingerprint(spec)
        if key is not None and (use := self.store.key_use(key)) is not None:
            return self._replay(key, use.task_id, use.fingerprint, fp), False
        task, txn = self.prepare(spec, key, fp, traceparent)
        try:
            self._commit(txn)
        except Conflict as exc:
            if key is not None and exc.details.get("key") == key:  # a concurrent submit with the same key won
                return self._replay(key, str(exc.details["task_id"]), str(exc.details["fingerprint"]), fp), False
            raise
        self.notifier.notify("scheduler")
        return task, True

    async def submit_async(
        self, spec: TaskSpec, key: str | None = None, traceparent: str | None = None
    ) -> tuple[Task, bool]:
        """:meth:`submit` for the event loop: the commit is awaited, not waited for in a worker thread.

        A used key is found by the commit itself (the store refuses a second use and says which task holds
        it), not by a read before it; a registry round trip for the image pin and the read of a replayed task
        run in worker threads, so nothing here blocks the loop.
        """
        fp = fingerprint(spec)
        try:
            if self.pinner.offline(spec.image):
                task, txn = self.prepare(spec, key, fp, traceparent)
            else:
                task, txn = await asyncio.to_thread(self.prepare, spec, key, fp, traceparent)
        except Busy:  # a retry of a submit that was stored gets its task even when the backlog is full
            if key is not None and (use := await asyncio.to_thread(self.store.key_use, key)) is not None:
                return await asyncio.to_thread(self._replay, key, use.task_id, use.fingerprint, fp), False
            raise
        try:
            await asyncio.wrap_future(self.writer.submit(txn))
        except Conflict as exc:
            if key is not None and exc.details.get("key") == key:
                held, stored = str(exc.details["task_id"]), str(exc.details["fingerprint"])
                if stored != fp or (found := self.live_task(held)) is None:
                    return await asyncio.to_thread(self._replay, key, held, stored, fp), False
                return found, False
            raise
        self.notifier.notify("scheduler")
        return task, True

    def prepare(self, spec: TaskSpec, key: str | None, fp: str, traceparent: str | None) -> tuple[Task, Txn]:
        """Admission, the origin and image checks, and the task with the transaction that creates it."""
        self.admit()
        if spec.origin is not None and self.state.node(spec.origin) is None:
            raise ValidationError(f"origin: unknown node {spec.origin!r}", field="origin")
        submitted = spec.image
        spec, pin_fields, pin_event = at_submit(self.pinner, spec)  # image_policy; may raise ImageError (422)
        now = self.clock.now()
        (seq,) = self.state.issue("seq")
        task = Task(
            id="t-" + uuid.uuid4().hex[:12],
            spec=spec,
            created_at=now,
            updated_at=now,
            submitted_seq=seq,
            traceparent=traceparent,
            **pin_fields,
        )
        where = f"from {spec.origin}" if spec.origin else "with no origin"
        txn = Txn(tasks=[(task, 0)], idempotency=(key, task.id, fp) if key else None, counters={"seq": seq})
        txn.event(self._event(EventKind.SUBMITTED, f"submitted {where}: {submitted}", task))
        if pin_event is not None:
            kind, message = pin_event
            txn.event(self._event(EventKind(kind), message, task))
        return task, txn

    def _replay(self, key: str, task_id: str, stored: str, given: str) -> Task:
        if stored != given:
            raise Conflict(
                f"Idempotency-Key {key!r} was used for a different request (task {task_id})",
                field="idempotency_key",
                task_id=task_id,
            )
        return self.task(task_id)

    def cancel(self, task_id: str) -> Task:
        task = self.task(task_id)
        if task.state.terminal:
            return task
        new = task.model_copy(
            update={"state": TaskState.CANCELLED, "updated_at": self.clock.now(), "reason": "cancelled by user"}
        )
        self._commit(Txn().put_task(new).event(self._event(EventKind.CANCELLED, "cancelled by user", new)))
        self.notifier.notify("scheduler")
        return new

    # -- scheduling ---------------------------------------------------------------------------------
    def _candidates(self, now: float) -> Iterator[Queued]:
        """Pending tasks in queue order that a pass may take now.

        A task deferred at the current epoch is skipped (nothing changed that could make it fit) until its
        recheck time (``ClusterState.mark_deferred``: ten scheduler intervals, doubling while it keeps being
        deferred, at most ``MAX_RECHECK`` seconds), so every pending task is decided again in turn, however many
        there are, and the oldest first.
        """
        epoch, deferred = self.state.epoch, self.state.deferred_at
        for queued in self.state.queue():
            if queued.not_before > now or queued.awaiting_pin:
                continue
            mark = deferred.get(queued.id)
            if mark is not None and mark[0] == epoch and now < mark[1]:
                continue
            yield queued

    def eligible(self, now: float) -> list[Task]:
        """The next batch (``scheduler_batch``) of pending tasks a pass decides, parsed."""
        return [self.state.parsed(q) for q in itertools.islice(self._candidates(now), self.settings.scheduler_batch)]

    def snapshot(self, pending: list[Task] | None = None) -> Snapshot:
        """What a pass decides on. The scheduler's node index is brought in line with the state here (only the
        nodes and usages that changed since the last pass are rewritten), so a pass over 15,000 nodes does not
        rebuild it."""
        now = self.clock.now()
        with self.state.lock:
            self.index.refresh(self.state.nodes, self.state.usage)
        return Snapshot(
            nodes={},
            pending=self.eligible(now) if pending is None else pending,
            usage={},
            forecasts=dict(self.forecaster.forecasts),
            transients=dict(self.forecaster.transients),
            index=self.index,
        )

    def schedule_once(self) -> Plan:
        """One pass: decide a batch, re-check it against the current state, commit what holds. One pass at a
        time (the node index belongs to the pass)."""
        with self._pass:
            return self._schedule_once()

    def _schedule_once(self) -> Plan:
        snap = self.snapshot()
        if not snap.pending:
            return Plan()
        now = self.clock.now()
        plan = schedule(snap, self.policy, now)
        txn, tokens = apply_plan(self.state, plan, now, {t.id: t for t in snap.pending})
        for task in tokens:  # before the commit wakes the nodes' long-polls, so they answer from memory
            if self.notifier.waiting(f"node:{task.node}"):  # a node that does not poll never reads it
                self.remember_assignment(task)
        if not txn.empty():
            try:
                self._commit(txn)
            except Conflict as exc:
                log.info("plan conflicted (%s); the next pass will retry", exc.message)
                return plan
        self.state.mark_deferred(
            (d.task_id for d in plan.deferrals), now, 10 * self.settings.scheduler_interval, MAX_RECHECK
        )
        if tokens:
            self.notifier.notify("events")
        return plan

    def more_to_schedule(self) -> bool:
        return next(self._candidates(self.clock.now()), None) is not None
