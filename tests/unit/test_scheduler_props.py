"""Properties of ``schedule`` over random clusters and queues (Hypothesis).

Whatever the nodes and tasks, a plan never breaks a hard constraint: taints, capacity, selectors, node
readiness, exclusions, pinning; and every due task gets exactly one decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from builders import NOW
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from updraft.model import (
    Capacity,
    Effect,
    Node,
    NodeMetrics,
    NodeState,
    ResourceList,
    Resources,
    Taint,
    Task,
    TaskSpec,
    Toleration,
)
from updraft.model.spec import (
    Affinity,
    NodeAffinity,
    NodeSelector,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PreferredSchedulingTerm,
)
from updraft.scheduler import Plan, Policy, Snapshot, Usage, filters, queue_order, schedule
from updraft.scheduler.scores import score

KEYS = ["gpu", "zone", "dedicated"]
VALUES = ["", "a", "b"]
TAGS = ["edge", "low-util", "cloud"]
GIB = 2**30

NAMES = [f"n{i}" for i in range(6)]
EFFECTS = list(Effect)
taints = st.builds(Taint, key=st.sampled_from(KEYS), value=st.sampled_from(VALUES), effect=st.sampled_from(EFFECTS))
labels = st.dictionaries(st.sampled_from(["zone", "arch"]), st.sampled_from(["a", "b"]), max_size=2)
percent = st.floats(0, 100)
mostly_ready = st.sampled_from([NodeState.READY] * 8 + [NodeState.SUSPECT, NodeState.UNREACHABLE])
rarely = st.integers(0, 7).map(lambda n: n == 0)
maybe_millis = st.none() | st.integers(0, 3000)
maybe_mebis = st.none() | st.integers(0, 4 * 1024)


@st.composite
def tolerations(draw: st.DrawFn) -> Toleration:
    key = draw(st.sampled_from(["", *KEYS]))
    operator: Literal["Equal", "Exists"] = "Exists" if not key else draw(st.sampled_from(["Equal", "Exists"]))
    value = draw(st.sampled_from(VALUES)) if operator == "Equal" else ""
    effect = draw(st.none() | st.sampled_from(EFFECTS))
    return Toleration(key=key, operator=operator, value=value, effect=effect)


TOLERATIONS = st.lists(tolerations(), max_size=3)
SELECTORS = st.dictionaries(st.sampled_from(["zone", "arch"]), st.sampled_from(["a", "b"]), max_size=1)


@st.composite
def _node(draw: st.DrawFn) -> tuple[Node, Usage | None]:
    cap = Capacity(cpu_millis=draw(st.integers(1, 16)) * 500, memory_bytes=draw(st.integers(1, 16)) * GIB // 2)
    node = Node(
        name="?",
        capacity=cap,
        labels=draw(labels),
        tags=draw(st.lists(st.sampled_from(TAGS), unique=True, max_size=2)),
        taints=draw(st.lists(taints, max_size=1)),
        state=draw(mostly_ready),
        cordoned=draw(rarely),
        draining=draw(rarely),
        offloading=draw(st.booleans()),
        metrics=NodeMetrics(cpu_pct=draw(percent), memory_pct=draw(percent)),
    )
    usage = None
    if draw(st.booleans()):  # some capacity already committed, never more than the node has
        usage = Usage(
            cpu_millis=draw(st.integers(0, cap.cpu_millis)),
            memory_bytes=draw(st.integers(0, cap.memory_bytes)),
            tasks=draw(st.integers(0, 5)),
        )
    return node, usage


@st.composite
def _task(draw: st.DrawFn) -> Task:
    """Origins and exclusions name n0..n5 or "ghost": some of them are not in the cluster, on purpose."""
    cpu = draw(maybe_millis)
    memory = draw(maybe_mebis)
    spec = TaskSpec(
        image=draw(st.sampled_from(["busybox:1.36", "app:v1"])),
        resources=Resources(
            requests=ResourceList(
                cpu=None if cpu is None else f"{cpu}m", memory=None if memory is None else f"{memory}Mi"
            )
        ),
        node_selector=draw(SELECTORS),
        tolerations=draw(TOLERATIONS),
        priority=draw(st.integers(-2, 2)),
        offloadable=draw(st.booleans()),
        origin=draw(st.none() | st.sampled_from([*NAMES, "ghost"])),
    )
    return Task(
        id="?",
        spec=spec,
        submitted_seq=draw(st.integers(0, 20)),
        excluded_nodes=draw(st.lists(st.sampled_from(NAMES), max_size=1)),
        not_before=draw(st.sampled_from([0.0, NOW, NOW + 5])),
    )


NODE_LISTS = st.lists(_node(), min_size=1, max_size=len(NAMES))
TASK_LISTS = st.lists(_task(), max_size=12)


@dataclass
class Case:
    snapshot: Snapshot
    policy: Policy


@st.composite
def cases(draw: st.DrawFn) -> Case:
    cluster = [(n.model_copy(update={"name": name}), u) for name, (n, u) in zip(NAMES, draw(NODE_LISTS), strict=False)]
    pending = [t.model_copy(update={"id": f"t{i}"}) for i, t in enumerate(draw(TASK_LISTS))]
    pol = Policy(
        enable_offload=draw(st.booleans()),
        threshold_cpu=draw(st.floats(1, 100)),
        threshold_memory=draw(st.floats(1, 100)),
        target_node_tags=draw(st.lists(st.sampled_from(TAGS), max_size=2)),
        hysteresis=draw(st.floats(0, 50)),
    )
    forecasts = {n: "forecast" for n in draw(st.lists(st.sampled_from(NAMES), max_size=2))}
    snap = Snapshot(
        nodes={n.name: n for n, _ in cluster},
        pending=pending,
        usage={n.name: u for n, u in cluster if u is not None},
        forecasts=forecasts,
    )
    return Case(snap, pol)


@st.composite
def crowded(draw: st.DrawFn) -> Case:
    """Ready, untainted nodes and many small tasks: capacity is what decides, so it is what gets tested."""
    sizes = draw(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 8), st.booleans()), min_size=1, max_size=4))
    nodes = {
        f"n{i}": Node(
            name=f"n{i}",
            capacity=Capacity(cpu_millis=cpu * 500, memory_bytes=mem * GIB // 2),
            tags=["edge"] if tagged else [],
            metrics=NodeMetrics(cpu_pct=draw(percent)),
        )
        for i, (cpu, mem, tagged) in enumerate(sizes)
    }
    pending = [
        Task(
            id=f"t{i}",
            spec=TaskSpec(
                image="busybox",
                resources=Resources(requests=ResourceList(cpu=f"{cpu}m", memory=f"{mem}Mi")),
                origin=origin,
                offloadable=offloadable,
            ),
            submitted_seq=i,
        )
        for i, (cpu, mem, origin, offloadable) in enumerate(
            draw(
                st.lists(
                    st.tuples(
                        st.integers(0, 2000), st.integers(0, 2048), st.sampled_from([None, *nodes]), st.booleans()
                    ),
                    min_size=1,
                    max_size=16,
                )
            )
        )
    ]
    return Case(Snapshot(nodes=nodes, pending=pending, usage={}), Policy())


PROPS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _run(case: Case) -> tuple[Plan, dict[str, Task]]:
    return schedule(case.snapshot, case.policy, NOW), {t.id: t for t in case.snapshot.pending}


@PROPS
@given(cases())
def test_placements_honour_taints_selectors_readiness_and_exclusions(case: Case) -> None:
    plan, tasks = _run(case)
    for p in plan.placements:
        node, t = case.snapshot.nodes[p.node], tasks[p.task_id]
        assert node.state == NodeState.READY and not node.cordoned and not node.draining
        for taint in node.taints:
            if taint.effect in (Effect.NO_SCHEDULE, Effect.NO_EXECUTE):
                assert t.spec.tolerates(taint), (p, taint)
        for key, want in t.spec.node_selector.items():
            assert node.labels.get(key) == want
        assert p.node not in t.excluded_nodes
        assert t.not_before <= NOW
        if not t.spec.offloadable and t.spec.origin is not None:
            assert p.node == t.spec.origin
        assert p.reason


@PROPS
@given(cases() | crowded())
def test_plan_never_exceeds_any_nodes_allocatable(case: Case) -> None:
    plan, tasks = _run(case)
    for name, node in case.snapshot.nodes.items():
        before = case.snapshot.usage.get(name, Usage())
        mine = [tasks[p.task_id].spec.resources for p in plan.placements if p.node == name]
        assert before.cpu_millis + sum(r.request_cpu() for r in mine) <= node.capacity.cpu_millis
        assert before.memory_bytes + sum(r.request_memory() for r in mine) <= node.capacity.memory_bytes


@PROPS
@given(cases())
def test_every_due_task_gets_exactly_one_decision(case: Case) -> None:
    plan, tasks = _run(case)
    decided = [p.task_id for p in plan.placements] + [d.task_id for d in plan.deferrals]
    assert len(decided) == len(set(decided))
    assert set(decided) == {t.id for t in tasks.values() if t.not_before <= NOW}
    assert all(d.reason for d in plan.deferrals)
    for name, mode in plan.offload_mode.items():
        assert case.snapshot.nodes[name].offloading != mode  # only real flag changes are recorded


@PROPS
@given(cases())
def test_schedule_is_deterministic(case: Case) -> None:
    assert schedule(case.snapshot, case.policy, NOW) == schedule(case.snapshot, case.policy, NOW)


# -- the fast path decides as an exhaustive search would ------------------------------------------------------

GPU = "nvidia.com/gpu"
EXPRESSIONS = st.sampled_from(
    [
        NodeSelectorRequirement(key="zone", operator="In", values=["a"]),
        NodeSelectorRequirement(key="zone", operator="NotIn", values=["a"]),
        NodeSelectorRequirement(key="arch", operator="Exists"),
        NodeSelectorRequirement(key="arch", operator="DoesNotExist"),
        NodeSelectorRequirement(key="cores", operator="Gt", values=["4"]),
        NodeSelectorRequirement(key="cores", operator="Lt", values=["6"]),
    ]
)
TERMS = st.builds(NodeSelectorTerm, matchExpressions=st.lists(EXPRESSIONS, max_size=2))
AFFINITY = st.none() | st.builds(
    lambda req, pref: Affinity(
        nodeAffinity=NodeAffinity(
            requiredDuringSchedulingIgnoredDuringExecution=NodeSelector(nodeSelectorTerms=req) if req else None,
            preferredDuringSchedulingIgnoredDuringExecution=pref,
        )
    ),
    st.lists(TERMS, max_size=2),
    st.lists(st.builds(PreferredSchedulingTerm, weight=st.integers(1, 100), preference=TERMS), max_size=2),
)


@st.composite
def anywhere(draw: st.DrawFn) -> Case:
    """Tasks without an origin over nodes with every constraint the filters know, and GPUs."""
    nodes = {}
    for i, (n, _) in enumerate(draw(st.lists(_node(), min_size=1, max_size=6))):
        labels = {**n.labels, "cores": draw(st.sampled_from(["2", "4", "8", "x"]))}
        gpus = draw(st.sampled_from([0, 0, 1, 2]))
        cap = n.capacity.model_copy(update={"extended": {GPU: gpus} if gpus else {}})
        nodes[f"n{i}"] = n.model_copy(
            update={
                "name": f"n{i}",
                "labels": labels,
                "capacity": cap,
                "images": draw(st.sampled_from([[], ["app:v1"]])),
                "bandwidth": draw(st.sampled_from([None, 1e6, 1e8])),
            }
        )
    usage = {}
    for name, n in nodes.items():
        if draw(st.booleans()):
            gpus = n.capacity.extended.get(GPU, 0)
            usage[name] = Usage(
                cpu_millis=draw(st.integers(0, n.capacity.cpu_millis)),
                memory_bytes=draw(st.integers(0, n.capacity.memory_bytes)),
                tasks=draw(st.integers(0, 5)),
                pending_cpu_millis=draw(st.integers(0, 2000)),
                pending_unbounded=draw(st.integers(0, 1)),
                extended={GPU: draw(st.integers(0, gpus))} if gpus else {},
            )
    pending = []
    for i in range(draw(st.integers(1, 10))):
        cpu, memory, gpus = draw(maybe_millis), draw(maybe_mebis), draw(st.sampled_from([0, 0, 0, 1, 2]))
        requests: dict[str, object] = {
            "cpu": None if cpu is None else f"{cpu}m",
            "memory": None if memory is None else f"{memory}Mi",
        }
        if gpus:
            requests[GPU] = gpus
        spec = TaskSpec(
            image=draw(st.sampled_from(["busybox:1.36", "app:v1"])),
            resources=Resources(requests=ResourceList(**requests)),  # type: ignore[arg-type]
            node_selector=draw(SELECTORS),
            affinity=draw(AFFINITY),
            tolerations=draw(TOLERATIONS),
            priority=draw(st.integers(-1, 1)),
        )
        pending.append(
            Task(
                id=f"t{i}",
                spec=spec,
                submitted_seq=i,
                excluded_nodes=draw(st.lists(st.sampled_from(sorted(nodes)), max_size=1)),
                image_size=draw(st.sampled_from([None, 10**7, 10**9])),
            )
        )
    pol = Policy(
        scoring=draw(st.sampled_from(["spread", "binpack"])),
        scoring_by_tag=draw(st.sampled_from([{}, {"cloud": "binpack"}, {"edge": "spread"}])),
        percentage_of_nodes_to_score=100,
    )
    return Case(Snapshot(nodes=nodes, pending=pending, usage=usage), pol)


@PROPS
@given(anywhere())
def test_sampling_off_chooses_a_node_with_the_exhaustive_best_score(case: Case) -> None:
    """Replay the plan with the scalar filters and scores: each task gets a node whose score equals the best
    over every feasible node at that moment (or waits when none is feasible), and capacity holds throughout.
    This is the greedy pass alone: the repair that follows it is off (its own properties are below)."""
    plan = schedule(case.snapshot, case.policy.model_copy(update={"repair_moves": 0}), NOW)
    placed = {p.task_id: p for p in plan.placements}
    deferred = {d.task_id for d in plan.deferrals}
    usage = dict(case.snapshot.usage)
    for t in queue_order(case.snapshot.pending):
        assert (t.id in placed) != (t.id in deferred)  # one decision per task
        feasible = {
            name: score(n, t.spec, usage.get(name, Usage()), case.policy, t.image_size)
            for name, n in case.snapshot.nodes.items()
            if name not in t.excluded_nodes and filters.why(n, t.spec, usage.get(name, Usage())) is None
        }
        if t.id in deferred:
            assert not feasible, (t.id, feasible)
            continue
        p = placed[t.id]
        assert p.node in feasible, (p, feasible)
        assert p.score == feasible[p.node] == max(feasible.values())
        assert p.node == min(name for name, s in feasible.items() if s == p.score)  # ties: first name
        usage[p.node] = usage.get(p.node, Usage()).plus(t.spec)
    for name, u in usage.items():
        cap = case.snapshot.nodes[name].capacity
        before = case.snapshot.usage.get(name, Usage())
        if u is not before:
            assert u.cpu_millis <= max(cap.cpu_millis, before.cpu_millis)
            assert u.memory_bytes <= max(cap.memory_bytes, before.memory_bytes)
            for res, n in u.extended.items():
                assert n <= max(cap.extended.get(res, 0), before.extended.get(res, 0))


@PROPS
@given(anywhere() | crowded())
def test_repair_only_adds_placements_and_keeps_every_hard_constraint(case: Case) -> None:
    """The repair after a pass may move this pass's placements, never drop one: every task the greedy pass
    placed is still placed, some deferred ones may be too, and capacity and constraints still hold."""
    greedy = schedule(case.snapshot, case.policy.model_copy(update={"repair_moves": 0}), NOW)
    plan, tasks = _run(case)
    placed = {p.task_id: p for p in plan.placements}
    assert len(placed) == len(plan.placements)
    assert {p.task_id for p in greedy.placements} <= set(placed)
    assert set(placed) | {d.task_id for d in plan.deferrals} == {p.task_id for p in greedy.placements} | {
        d.task_id for d in greedy.deferrals
    }
    assert not set(placed) & {d.task_id for d in plan.deferrals}
    for p in greedy.placements:
        if p.placement != "anywhere":  # only placements without an origin may move
            assert placed[p.task_id].node == p.node
    usage: dict[str, Usage] = dict(case.snapshot.usage)
    for p in plan.placements:
        t, node = tasks[p.task_id], case.snapshot.nodes[p.node]
        assert filters.why(node, t.spec, Usage()) is None, p  # readiness, taints, selectors, affinity
        assert p.node not in t.excluded_nodes
        usage[p.node] = usage.get(p.node, Usage()).plus(t.spec)
    for name, u in usage.items():
        before, cap = case.snapshot.usage.get(name, Usage()), case.snapshot.nodes[name].capacity
        if u is not before:
            assert u.cpu_millis <= max(cap.cpu_millis, before.cpu_millis)
            assert u.memory_bytes <= max(cap.memory_bytes, before.memory_bytes)
