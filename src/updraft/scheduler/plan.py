"""``schedule(snapshot, policy, now) -> Plan``: the whole placement decision, with no I/O.

A pass takes pending tasks in queue order (higher priority first, FIFO within a priority), decides for each
whether it runs on its origin or is offloaded, and charges the chosen node's committed resources before the
next task is considered, so one plan never over-commits a node. Nothing is written here: the plan applier
re-checks the plan against the store and commits it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from updraft.model import Node, NodeState, Task, TaskSpec
from updraft.scheduler import filters
from updraft.scheduler.filters import Usage
from updraft.scheduler.policy import Policy
from updraft.scheduler.scores import cpu_load_pct, image_note, memory_load_pct, score


@dataclass(frozen=True)
class Snapshot:
    nodes: Mapping[str, Node]
    pending: list[Task]
    usage: Mapping[str, Usage]
    revision: int = 0
    forecasts: Mapping[str, str] = field(default_factory=dict)
    transients: Mapping[str, str] = field(default_factory=dict)
    """node → reason, for origins whose measured excursion over a threshold the predictor calls a spike."""
    """node → reason, for origins the predictor says will cross a threshold within the horizon."""


@dataclass(frozen=True)
class Placement:
    task_id: str
    node: str
    placement: str  # local | offload | anywhere
    reason: str
    score: float


@dataclass(frozen=True)
class Deferral:
    task_id: str
    reason: str


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
    node: Node, usage: Usage, policy: Policy, forecast: str | None, transient: str | None = None
) -> tuple[bool, str]:
    """Is the origin over a threshold? Hysteresis: once offloading, stay until `hysteresis` points below.

    With the predictive policy, ``forecast`` (a predicted crossing) counts as over, and ``transient`` (the
    measured excursion is a one-sample spike) holds back an offload the measurement alone would trigger.
    """
    cpu, mem = cpu_load_pct(node, usage), memory_load_pct(node, usage)
    slack = policy.hysteresis if node.offloading else 0.0
    committed_cpu = 100.0 * usage.cpu_millis / node.capacity.cpu_millis
    if cpu >= policy.threshold_cpu - slack:
        if transient and committed_cpu < policy.threshold_cpu - slack and not usage.pending_unbounded:
            return (
                False,
                f"held back: origin cpu {cpu:.0f}% ≥ {policy.threshold_cpu:.0f}% looks transient ({transient})",
            )
        op = "≥" if cpu >= policy.threshold_cpu else f"≥ {policy.threshold_cpu - slack:.0f}% (hysteresis), threshold"
        return True, f"origin cpu {cpu:.0f}% {op} {policy.threshold_cpu:.0f}%"
    if mem >= policy.threshold_memory - slack:
        op = "≥" if mem >= policy.threshold_memory else "≥ (hysteresis)"
        return True, f"origin memory {mem:.0f}% {op} {policy.threshold_memory:.0f}%"
    if forecast:
        return True, f"origin predicted to overload: {forecast}"
    return (
        False,
        f"origin cpu {cpu:.0f}% < {policy.threshold_cpu:.0f}%, memory {mem:.0f}% < {policy.threshold_memory:.0f}%",
    )


def _best(
    candidates: list[Node], spec: TaskSpec, usage: Mapping[str, Usage], policy: Policy, image_bytes: int | None = None
) -> tuple[Node | None, float, list[str]]:
    """The highest-scoring feasible node, its score, and why each other candidate was rejected."""
    best: Node | None = None
    best_score = -1.0
    rejected: list[str] = []
    for node in sorted(candidates, key=lambda n: n.name):
        u = usage.get(node.name, Usage())
        why = filters.check(node, spec, u)
        if why is not None:
            rejected.append(f"{node.name}: {why}")
            continue
        s = score(node, spec, u, policy, image_bytes)
        if s > best_score:
            best, best_score = node, s
    return best, best_score, rejected


def schedule(snapshot: Snapshot, policy: Policy, now: float) -> Plan:
    usage: dict[str, Usage] = dict(snapshot.usage)
    plan = Plan(revision=snapshot.revision)
    modes: dict[str, bool] = {name: n.offloading for name, n in snapshot.nodes.items()}

    def place(task: Task, node: Node, kind: str, reason: str, s: float) -> None:
        usage[node.name] = usage.get(node.name, Usage()).plus(task.spec)
        plan.placements.append(Placement(task.id, node.name, kind, reason, s))

    def note(node: Node, task: Task) -> str:
        return image_note(node, task.spec, task.image_size, policy)

    for task in queue_order(snapshot.pending):
        if task.not_before > now or task.awaiting_pin:
            continue
        spec = task.spec
        nodes = [n for n in snapshot.nodes.values() if n.name not in task.excluded_nodes]
        origin = snapshot.nodes.get(spec.origin) if spec.origin else None

        if spec.origin is None:
            node, s, rejected = _best(nodes, spec, usage, policy, task.image_size)
            if node is None:
                plan.deferrals.append(Deferral(task.id, "no node fits: " + "; ".join(rejected or ["no nodes"])))
            else:
                place(task, node, "anywhere", f"best node {node.name} (score {s:.2f}; {note(node, task)})", s)
            continue

        if origin is None or spec.origin in task.excluded_nodes:
            if not spec.offloadable:
                plan.deferrals.append(
                    Deferral(task.id, f"origin {spec.origin} is not available and the task is not offloadable")
                )
                continue
            targets = [n for n in nodes if n.name != spec.origin]
            node, s, rejected = _best(targets, spec, usage, policy, task.image_size)
            if node is None:
                plan.deferrals.append(Deferral(task.id, "no node fits: " + "; ".join(rejected or ["no nodes"])))
            else:
                place(
                    task,
                    node,
                    "offload",
                    f"origin {spec.origin} not available; target {node.name} (score {s:.2f}; {note(node, task)})",
                    s,
                )
            continue

        origin_usage = usage.get(origin.name, Usage())
        origin_view = origin.model_copy(update={"offloading": modes[origin.name]})
        over, why = _overloaded(
            origin_view,
            origin_usage,
            policy,
            snapshot.forecasts.get(origin.name),
            snapshot.transients.get(origin.name),
        )
        if origin.state != NodeState.READY:
            over, why = True, f"origin {origin.name} is {origin.state}"
        if over != modes[origin.name] and origin.state == NodeState.READY:
            modes[origin.name] = over
            if over == origin.offloading:  # flipped and back within one pass: nothing to write
                plan.offload_mode.pop(origin.name, None)
            else:
                plan.offload_mode[origin.name] = over
        origin_block = filters.check(origin, spec, origin_usage)

        if not spec.offloadable:
            if origin_block is None:
                place(task, origin, "local", f"pinned to origin (offloadable: false); {why}", 0.0)
            else:
                plan.deferrals.append(Deferral(task.id, f"pinned to origin {origin.name}: {origin_block}"))
            continue

        if over and policy.enable_offload:
            targets = [
                n for n in nodes if n.name != origin.name and filters.carries_target_tag(n, policy.target_node_tags)
            ]
            node, s, rejected = _best(targets, spec, usage, policy, task.image_size)
            if node is not None:
                place(
                    task,
                    node,
                    "offload",
                    f"offloaded: {why}; target {node.name} (score {s:.2f}; {note(node, task)})",
                    s,
                )
                continue
            no_target = "no target fits: " + "; ".join(
                rejected or [f"no node carries a tag of {policy.target_node_tags}"]
            )
            if origin_block is None:
                place(task, origin, "local", f"kept on origin: {why} but {no_target}", 0.0)
            else:
                plan.deferrals.append(Deferral(task.id, f"waiting: {why}, origin {origin_block}, {no_target}"))
            continue

        if origin_block is None:
            reason = why if policy.enable_offload else f"offload disabled; {why}"
            place(task, origin, "local", f"local: {reason}", 0.0)
        else:
            plan.deferrals.append(Deferral(task.id, f"waiting for origin {origin.name}: {origin_block}"))
    return plan
