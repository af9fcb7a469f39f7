"""``schedule(snapshot, policy, now) -> Plan``: the whole placement decision, with no I/O.

A pass takes pending tasks in queue order (higher priority first, FIFO by ``submitted_seq`` within a priority),
decides for each whether it runs on its origin or is offloaded, and charges the chosen node's committed
resources before the next task is considered, so one plan never over-commits a node. Nothing is written here:
the plan applier re-checks the plan against the store and commits it.

Every decision carries a stable :class:`~updraft.scheduler.reasons.Code` beside its human ``reason``; a task
that finds no node carries a :class:`~updraft.scheduler.reasons.RejectionSummary` (counts by filter).

Speed: the fleet is a :class:`~updraft.scheduler.index.NodeIndex` (arrays); pass one in the snapshot to keep
it across passes (see that module for how to maintain it), otherwise one is built from ``snapshot.nodes`` and
``snapshot.usage`` for the pass. ``limit`` bounds the decisions of one pass: the first due tasks in queue
order are decided, so however many are pending the oldest of the highest priority is never starved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from updraft.model import Node, NodeState, Task
from updraft.scheduler import filters
from updraft.scheduler.explain import explain
from updraft.scheduler.filters import Demand, Usage
from updraft.scheduler.index import NodeIndex
from updraft.scheduler.policy import Policy
from updraft.scheduler.reasons import Code, RejectionSummary
from updraft.scheduler.scores import cpu_load_pct, image_note, memory_load_pct, vector_scores


@dataclass(frozen=True)
class Snapshot:
    nodes: Mapping[str, Node]
    pending: list[Task]
    usage: Mapping[str, Usage]
    revision: int = 0
    forecasts: Mapping[str, str] = field(default_factory=dict)
    """node → reason, for origins the predictor says will cross a threshold within the horizon."""
    transients: Mapping[str, str] = field(default_factory=dict)
    """node → reason, for origins whose measured excursion over a threshold the predictor calls a spike."""
    index: NodeIndex | None = None
    """when given, the fleet and its usage come from it (``nodes`` and ``usage`` are not read)."""


@dataclass(frozen=True)
class Placement:
    task_id: str
    node: str
    placement: str  # local | offload | anywhere
    reason: str
    score: float
    code: Code = Code.ANYWHERE_BEST
    rejections: RejectionSummary | None = None
    """when kept on its origin because no target fits: why the targets did not."""


@dataclass(frozen=True)
class Deferral:
    task_id: str
    reason: str
    code: Code = Code.NO_NODE_FITS
    rejections: RejectionSummary | None = None


@dataclass
class Plan:
    placements: list[Placement] = field(default_factory=list)
    deferrals: list[Deferral] = field(default_factory=list)
    offload_mode: dict[str, bool] = field(default_factory=dict)
    """origins whose hysteresis flag changes: node → new value."""
    revision: int = 0


def queue_order(tasks: list[Task]) -> list[Task]:
    return sorted(tasks, key=lambda t: (-t.spec.priority, t.submitted_seq))


def _overloaded(
    node: Node,
    offloading: bool,
    usage: Usage,
    policy: Policy,
    forecast: str | None,
    transient: str | None = None,
) -> tuple[bool, str, Code]:
    """Is the origin over a threshold? Hysteresis: once offloading, stay until `hysteresis` points below.

    With the predictive policy, ``forecast`` (a predicted crossing) counts as over, and ``transient`` (the
    measured excursion is a one-sample spike) holds back an offload the measurement alone would trigger.
    """
    cpu, mem = cpu_load_pct(node, usage), memory_load_pct(node, usage)
    slack = policy.hysteresis if offloading else 0.0
    committed_cpu = 100.0 * usage.cpu_millis / node.capacity.cpu_millis
    if cpu >= policy.threshold_cpu - slack:
        if transient and committed_cpu < policy.threshold_cpu - slack and not usage.pending_unbounded:
            why = f"held back: origin cpu {cpu:.0f}% ≥ {policy.threshold_cpu:.0f}% looks transient ({transient})"
            return False, why, Code.HELD_BACK_TRANSIENT
        op = "≥" if cpu >= policy.threshold_cpu else f"≥ {policy.threshold_cpu - slack:.0f}% (hysteresis), threshold"
        return True, f"origin cpu {cpu:.0f}% {op} {policy.threshold_cpu:.0f}%", Code.OFFLOADED_CPU
    if mem >= policy.threshold_memory - slack:
        op = "≥" if mem >= policy.threshold_memory else "≥ (hysteresis)"
        return True, f"origin memory {mem:.0f}% {op} {policy.threshold_memory:.0f}%", Code.OFFLOADED_MEMORY
    if forecast:
        return True, f"origin predicted to overload: {forecast}", Code.OFFLOADED_PREDICTED
    return (
        False,
        f"origin cpu {cpu:.0f}% < {policy.threshold_cpu:.0f}%, memory {mem:.0f}% < {policy.threshold_memory:.0f}%",
        Code.LOCAL_UNDER_THRESHOLD,
    )


class _Pass:
    """One scheduling pass over an index: tentative charges are recorded and taken back at the end."""

    def __init__(self, index: NodeIndex, policy: Policy) -> None:
        self.index, self.policy = index, policy
        self.charged: list[tuple[int, Demand, int]] = []
        self._targets: np.ndarray | None = None

    def charge(self, row: int, demand: Demand, sign: int = 1) -> None:
        self.index.charge(row, demand, sign)
        self.charged.append((row, demand, sign))

    def revert(self) -> None:
        for row, demand, sign in reversed(self.charged):
            self.index.charge(row, demand, -sign)
        self.charged.clear()

    def fits_on(self, row: int, demand: Demand) -> bool:
        only = np.zeros(self.index.size, np.bool_)
        only[row] = True
        return bool(self.index.fits(only, demand)[row])

    def targets(self) -> np.ndarray:
        if self._targets is None:
            self._targets = self.index.tag_mask(self.policy.target_node_tags)
        return self._targets

    def best(
        self, task: Task, demand: Demand, restrict: np.ndarray | None, origin: int | None, scope: str
    ) -> tuple[int | None, float, RejectionSummary | None]:
        """The best feasible row among ``restrict`` (None: every node) other than ``origin`` and the task's
        excluded nodes, with its score; or, when there is none, why."""
        index, policy = self.index, self.policy
        admit, soft, preferred = index.static(task.spec)
        feasible = index.fits(admit if restrict is None else admit & restrict, demand)
        excluded = [r for r in (index.row(n) for n in task.excluded_nodes) if r is not None]
        feasible[excluded] = False
        if origin is not None:
            feasible[origin] = False
        rows = np.flatnonzero(feasible)
        if not len(rows):
            alive = index.a["alive"][: index.size]
            candidates = alive.copy() if restrict is None else alive & restrict
            if origin is not None:
                candidates[origin] = False
            avoid = np.zeros(index.size, np.bool_)
            avoid[excluded] = True
            return None, -1.0, explain(index, task.spec, demand, candidates, avoid, scope)
        k = policy.nodes_to_score(len(rows), len(index))
        if k < len(rows):  # kube-scheduler's sampling: a window of k feasible rows from a rotating start
            start = int(np.searchsorted(rows, index.next_start))
            window = rows[start : start + k]
            rows = window if len(window) == k else np.concatenate((window, rows[: k - len(window)]))
            index.next_start = int(rows[-1]) + 1
        scores = vector_scores(index, rows, task.spec, demand, soft, preferred, policy, task.image_size)
        top = scores.max()
        ties = rows[scores == top]
        row = int(ties[0]) if len(ties) == 1 else int(ties[np.argmin(index.ranks()[ties])])
        return row, float(top), None


def schedule(snapshot: Snapshot, policy: Policy, now: float, limit: int | None = None) -> Plan:
    """Decide the due pending tasks in queue order; at most ``limit`` decisions when given."""
    index = snapshot.index if snapshot.index is not None else NodeIndex(snapshot.nodes.values(), snapshot.usage)
    index.sync()
    run = _Pass(index, policy)
    try:
        plan = _decide(snapshot, policy, now, limit, index, run)
        if plan.deferrals and policy.repair_moves:
            repair(plan, run, {t.id: t for t in snapshot.pending}, policy.repair_moves)
        return plan
    finally:
        run.revert()


def _unavailable(index: NodeIndex, row: int | None) -> bool:
    """No origin node, or one that cannot take work now (not ready, cordoned, draining)."""
    if row is None:
        return True
    node = index.node_at(row)
    return node.state != NodeState.READY or node.cordoned or node.draining


def _unavailable_why(index: NodeIndex, row: int | None, origin: str | None) -> str:
    node = index.node_at(row) if row is not None else None
    if node is None or (node.state == NodeState.READY and not node.cordoned and not node.draining):
        return f"origin {origin} not available"  # gone, or excluded for this task
    state = node.state if node.state != NodeState.READY else "draining" if node.draining else "cordoned"
    return f"origin {node.name} is {state}"


def _decide(
    snapshot: Snapshot, policy: Policy, now: float, limit: int | None, index: NodeIndex, run: _Pass
) -> Plan:
    plan = Plan(revision=snapshot.revision)
    modes: dict[str, bool] = {}
    decided = 0

    def place(task: Task, row: int, demand: Demand, kind: str, reason: str, s: float, code: Code,
              rejections: RejectionSummary | None = None) -> None:  # fmt: skip
        run.charge(row, demand)
        name = index.node_at(row).name
        plan.placements.append(Placement(task.id, name, kind, reason, s, code, rejections))

    def defer(task: Task, reason: str, code: Code, rejections: RejectionSummary | None = None) -> None:
        plan.deferrals.append(Deferral(task.id, reason, code, rejections))

    def note(row: int, task: Task) -> str:
        return image_note(index.node_at(row), task.spec, task.image_size, policy)

    for task in queue_order(snapshot.pending):
        if task.not_before > now or task.awaiting_pin:
            continue
        if limit is not None and decided >= limit:
            break
        decided += 1
        spec = task.spec
        demand = Demand.of(spec)
        origin_row = index.row(spec.origin) if spec.origin else None

        if spec.origin is None:
            row, s, why_not = run.best(task, demand, None, None, "nodes")
            if row is None:
                assert why_not is not None
                defer(task, why_not.text(), Code.NO_NODE_FITS, why_not)
            else:
                name = index.node_at(row).name
                reason = f"best node {name} (score {s:.2f}; {note(row, task)})"
                place(task, row, demand, "anywhere", reason, s, Code.ANYWHERE_BEST)
            continue

        if _unavailable(index, origin_row) or spec.origin in task.excluded_nodes:
            # Gone, not ready, cordoned or draining: an offloadable task goes to the best node anywhere, whether
            # or not offload (a load decision) is enabled; a pinned one waits for its origin.
            if not spec.offloadable:
                reason = f"origin {spec.origin} is not available and the task is not offloadable"
                defer(task, reason, Code.PINNED_ORIGIN_UNAVAILABLE)
                continue
            row, s, why_not = None, 0.0, None
            if policy.enable_offload and origin_row is not None:  # the operator's targets first, then anywhere
                row, s, why_not = run.best(task, demand, run.targets(), origin_row, "target nodes")
            if row is None:
                row, s, why_not = run.best(task, demand, None, origin_row, "nodes")
            if row is None:
                assert why_not is not None
                defer(task, why_not.text(), Code.NO_NODE_FITS, why_not)
            else:
                name = index.node_at(row).name
                reason = f"{_unavailable_why(index, origin_row, spec.origin)}; target {name} (score {s:.2f}; {note(row, task)})"
                place(task, row, demand, "offload", reason, s, Code.ORIGIN_UNAVAILABLE)
            continue

        assert origin_row is not None  # _unavailable covers a missing origin
        origin = index.node_at(origin_row)
        origin_usage = index.usage_at(origin_row)
        mode = modes.get(origin.name, origin.offloading)
        over, why, code = _overloaded(
            origin,
            mode,
            origin_usage,
            policy,
            snapshot.forecasts.get(origin.name),
            snapshot.transients.get(origin.name),
        )
        if origin.state != NodeState.READY:  # pinned tasks only (the others went anywhere above)
            over, why, code = True, f"origin {origin.name} is {origin.state}", Code.ORIGIN_UNAVAILABLE
        if over != mode and origin.state == NodeState.READY:
            modes[origin.name] = over
            if over == origin.offloading:  # flipped and back within one pass: nothing to write
                plan.offload_mode.pop(origin.name, None)
            else:
                plan.offload_mode[origin.name] = over
        block = filters.why(origin, spec, origin_usage)

        if not spec.offloadable:
            if block is None:
                place(task, origin_row, demand, "local", f"pinned to origin (offloadable: false); {why}", 0.0,
                      Code.PINNED)  # fmt: skip
            else:
                defer(task, f"pinned to origin {origin.name}: {block.text}", Code.PINNED_ORIGIN_BLOCKED)
            continue

        if over and policy.enable_offload:
            row, s, why_not = run.best(task, demand, run.targets(), origin_row, "target nodes")
            if row is not None:
                name = index.node_at(row).name
                reason = f"offloaded: {why}; target {name} (score {s:.2f}; {note(row, task)})"
                place(task, row, demand, "offload", reason, s, code)
                continue
            assert why_not is not None
            summary = why_not.text() if why_not.total else f"no node carries a tag of {policy.target_node_tags}"
            if block is None:
                reason = f"kept on origin: {why} but no target fits: {summary}"
                place(task, origin_row, demand, "local", reason, 0.0, Code.KEPT_LOCAL_NO_TARGET, why_not)
            else:
                reason = f"waiting: {why}, origin {block.text}, no target fits: {summary}"
                defer(task, reason, Code.WAITING_NO_TARGET, why_not)
            continue

        if block is None:
            if not policy.enable_offload:
                place(task, origin_row, demand, "local", f"local: offload disabled; {why}", 0.0,
                      Code.LOCAL_OFFLOAD_DISABLED)  # fmt: skip
            else:
                place(task, origin_row, demand, "local", f"local: {why}", 0.0, code)
        else:
            defer(task, f"waiting for origin {origin.name}: {block.text}", Code.WAITING_FOR_ORIGIN)
    return plan


def repair(plan: Plan, run: _Pass, tasks: Mapping[str, Task], budget: int) -> None:
    """Make room for tasks this pass could not place by moving placements made earlier in the same pass.

    A greedy pass in queue order can fill the only nodes a later, constrained task may use (bin-packing puts
    unconstrained tasks on the nodes of the one zone a later task is pinned to) while other nodes still have
    room. Nothing of this pass is committed yet, so for each deferred task without an origin (queue order),
    on up to ``REPAIR_NODES`` nodes its constraints admit where its free room plus what this pass placed there
    could hold it (most free cpu first), placements of this pass without an origin are moved elsewhere
    (largest first, each to its best other node) until the task fits; if it still does not, those moves are
    undone. ``budget`` bounds the moves tried (kept or undone) per pass, so a full cluster costs at most that
    many extra decisions, and the nodes worth trying are found with array operations, so a task no move can
    help costs next to nothing. No task loses its placement and none moves to a node it could not have chosen
    itself, so queue order keeps its promise: a later task only takes room an earlier one did not need.
    Placements committed by earlier passes never move (that would be preemption).
    """
    movable = _Movable(plan, run, tasks)
    if not movable.on_row:
        return
    kept: list[Deferral] = []
    for d in plan.deferrals:
        task = tasks.get(d.task_id)
        if budget <= 0 or task is None or task.spec.origin is not None or d.code != Code.NO_NODE_FITS:
            kept.append(d)
            continue
        placed, used = movable.make_room(task, budget)
        budget -= used
        if not placed:
            kept.append(d)
    plan.deferrals = kept


REPAIR_NODES = 8


class _Movable:
    """This pass's placements without an origin, by node, with their cpu and memory summed per row."""

    def __init__(self, plan: Plan, run: _Pass, tasks: Mapping[str, Task]) -> None:
        self.plan, self.run, self.tasks = plan, run, tasks
        n = run.index.size
        self.cpu, self.mem = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.on_row: dict[int, list[int]] = {}
        self.demand: dict[int, Demand] = {}
        for i, p in enumerate(plan.placements):
            row = run.index.row(p.node)
            if p.placement == "anywhere" and row is not None and p.task_id in tasks:
                self._add(i, row, Demand.of(tasks[p.task_id].spec))

    def _add(self, i: int, row: int, d: Demand) -> None:
        self.on_row.setdefault(row, []).append(i)
        self.demand[i] = d
        self.cpu[row] += d.cpu
        self.mem[row] += d.memory

    def _remove(self, i: int, row: int) -> None:
        self.on_row[row].remove(i)
        d = self.demand.pop(i)
        self.cpu[row] -= d.cpu
        self.mem[row] -= d.memory

    def rows_for(self, task: Task, demand: Demand) -> list[int]:
        """Nodes the task's constraints admit where moving this pass's placements away could make it fit."""
        index = self.run.index
        a, n = index.a, index.size
        ok = index.static(task.spec)[0] & (a["free_cpu"][:n] + self.cpu >= demand.cpu)
        ok &= a["free_mem"][:n] + self.mem >= demand.memory
        for name, want in demand.extended:  # extended resources are not moved: only their capacity counts
            found = index.ext(name)
            ok &= (found[0][:n] >= want) if found is not None else False
        ok[[r for r in (index.row(x) for x in task.excluded_nodes) if r is not None]] = False
        ok &= (self.cpu > 0) | (self.mem > 0)  # something of this pass to move
        rows = np.flatnonzero(ok)
        return [int(r) for r in rows[np.argsort(-a["free_cpu"][rows], kind="stable")][:REPAIR_NODES]]

    def make_room(self, task: Task, budget: int) -> tuple[bool, int]:
        """Try to place ``task`` by moving placements of this pass off one node; (placed, moves tried)."""
        plan, run, index, demand, tried = self.plan, self.run, self.run.index, Demand.of(task.spec), 0
        for row in self.rows_for(task, demand):
            moved: list[tuple[int, int, float]] = []  # placement index, new row, score
            for i in sorted(self.on_row[row], key=lambda i: -self.demand[i].cpu):
                if run.fits_on(row, demand) or tried >= budget:
                    break
                tried += 1
                other, d = self.tasks[plan.placements[i].task_id], self.demand[i]
                run.charge(row, d, -1)
                to, s, _ = run.best(other, d, None, row, "nodes")
                if to is None:
                    run.charge(row, d, 1)
                    continue
                run.charge(to, d, 1)
                moved.append((i, to, s))
            if run.fits_on(row, demand):
                for i, to, s in moved:
                    p, name = plan.placements[i], index.node_at(to).name
                    why = f"best node {name} (score {s:.2f}; moved from {p.node} in this pass to make room for {task.id})"
                    plan.placements[i] = Placement(p.task_id, name, p.placement, why, s, Code.MOVED_FOR_ROOM)
                    d = self.demand[i]
                    self._remove(i, row)
                    self._add(i, to, d)
                run.charge(row, demand)
                name = index.node_at(row).name
                why = f"node {name}: room made by moving {len(moved)} task(s) placed in this pass to other nodes"
                plan.placements.append(Placement(task.id, name, "anywhere", why, 0.0, Code.MADE_ROOM))
                self._add(len(plan.placements) - 1, row, demand)
                return True, tried
            for i, to, _ in reversed(moved):
                run.charge(to, self.demand[i], -1)
                run.charge(row, self.demand[i], 1)
        return False, tried
