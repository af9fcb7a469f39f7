"""The service layer: every command the API exposes, as plain methods over the store.

Routes are thin and call these; the scheduler loop and the failure detector call them too. Each command
validates, builds a transaction, commits it, records its events, and wakes whoever waits on what changed.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable

from updraft.clock import Clock
from updraft.control.applier import apply_plan, committed_usage
from updraft.control.detector import PhiAccrualDetector
from updraft.control.forecast import Forecaster
from updraft.control.notify import Notifier
from updraft.control.pinning import at_submit, make_pinner
from updraft.errors import Conflict, NotFound, StaleToken, ValidationError
from updraft.model import (
    ACTIVE,
    Capacity,
    Event,
    Node,
    NodeMetrics,
    NodeState,
    Task,
    TaskSpec,
    TaskState,
    check_transition,
    parse_cpu,
    parse_memory,
)
from updraft.model.api import (
    Assignment,
    AttemptReport,
    Heartbeat,
    HeartbeatReply,
    LabelChange,
    LogBatch,
    NodeRegistration,
    ProbeReport,
    TaintChange,
)
from updraft.scheduler import Plan, Snapshot, schedule
from updraft.settings import ServerSettings
from updraft.store import Store, Txn

log = logging.getLogger("updraft.service")

EventListener = Callable[[Event], None]
"""Called with every committed event (metrics and logs hang off this)."""


class ControlService:
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

    # -- helpers ------------------------------------------------------------------------------------
    def _event(self, kind: str, message: str, task: Task | None = None, node: str | None = None) -> Event:
        return Event(
            at=self.clock.now(),
            kind=kind,
            message=message,
            task_id=task.id if task else None,
            node=node if node is not None else (task.node if task else None),
            token=task.token if task else None,
        )

    def _commit(self, txn: Txn) -> None:
        self.store.commit(txn)
        for listener in self.listeners:
            for event in txn.events:
                listener(event)
        topics = {f"task:{t.id}" for t, _ in txn.tasks} | {f"node:{t.node}" for t, _ in txn.tasks if t.node}
        # A log follower waits on the logs topic; the end of the task is its news too (a task that prints
        # nothing would otherwise keep ``updraft run`` waiting out the whole long-poll).
        topics |= {f"logs:{t.id}" for t, _ in txn.tasks if t.state.terminal}
        self.notifier.notify(*topics, "events")

    def task(self, task_id: str) -> Task:
        task = self.store.get_task(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}", field="task_id", task_id=task_id)
        return task

    def node(self, name: str) -> Node:
        node = self.store.get_node(name)
        if node is None:
            raise NotFound(f"no node {name!r}", field="node", node=name)
        return node

    # -- tasks --------------------------------------------------------------------------------------
    def submit(self, spec: TaskSpec, key: str | None = None, traceparent: str | None = None) -> tuple[Task, bool]:
        """Create a task; with an idempotency key already seen, return the original instead."""
        if key is not None:
            existing = self.store.task_for_key(key)
            if existing is not None:
                return self.task(existing), False
        if spec.origin is not None and self.store.get_node(spec.origin) is None:
            raise ValidationError(f"origin: unknown node {spec.origin!r}", field="origin")
        submitted = spec.image
        spec, pin_fields, pin_event = at_submit(self.pinner, spec)  # image_policy; may raise ImageError (422)
        now = self.clock.now()
        task = Task(
            id="t-" + uuid.uuid4().hex[:12],
            spec=spec,
            created_at=now,
            updated_at=now,
            submitted_seq=self.store.next_seq(),
            traceparent=traceparent,
            **pin_fields,
        )
        where = f"from {spec.origin}" if spec.origin else "with no origin"
        txn = Txn(tasks=[(task, 0)], idempotency=(key, task.id) if key else None)
        txn.event(self._event("submitted", f"submitted {where}: {submitted}", task))
        if pin_event is not None:
            txn.event(self._event(*pin_event, task))
        try:
            self._commit(txn)
        except Exception:
            if key is not None and (existing := self.store.task_for_key(key)) is not None:
                return self.task(existing), False
            raise
        self.notifier.notify("scheduler")
        return task, True

    def cancel(self, task_id: str) -> Task:
        task = self.task(task_id)
        if task.state.terminal:
            return task
        new = task.model_copy(
            update={"state": TaskState.CANCELLED, "updated_at": self.clock.now(), "reason": "cancelled by user"}
        )
        self._commit(Txn().put_task(new).event(self._event("cancelled", "cancelled by user", new)))
        self.notifier.notify("scheduler")
        return new

    # -- nodes --------------------------------------------------------------------------------------
    def register(self, name: str, reg: NodeRegistration) -> Node:
        now = self.clock.now()
        old = self.store.get_node(name)
        capacity = Capacity(
            cpu_millis=parse_cpu(reg.capacity.cpu, "capacity.cpu"),
            memory_bytes=parse_memory(reg.capacity.memory, "capacity.memory"),
        )
        fields = dict(
            labels=reg.labels,
            tags=reg.tags,
            taints=reg.taints,
            capacity=capacity,
            cpuset=reg.cpuset,
            address=reg.address,
            images=reg.images,
            state=NodeState.READY,
            last_heartbeat=now,
        )
        if old is None:
            node = Node(name=name, registered_at=now, state_since=now, **fields)  # type: ignore[arg-type]
            message = f"node {name} registered: cpu {reg.capacity.cpu}, memory {reg.capacity.memory}, tags {reg.tags}"
        else:
            if old.state != NodeState.READY:
                fields["state_since"] = now
            node = old.model_copy(update=fields)
            message = f"node {name} re-registered"
        self._commit(
            Txn(nodes=[(node, old.revision if old else 0)]).event(self._event("node-registered", message, node=name))
        )
        # A (re)registered agent starts a fresh heartbeat history: the silence before it is not its rhythm.
        self.detector.restart(name)
        self.notifier.notify("scheduler")
        return node

    def heartbeat(self, name: str, hb: Heartbeat) -> HeartbeatReply:
        node = self.store.get_node(name)
        if node is None:
            return HeartbeatReply(known=False, interval=self.settings.heartbeat_interval)
        if node.state == NodeState.UNREACHABLE:
            self.detector.forget(name)  # back from a partition: the gap is not part of its heartbeat rhythm
        self.detector.heartbeat(name, sent_at=hb.sent_at)
        now = self.clock.now()
        if self.policy.predictive and self.forecaster.observe(name, now, hb.cpu_pct, hb.memory_pct):
            self.notifier.notify("scheduler")
        update: dict[str, object] = {
            "metrics": NodeMetrics(cpu_pct=hb.cpu_pct, memory_pct=hb.memory_pct, at=now),
            "last_heartbeat": now,
        }
        if hb.images is not None:
            update["images"] = hb.images
        if hb.bandwidth is not None:
            update["bandwidth"] = hb.bandwidth
        txn = Txn()
        if node.state != NodeState.READY:
            update |= {"state": NodeState.READY, "state_since": now}
            txn.event(self._event("node-ready", f"node {name} is ready again after being {node.state}", node=name))
        txn.put_node(node.model_copy(update=update))
        self.store.commit(txn)
        stale = []
        for task_id, token in hb.running:
            task = self.store.get_task(task_id)
            if task is None or task.token != token or task.node != name:
                stale.append((task_id, token))
        if node.state != NodeState.READY or abs(hb.cpu_pct - node.metrics.cpu_pct) >= 5:
            self.notifier.notify("scheduler")
        return HeartbeatReply(stale=stale, interval=self.settings.heartbeat_interval)

    def assignments(self, name: str) -> list[Assignment]:
        self.node(name)
        return [
            Assignment(task_id=t.id, token=t.token, spec=t.spec, traceparent=t.traceparent)
            for t in self.store.list_tasks(ACTIVE, node=name)
            if t.token is not None
        ]

    def _update_node(self, name: str, kind: str, message: str, **update: object) -> Node:
        node = self.node(name)
        new = node.model_copy(update=update)
        self._commit(Txn().put_node(new).event(self._event(kind, message, node=name)))
        self.notifier.notify("scheduler")
        return new

    def cordon(self, name: str, on: bool = True) -> Node:
        verb = "cordoned" if on else "uncordoned"
        extra = {} if on else {"draining": False}
        return self._update_node(name, f"node-{verb}", f"node {name} {verb}", cordoned=on, **extra)

    def drain(self, name: str) -> Node:
        """Cordon the node and move its tasks off it, the same way a failed node's tasks drift."""
        node = self._update_node(name, "node-draining", f"node {name} draining", cordoned=True, draining=True)
        for task in self.store.list_tasks(ACTIVE, node=name):
            self.requeue(task, f"drifted from {name}: node drained", kind="drifted")
        return node

    def set_labels(self, name: str, change: LabelChange) -> Node:
        node = self.node(name)
        labels = {k: v for k, v in node.labels.items() if k not in change.remove} | change.set
        return self._update_node(name, "node-labelled", f"node {name} labels now {labels}", labels=labels)

    def set_taints(self, name: str, change: TaintChange) -> Node:
        node = self.node(name)
        keep = [t for t in node.taints if t.key not in change.remove and all(a.key != t.key for a in change.add)]
        taints = keep + list(change.add)
        return self._update_node(
            name, "node-tainted", f"node {name} taints now {[str(t) for t in taints]}", taints=taints
        )

    def set_node_state(self, name: str, state: NodeState, reason: str) -> Node:
        """Called by the failure detector. It only reports; moving tasks is the scheduler's job."""
        node = self.node(name)
        if node.state == state:
            return node
        new = node.model_copy(update={"state": state, "state_since": self.clock.now()})
        self._commit(Txn().put_node(new).event(self._event(f"node-{state}", reason, node=name)))
        self.notifier.notify("scheduler")
        return new

    # -- agent reports ------------------------------------------------------------------------------
    def _current(self, task_id: str, token: int, what: str) -> Task:
        task = self.task(task_id)
        if task.token != token:
            msg = f"stale {what} from token {token} ignored (current token {task.token})"
            self._commit(
                Txn().event(Event(at=self.clock.now(), kind="stale-report", message=msg, task_id=task_id, token=token))
            )
            raise StaleToken(msg, task_id=task_id, token=token, current=task.token)
        return task

    def report(self, task_id: str, token: int, report: AttemptReport) -> Task:
        task = self._current(task_id, token, f"report ({report.state})")
        attempt = task.current
        assert attempt is not None
        now = self.clock.now()
        if report.state == "running":
            if attempt.started_at is not None:
                return task
            attempt = attempt.model_copy(
                update={
                    "state": TaskState.RUNNING,
                    "started_at": report.started_at or now,
                    "container_id": report.container_id,
                    "image_digest": report.image_digest,
                }
            )
            state = TaskState.RUNNING if task.state == TaskState.SCHEDULED else task.state
            new = task.model_copy(update={"state": state, "attempts": task.with_attempt(attempt), "updated_at": now})
            self._commit(
                Txn()
                .put_task(new)
                .event(self._event("started", f"container {str(report.container_id)[:12]} started on {task.node}", new))
            )
            return new
        if attempt.finished_at is not None:
            return task  # a duplicate delivery of a result already recorded
        ok = report.state == "exited" and report.exit_code == 0 and not report.oom_killed
        if report.oom_killed:
            why = f"OOMKilled (exit {report.exit_code})"
        elif report.state == "error":
            why = report.error or "the container could not run"
        else:
            why = f"exit code {report.exit_code}" + (f": {report.error}" if report.error else "")
        attempt = attempt.model_copy(
            update={
                "state": TaskState.SUCCEEDED if ok else TaskState.FAILED,
                "started_at": attempt.started_at or report.started_at,
                "finished_at": report.finished_at or now,
                "exit_code": report.exit_code,
                "oom_killed": report.oom_killed,
                "error": None if ok else why,
                "log_tail": report.log_tail,
                "container_id": report.container_id or attempt.container_id,
                "image_digest": report.image_digest or attempt.image_digest,
            }
        )
        update: dict[str, object] = {"attempts": task.with_attempt(attempt), "updated_at": now}
        txn = Txn()
        if task.state.terminal:
            pass  # e.g. cancelled: keep the attempt's outcome, not the state
        elif ok:
            update |= {"state": TaskState.SUCCEEDED, "reason": f"succeeded on {task.node}"}
            txn.event(self._event("succeeded", f"succeeded on {task.node} (exit 0)", task))
        elif task.retries_used < task.spec.max_retries:
            delay = self.retry_delay(task.retries_used)
            update |= {
                "state": TaskState.PENDING,
                "token": None,
                "node": None,
                "retries_used": task.retries_used + 1,
                "not_before": now + delay,
                "reason": f"retrying after {why}",
            }
            txn.event(
                self._event(
                    "retry",
                    f"failed on {task.node} ({why}); retry {task.retries_used + 1}"
                    f"/{task.spec.max_retries} in {delay:.1f} s",
                    task,
                )
            )
        else:
            update |= {"state": TaskState.FAILED, "reason": why}
            txn.event(self._event("failed", f"failed on {task.node}: {why}", task))
        new = task.model_copy(update=update)
        if not task.state.terminal:
            check_transition(task.state, new.state)
        self._commit(txn.put_task(new))
        self.notifier.notify("scheduler", f"node:{task.node}")
        return new

    def retry_delay(self, retries_used: int) -> float:
        """Exponential backoff with full jitter."""
        cap = min(self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2**retries_used)
        return self.rng.uniform(0, cap)

    def probe_report(self, task_id: str, token: int, report: ProbeReport) -> Task:
        """What the agent's probes found: readiness goes on the attempt, liveness restarts are counted."""
        task = self._current(task_id, token, "probe report")
        attempt = task.current
        if attempt is None or attempt.finished_at is not None:
            return task
        txn, update = Txn(), dict[str, object]()
        if report.restarts > attempt.restarts:
            update["restarts"] = report.restarts
            txn.event(self._event("restarted", f"on {task.node}: {report.message}", task))
        if report.ready is not None and report.ready != attempt.ready:
            update["ready"] = report.ready
            why = report.message if "restarts" not in update else "not ready while the container restarts"
            txn.event(self._event("ready" if report.ready else "not-ready", why, task))
        if not update:
            return task
        attempts = task.with_attempt(attempt.model_copy(update=update))
        new = task.model_copy(update={"attempts": attempts, "updated_at": self.clock.now()})
        self._commit(txn.put_task(new))
        return new

    def append_logs(self, task_id: str, token: int, batch: LogBatch) -> int:
        self._current(task_id, token, "logs")
        n = self.store.append_logs(task_id, token, [(ln.stream, ln.at, ln.data) for ln in batch.lines])
        self.notifier.notify(f"logs:{task_id}")
        return n

    # -- scheduling ---------------------------------------------------------------------------------
    def requeue(self, task: Task, reason: str, kind: str = "drifted", exclude: bool = True) -> Task:
        """Take a task off its node; its token is retired at once so the old copy is fenced."""
        if task.state not in ACTIVE:
            return task
        attempt = task.current
        attempts = task.attempts
        if attempt is not None and attempt.finished_at is None:
            attempts = task.with_attempt(
                attempt.model_copy(
                    update={"state": TaskState.CANCELLED, "error": reason, "finished_at": self.clock.now()}
                )
            )
        excluded = [*task.excluded_nodes, task.node] if exclude and task.node else task.excluded_nodes
        new = task.model_copy(
            update={
                "state": TaskState.PENDING,
                "token": None,
                "node": None,
                "attempts": attempts,
                "excluded_nodes": excluded,
                "reason": reason,
                "updated_at": self.clock.now(),
            }
        )
        try:
            self._commit(Txn().put_task(new).event(self._event(kind, reason, task)))
        except Conflict:
            return self.task(task.id)
        self.notifier.notify("scheduler", f"node:{task.node}")
        return new

    def snapshot(self) -> Snapshot:
        return Snapshot(
            nodes={n.name: n for n in self.store.list_nodes()},
            pending=self.store.list_tasks([TaskState.PENDING], limit=100_000),
            usage=committed_usage(self.store),
            revision=self.store.revision(),
            forecasts=dict(self.forecaster.forecasts),
            transients=dict(self.forecaster.transients),
        )

    def schedule_once(self) -> Plan:
        snap = self.snapshot()
        if not snap.pending:
            return Plan()
        plan = schedule(snap, self.policy, self.clock.now())
        placed, events = apply_plan(self.store, plan, self.clock.now())
        for listener in self.listeners:
            for event in events:
                listener(event)
        self.notifier.notify(*{f"node:{t.node}" for t in placed}, *{f"task:{t.id}" for t in placed}, "events")
        return plan
