"""Properties of ``schedule`` over random clusters and queues (Hypothesis).

Whatever the nodes and tasks, a plan never breaks a hard constraint: taints, capacity, selectors, node
readiness, exclusions, pinning; and every due task gets exactly one decision.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from updraft.scheduler import Plan, Policy, Snapshot, Usage, schedule

KEYS = ["gpu", "zone", "dedicated"]
VALUES = ["", "a", "b"]
TAGS = ["edge", "low-util", "cloud"]
GIB = 2**30

taints = st.builds(Taint, key=st.sampled_from(KEYS), value=st.sampled_from(VALUES), effect=st.sampled_from(Effect))


@st.composite
def tolerations(draw: st.DrawFn) -> Toleration:
    key = draw(st.sampled_from(["", *KEYS]))
    operator = "Exists" if not key else draw(st.sampled_from(["Equal", "Exists"]))
    value = draw(st.sampled_from(VALUES)) if operator == "Equal" else ""
    effect = draw(st.none() | st.sampled_from(Effect))
    return Toleration(key=key, operator=operator, value=value, effect=effect)


@st.composite
def nodes_and_usage(draw: st.DrawFn) -> tuple[dict[str, Node], dict[str, Usage]]:
    nodes: dict[str, Node] = {}
    usage: dict[str, Usage] = {}
    for i in range(draw(st.integers(0, 6))):
        name = f"n{i}"
        cap = Capacity(cpu_millis=draw(st.integers(1, 16)) * 500, memory_bytes=draw(st.integers(1, 16)) * GIB // 2)
        nodes[name] = Node(
            name=name,
            capacity=cap,
            labels=draw(st.dictionaries(st.sampled_from(["zone", "arch"]), st.sampled_from(["a", "b"]))),
            tags=draw(st.lists(st.sampled_from(TAGS), unique=True, max_size=2)),
            taints=draw(st.lists(taints, max_size=2)),
            state=draw(st.sampled_from(NodeState)),
            cordoned=draw(st.booleans()),
            draining=draw(st.booleans()),
            offloading=draw(st.booleans()),
            metrics=NodeMetrics(cpu_pct=draw(st.floats(0, 100)), memory_pct=draw(st.floats(0, 100))),
        )
        if draw(st.booleans()):  # some capacity already committed, never more than the node has
            usage[name] = Usage(
                cpu_millis=draw(st.integers(0, cap.cpu_millis)),
                memory_bytes=draw(st.integers(0, cap.memory_bytes)),
                tasks=draw(st.integers(0, 5)),
            )
    return nodes, usage


def task_specs(node_names: list[str]) -> st.SearchStrategy[TaskSpec]:
    origins = st.none() | st.sampled_from([*node_names, "ghost"])
    cpu = st.none() | st.integers(0, 6000).map(lambda m: f"{m}m")
    memory = st.none() | st.integers(0, 8 * 1024).map(lambda mi: f"{mi}Mi")
    return st.builds(
        TaskSpec,
        image=st.sampled_from(["busybox:1.36", "app:v1"]),
        resources=st.builds(Resources, requests=st.builds(ResourceList, cpu=cpu, memory=memory)),
        node_selector=st.dictionaries(st.sampled_from(["zone", "arch"]), st.sampled_from(["a", "b"]), max_size=1),
        tolerations=st.lists(tolerations(), max_size=3),
        priority=st.integers(-2, 2),
        offloadable=st.booleans(),
        origin=origins,
    )


@dataclass
class Case:
    snapshot: Snapshot
    policy: Policy


@st.composite
def cases(draw: st.DrawFn) -> Case:
    nodes, usage = draw(nodes_and_usage())
    names = list(nodes)
    pending = []
    for i in range(draw(st.integers(0, 12))):
        pending.append(
            Task(
                id=f"t{i}",
                spec=draw(task_specs(names)),
                submitted_seq=draw(st.integers(0, 20)),
                excluded_nodes=draw(st.lists(st.sampled_from(names), max_size=2)) if names else [],
                not_before=draw(st.sampled_from([0.0, NOW, NOW + 5])),
            )
        )
    pol = Policy(
        enable_offload=draw(st.booleans()),
        threshold_cpu=draw(st.floats(1, 100)),
        threshold_memory=draw(st.floats(1, 100)),
        target_node_tags=draw(st.lists(st.sampled_from(TAGS), max_size=2)),
        hysteresis=draw(st.floats(0, 50)),
    )
    forecasts = {n: "forecast" for n in draw(st.lists(st.sampled_from(names), max_size=2))} if names else {}
    return Case(Snapshot(nodes=nodes, pending=pending, usage=usage, forecasts=forecasts), pol)


PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
        if not t.spec.offloadable:
            assert p.node == t.spec.origin
        assert p.reason


@PROPS
@given(cases())
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
