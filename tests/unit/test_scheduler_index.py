"""The persistent NodeIndex: maintained incrementally, it decides exactly as one built fresh from the same
nodes and usage; queued changes apply at the next pass; a pass leaves no trace in it."""

from __future__ import annotations

from builders import NOW, node, spec, task
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from updraft.model import Node, NodeState, TaskSpec
from updraft.scheduler import NodeIndex, Policy, Snapshot, Usage, schedule

GPU = "nvidia.com/gpu"
SPECS = [spec(cpu="500m"), spec(cpu="2", memory="1Gi"), spec(cpu="1", cpu_limit="1"), spec(extended={GPU: 1})]
NODES = [
    node("a", labels={"zone": "a"}),
    node("b", cpu="8", extended={GPU: 2}),
    node("c", tags=["edge"], cpu_pct=40),
    node("d", cpu="2", taints=["dedicated=x:NoSchedule"]),
]


def fresh_plan(nodes: dict[str, Node], usage: dict[str, Usage], tasks: list) -> object:
    return schedule(Snapshot(nodes=nodes, pending=tasks, usage=usage), Policy(), NOW)


def kept_plan(index: NodeIndex, tasks: list) -> object:
    return schedule(Snapshot(nodes={}, pending=tasks, usage={}, index=index), Policy(), NOW)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), st.sampled_from(range(len(NODES))), st.sampled_from(["ready", "suspect",
                  "cordon", "label", "hot"])),
        st.tuples(st.just("remove"), st.sampled_from(range(len(NODES)))),
        st.tuples(st.just("add"), st.sampled_from(range(len(NODES))), st.sampled_from(range(len(SPECS)))),
        st.tuples(st.just("start"), st.sampled_from(range(len(NODES))), st.sampled_from(range(len(SPECS)))),
        st.tuples(st.just("end"), st.sampled_from(range(len(NODES))), st.sampled_from(range(len(SPECS)))),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_incremental_index_decides_as_a_fresh_one(changes: list[tuple]) -> None:
    nodes = {n.name: n for n in NODES}
    usage: dict[str, Usage] = {}
    placed: dict[str, list[tuple[TaskSpec, bool]]] = {}  # attempts per node: (spec, started)
    index = NodeIndex(NODES)
    for op, i, *rest in changes:
        name = NODES[i].name
        if op == "upsert":
            base = nodes.get(name, NODES[i])
            change = rest[0]
            new = {
                "ready": base.model_copy(update={"state": NodeState.READY, "cordoned": False}),
                "suspect": base.model_copy(update={"state": NodeState.SUSPECT}),
                "cordon": base.model_copy(update={"cordoned": True}),
                "label": base.model_copy(update={"labels": {**base.labels, "zone": "b"}}),
                "hot": base.model_copy(update={"metrics": base.metrics.model_copy(update={"cpu_pct": 95.0})}),
            }[change]
            if name not in nodes:
                usage.pop(name, None)
                placed.pop(name, None)
            nodes[name] = new
            index.upsert_node(new)
        elif op == "remove" and name in nodes:
            del nodes[name]
            usage.pop(name, None)
            placed.pop(name, None)
            index.remove_node(name)
        elif op == "add" and name in nodes:
            s = SPECS[rest[0]]
            usage[name] = usage.get(name, Usage()).plus(s)
            placed.setdefault(name, []).append((s, False))
            index.add_usage(name, s)
        elif op == "start":
            attempts = placed.get(name, [])
            waiting = [k for k, (s, started) in enumerate(attempts) if not started]
            if waiting:
                s = attempts[waiting[0]][0]
                attempts[waiting[0]] = (s, True)
                usage[name] = usage[name].as_started(s)
                index.mark_started(name, s)
        elif op == "end" and placed.get(name):
            s, started = placed[name].pop()
            usage[name] = usage[name].minus(s, started=started)
            index.remove_usage(name, s, started=started)
    tasks = [task(f"t{k}", seq=k, cpu=c, **kw) for k, (c, kw) in enumerate(
        [("1", {}), ("3", {}), ("500m", {"extended": {GPU: 1}}), ("100m", {"origin": "a"}),
         ("100m", {"node_selector": {"zone": "b"}})])]  # fmt: skip
    assert kept_plan(index, tasks) == fresh_plan(nodes, usage, tasks)
    assert kept_plan(index, tasks) == fresh_plan(nodes, usage, tasks)  # a pass leaves no charge behind
    for name in nodes:
        row = index.row(name)
        assert row is not None and index.usage_at(row) == usage.get(name, Usage())


def test_usage_plus_minus_and_started_are_inverse() -> None:
    s = spec(cpu="1", memory="1Gi", extended={GPU: 1})
    u = Usage().plus(s)
    assert (u.cpu_millis, u.pending_cpu_millis, u.pending_unbounded, u.extended) == (1000, 1000, 1, {GPU: 1})
    running = u.as_started(s)
    assert (running.cpu_millis, running.pending_cpu_millis, running.pending_unbounded) == (1000, 0, 0)
    assert running.minus(s, started=True) == Usage()
    assert u.minus(s) == Usage()


def test_changes_queue_until_the_next_pass() -> None:
    index = NodeIndex([node("a", cpu="1")])
    index.add_usage("a", spec(cpu="1"))
    assert index.usage_at(0) == Usage()  # nothing applied yet: mutators only queue
    plan = kept_plan(index, [task("t", cpu="1")])
    assert plan.placements == [] and "insufficient cpu" in plan.deferrals[0].reason
    index.upsert_node(node("b", cpu="2"))
    assert [p.node for p in kept_plan(index, [task("t", cpu="1")]).placements] == ["b"]


def test_refresh_by_identity_matches_a_fresh_index() -> None:
    nodes = {n.name: n for n in NODES}
    usage = {"a": Usage().plus(SPECS[1])}
    index = NodeIndex()
    index.refresh(nodes, usage)
    tasks = [task("t1", seq=1, cpu="3"), task("t2", seq=2, extended={GPU: 1})]
    assert kept_plan(index, tasks) == fresh_plan(nodes, usage, tasks)
    nodes = {**nodes, "b": nodes["b"].model_copy(update={"cordoned": True})}
    del nodes["c"]
    usage = {"a": usage["a"].plus(SPECS[1]), "d": Usage().plus(SPECS[0])}
    index.refresh(nodes, usage)
    assert kept_plan(index, tasks) == fresh_plan(nodes, usage, tasks)
    assert index.row("c") is None and len(index) == 3
