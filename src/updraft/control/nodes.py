"""Node commands: registration, heartbeats, assignments, and the operator's cordon, drain, labels and taints.

Heartbeats take the fast path: liveness (the detector's input) and metrics live in memory
(:meth:`ClusterState.heartbeat`), and the store is written only when the node's state or reported facts change
(images, bandwidth), or when its liveness facts were last written ``node_flush_seconds`` ago. A heartbeat
never reads the store and never waits for the writer, so it is answered in microseconds whatever else queues.
"""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import Future

from updraft.control.core import ServiceCore
from updraft.errors import Conflict, UpdraftError
from updraft.model import ACTIVE, DriftCause, EventKind, Node, NodeMetrics, NodeState, Task
from updraft.model.api import (
    Assignment,
    Heartbeat,
    HeartbeatReply,
    LabelChange,
    NodeRegistration,
    TaintChange,
)
from updraft.store import Txn

log = logging.getLogger("updraft.nodes")

ASSIGNMENT_CACHE = 40_000
"""Attempts whose assignment JSON is kept (0.5–1 kB each, only for nodes that poll); beyond it, entries of
finished attempts go first, then the oldest."""


class NodeCommands(ServiceCore):
    def register(self, name: str, reg: NodeRegistration) -> Node:
        now = self.clock.now()
        old = self.state.node(name)
        fields = dict(
            labels=reg.labels,
            tags=reg.tags,
            taints=reg.taints,
            capacity=reg.capacity.to_capacity(),
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
            Txn(nodes=[(node, old.revision if old else 0)]).event(
                self._event(EventKind.NODE_REGISTERED, message, node=name)
            )
        )
        # A (re)registered agent starts a fresh heartbeat history: the silence before it is not its rhythm.
        self.detector.restart(name)
        self.notifier.notify("scheduler")
        return node

    def heartbeat(self, name: str, hb: Heartbeat) -> HeartbeatReply:
        """In memory only, safe on the event loop (see the module docstring)."""
        now = self.clock.now()
        before = self.state.node(name)
        if before is None:
            return HeartbeatReply(known=False, interval=self.settings.heartbeat_interval)
        if before.state == NodeState.UNREACHABLE:
            self.detector.forget(name)  # back from a partition: the gap is not part of its heartbeat rhythm
        self.detector.heartbeat(name, sent_at=hb.sent_at)
        metrics = NodeMetrics(cpu_pct=hb.cpu_pct, memory_pct=hb.memory_pct, at=now, rtt=hb.rtt)
        node = self.state.heartbeat(name, metrics, now)
        assert node is not None
        wake = node.state != NodeState.READY or abs(hb.cpu_pct - before.metrics.cpu_pct) >= 5
        if self.policy.predictive and self.forecaster.observe(name, now, hb.cpu_pct, hb.memory_pct):
            wake = True
        facts: dict[str, object] = {}
        if hb.images is not None and hb.images != node.images:
            facts["images"] = hb.images
        if hb.bandwidth is not None and hb.bandwidth != node.bandwidth:
            facts["bandwidth"] = hb.bandwidth
        if node.state != NodeState.READY or facts:
            self._write_facts(node, facts)
        stale = []
        for task_id, token in hb.running:
            live = self.state.live(task_id)
            if live is None or live.token != token or live.node != name:
                stale.append((task_id, token))
        if wake:
            self.notifier.notify("scheduler")
        return HeartbeatReply(stale=stale, interval=self.settings.heartbeat_interval)

    def _write_facts(self, node: Node, facts: dict[str, object]) -> Future[int] | None:
        """Record a returning node as ready, or new facts, without waiting (one write per node at a time)."""
        in_flight = self._facts_in_flight
        if node.name in in_flight:
            return None
        txn = Txn()
        if node.state != NodeState.READY:
            facts = facts | {"state": NodeState.READY, "state_since": self.clock.now()}
            txn.event(
                self._event(EventKind.NODE_READY, f"node {node.name} is ready again after being {node.state}", node=node.name)
            )
        txn.put_node(node.model_copy(update=facts))
        in_flight.add(node.name)
        fut = self.writer.submit(txn)

        def done(f: Future[int]) -> None:
            in_flight.discard(node.name)
            exc = f.exception()
            if exc is not None and not isinstance(exc, Conflict):  # a conflict: the next heartbeat tries again
                log.warning("could not record node %s: %s", node.name, exc)

        fut.add_done_callback(done)
        return fut

    def flush_liveness(self) -> int:
        """Write the metrics and heartbeat time of nodes last written ``node_flush_seconds`` ago."""
        due = self.state.flush_due(self.clock.now(), self.settings.node_flush_seconds)
        if not due:
            return 0
        txn = Txn()
        for node in due:
            txn.put_node(node)
        try:
            self._commit(txn)
        except UpdraftError as exc:  # a node changed meanwhile: it was written anyway
            log.info("liveness flush skipped: %s", exc.message)
            return 0
        return len(due)

    def assignments(self, name: str) -> list[Assignment]:
        """The attempts ``name`` should run (reads their specs from the store: not on the event loop)."""
        self.node(name)
        tasks = [self.store.get_task(live.id) for live in self.state.on_node(name) if live.token is not None]
        return [
            Assignment(task_id=t.id, token=t.token, spec=t.spec, traceparent=t.traceparent)
            for t in tasks
            if t is not None and t.token is not None and t.state in ACTIVE and t.node == name
        ]

    def assignments_json(self, name: str, index: int) -> bytes:
        """The body of ``GET /v1/nodes/{name}/assignments``: the same as ``Assignments(index, assignments(name))``
        serialised, from a cache of each attempt's JSON. An attempt (task, token) never changes, so its JSON is
        built once — when the scheduler places it (:meth:`remember_assignment`) or, failing that, read from
        the store here — not on every long-poll wake-up of its node."""
        body = self.assignments_cached(name, index, read=True)
        assert body is not None
        return body

    def assignments_cached(self, name: str, index: int, read: bool = False) -> bytes | None:
        """:meth:`assignments_json` from memory only (safe on the event loop): None when an attempt's JSON is
        not cached and ``read`` is false."""
        self.node(name)
        parts = []
        cache = self._assignment_json
        for live in self.state.on_node(name):
            if live.token is None or live.state not in ACTIVE:
                continue
            body = cache.get((live.id, live.token))
            if body is None:
                if not read:
                    return None
                task = self.store.get_task(live.id)
                if task is None or task.token != live.token or task.node != name:
                    continue
                body = self.remember_assignment(task, trim=False)
            parts.append(body)
        return b'{"index":%d,"assignments":[%s]}' % (index, b",".join(parts))

    def remember_assignment(self, task: Task, trim: bool = True) -> bytes:
        """Cache the JSON of a placed attempt (before its commit wakes the node's long-poll). Entries are kept
        only for attempts that are committed and live: an entry of a plan that did not commit is never served
        (the state has no such attempt) and goes with the next trim."""
        a = Assignment(task_id=task.id, token=task.token or 0, spec=task.spec, traceparent=task.traceparent)
        body = a.model_dump_json().encode()
        cache = self._assignment_json
        if trim and len(cache) >= ASSIGNMENT_CACHE:
            self._trim_assignments()
        if len(cache) < ASSIGNMENT_CACHE:  # a read that missed does not evict (more live attempts than the bound)
            cache[(task.id, task.token or 0)] = body
        return body

    def _trim_assignments(self) -> None:
        """Drop the entries of attempts no longer live, then the oldest, down to 90 % of the bound, so the next
        trim is thousands of entries away (amortised O(1) per entry, however many attempts stay live)."""
        cache = self._assignment_json
        for stale in [k for k in list(cache) if (t := self.state.live(k[0])) is None or t.token != k[1]]:
            cache.pop(stale, None)  # the scheduler and a reader may trim at once
        for oldest in list(itertools.islice(cache, max(0, len(cache) - ASSIGNMENT_CACHE * 9 // 10))):
            cache.pop(oldest, None)  # still live: read from the store again if its node asks

    def _update_node(self, name: str, kind: EventKind, message: str, **update: object) -> Node:
        node = self.node(name)
        new = node.model_copy(update=update)
        self._commit(Txn().put_node(new).event(self._event(kind, message, node=name)))
        self.notifier.notify("scheduler")
        return new

    def cordon(self, name: str, on: bool = True) -> Node:
        if on:
            return self._update_node(name, EventKind.NODE_CORDONED, f"node {name} cordoned", cordoned=True)
        return self._update_node(
            name, EventKind.NODE_UNCORDONED, f"node {name} uncordoned", cordoned=False, draining=False
        )

    def drain(self, name: str) -> Node:
        """Cordon the node and move its tasks off it, the way a failed node's tasks drift.

        Tasks pinned to the node (offloadable: false, origin here) stay: no other node may run them. As with
        ``kubectl drain`` and DaemonSet pods, the drain event says how many were left.
        """
        tasks = self.state.on_node(name)
        stay = [t for t in tasks if t.pinned_to == name]
        note = f"; {len(stay)} task(s) pinned to it stay" if stay else ""
        node = self._update_node(
            name, EventKind.NODE_DRAINING, f"node {name} draining{note}", cordoned=True, draining=True
        )
        for live in tasks:
            task = self.store.get_task(live.id) if live not in stay else None
            if task is not None:
                self.requeue(task, DriftCause.DRAINED, "node drained")
        return node

    def set_labels(self, name: str, change: LabelChange) -> Node:
        node = self.node(name)
        labels = {k: v for k, v in node.labels.items() if k not in change.remove} | change.set
        return self._update_node(name, EventKind.NODE_LABELLED, f"node {name} labels now {labels}", labels=labels)

    def set_taints(self, name: str, change: TaintChange) -> Node:
        node = self.node(name)
        keep = [t for t in node.taints if t.key not in change.remove and all(a.key != t.key for a in change.add)]
        taints = keep + list(change.add)
        return self._update_node(
            name, EventKind.NODE_TAINTED, f"node {name} taints now {[str(t) for t in taints]}", taints=taints
        )

    def set_node_state(self, name: str, state: NodeState, reason: str) -> Node:
        """Called by the failure detector. It only reports; moving tasks is the scheduler's job."""
        node = self.node(name)
        if node.state == state:
            return node
        new = node.model_copy(update={"state": state, "state_since": self.clock.now()})
        self._commit(Txn().put_node(new).event(self._event(EventKind.node_state(state), reason, node=name)))
        self.notifier.notify("scheduler")
        return new
