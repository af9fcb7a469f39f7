"""Issue 20: extended resources, node affinity, spread or bin-pack, no starvation; and decisions as data."""

from __future__ import annotations

import pytest
from builders import NOW, node, policy, preferred, required, snapshot, spec, task, tol
from pydantic import ValidationError

from updraft.model import TaskSpec
from updraft.model.api import NodeRegistration
from updraft.scheduler import Code, Plan, Policy, Usage, schedule

GPU = "nvidia.com/gpu"
GPU_TAINT = f"{GPU}=present:NoSchedule"


def run(nodes: list, tasks: list, pol: Policy | None = None, usage: dict | None = None, **kw: object) -> Plan:
    return schedule(snapshot(nodes, tasks, usage), pol or policy(), NOW, **kw)  # type: ignore[arg-type]


def where(plan: Plan) -> dict[str, str]:
    return {p.task_id: p.node for p in plan.placements}


# -- extended resources ------------------------------------------------------------------------------------


def test_gpu_tasks_go_only_where_gpus_are_free_and_are_counted() -> None:
    nodes = [node("cpu-only", cpu="64"), node("gpu-2", extended={GPU: 2}, taints=[GPU_TAINT])]
    gpu_tasks = [task(f"g{i}", seq=i, extended={GPU: 1}, tolerations=[tol(GPU, "Exists")]) for i in range(3)]
    plan = run(nodes, gpu_tasks)
    assert where(plan) == {"g0": "gpu-2", "g1": "gpu-2"}
    (d,) = plan.deferrals
    assert d.task_id == "g2" and d.code == Code.NO_NODE_FITS
    assert d.rejections is not None and d.rejections.as_dict() == {
        "insufficient-extended:nvidia.com/gpu": 2
    }  # cpu-only has none, gpu-2 has 0 of 2 left
    assert d.reason == "0/2 nodes fit: 2 insufficient nvidia.com/gpu (requested 1, largest free 0)"


def test_committed_gpus_count_against_capacity() -> None:
    gpu = node("gpu-2", extended={GPU: 2})
    used = {"gpu-2": Usage(tasks=1, extended={GPU: 2})}
    plan = run([gpu], [task("g", extended={GPU: 1})], usage=used)
    assert plan.placements == [] and "insufficient nvidia.com/gpu" in plan.deferrals[0].reason


def test_tasks_without_gpus_stay_off_tainted_gpu_nodes() -> None:
    nodes = [node("a-gpu", cpu="64", extended={GPU: 8}, taints=[GPU_TAINT]), node("b-small", cpu="2")]
    plan = run(nodes, [task("plain", cpu="1")])
    assert where(plan) == {"plain": "b-small"}
    plan = run(nodes[:1], [task("plain", cpu="1")])
    assert plan.deferrals[0].reason == "0/1 nodes fit: 1 untolerated taint"


def test_extended_resources_validate_and_round_trip() -> None:
    s = spec(extended={GPU: 2})
    assert s.resources.request_extended() == {GPU: 2}
    assert TaskSpec.model_validate_json(s.model_dump_json()) == s
    only_limit = TaskSpec(image="busybox", resources={"limits": {GPU: 1}})
    assert only_limit.resources.request_extended() == {GPU: 1}  # Kubernetes: a limit alone is the request
    with pytest.raises(ValidationError, match="must equal limits"):
        TaskSpec(image="busybox", resources={"requests": {GPU: 1}, "limits": {GPU: 2}})
    with pytest.raises(ValidationError) as err:
        TaskSpec(image="busybox", resources={"requests": {"gpu": 1}})
    assert err.value.errors()[0]["loc"] == ("resources", "requests", "gpu")
    with pytest.raises(ValidationError):
        TaskSpec(image="busybox", resources={"requests": {GPU: -1}})


def test_node_registration_declares_extended_capacity() -> None:
    reg = NodeRegistration(capacity={"cpu": "8", "memory": "16Gi", GPU: 2})
    cap = reg.capacity.to_capacity()
    assert (cap.cpu_millis, cap.extended) == (8000, {GPU: 2})
    assert "extended" not in node("plain").capacity.model_dump()  # unchanged wire shape without them


# -- node affinity -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "matching"),
    [
        (("gpu-model", "In", ["V100M16", "V100M32"]), {"v16", "v32"}),
        (("gpu-model", "NotIn", ["V100M16"]), {"v32", "t4", "none"}),  # NotIn matches a node without the label
        (("ssd", "Exists", []), {"v16", "t4"}),
        (("ssd", "DoesNotExist", []), {"v32", "none"}),
        (("cores", "Gt", ["8"]), {"v32", "t4"}),
        (("cores", "Lt", ["16"]), {"v16"}),  # "many" is no integer: Gt and Lt never match it
    ],
)
def test_required_affinity_operators(expression: tuple[str, str, list[str]], matching: set[str]) -> None:
    nodes = [
        node("v16", labels={"gpu-model": "V100M16", "ssd": "yes", "cores": "8"}),
        node("v32", labels={"gpu-model": "V100M32", "cores": "32"}),
        node("t4", labels={"gpu-model": "T4", "ssd": "", "cores": "16"}),
        node("none", labels={"cores": "many"}),
    ]
    placed = set()
    for n in nodes:  # each node alone: does the task go there?
        plan = run([n], [task("t", affinity=required(expression))])
        if plan.placements:
            placed.add(n.name)
        else:
            assert plan.deferrals[0].reason == "0/1 nodes fit: 1 node affinity mismatch"
    assert placed == matching


def test_required_terms_are_ored_and_expressions_anded() -> None:
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                              {"key": "arch", "operator": "In", "values": ["arm64"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["c"]}]}]}}}  # fmt: skip
    nodes = [
        node("a-amd", labels={"zone": "a", "arch": "amd64"}),
        node("b-arm", labels={"zone": "b", "arch": "arm64"}),
        node("c-amd", labels={"zone": "c", "arch": "amd64"}, cpu_pct=90),
    ]
    assert where(run(nodes, [task("t", affinity=aff)])) == {"t": "c-amd"}
    nodes.append(node("d-arm", labels={"zone": "a", "arch": "arm64"}))
    assert where(run(nodes, [task("t", affinity=aff)])) == {"t": "d-arm"}


def test_preferred_terms_add_weighted_score() -> None:
    nodes = [node("a-plain"), node("b-ssd", labels={"disk": "ssd"}), node("c-fast", labels={"net": "fast"})]
    aff = preferred((10, ("disk", "Exists", [])), (90, ("net", "In", ["fast"])))
    plan = run(nodes, [task("t", affinity=aff)])
    assert where(plan) == {"t": "c-fast"}
    by_node = {n.name: run([n], [task("t", affinity=aff)]).placements[0].score for n in nodes}
    assert by_node["c-fast"] > by_node["b-ssd"] > by_node["a-plain"]


@pytest.mark.parametrize(
    ("operator", "values", "message"),
    [
        ("In", [], "operator In needs at least one value"),
        ("Exists", ["x"], "operator Exists takes no values"),
        ("Gt", ["eight"], "operator Gt needs exactly one integer value"),
        ("Lt", ["1", "2"], "operator Lt needs exactly one integer value"),
        ("Near", ["x"], "Input should be 'In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt' or 'Lt'"),
    ],
)
def test_affinity_validation_names_the_field_and_the_operator(operator: str, values: list[str], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        TaskSpec(image="busybox", affinity=required(("cores", operator, values)))
    (e,) = err.value.errors()
    path = ".".join(str(p) for p in e["loc"])
    assert path.startswith(
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms.0.matchExpressions.0"
    )
    assert message in e["msg"]


# -- spread or bin-pack ------------------------------------------------------------------------------------


def test_binpack_fills_the_fullest_node_and_keeps_a_big_one_free() -> None:
    nodes = [node("a-big", cpu="16", memory="32Gi"), node("b-small", cpu="4", memory="8Gi")]
    small = [task(f"s{i}", seq=i, cpu="1", memory="1Gi") for i in range(4)]
    big = task("big", seq=10, cpu="16", memory="16Gi")
    spread = run(nodes, [*small, big], policy(scoring="spread", repair_moves=0))
    packed = run(nodes, [*small, big], policy(scoring="binpack", repair_moves=0))
    assert "big" not in where(spread)  # spreading put small tasks on the big node
    assert where(packed) == {"s0": "b-small", "s1": "b-small", "s2": "b-small", "s3": "b-small", "big": "a-big"}
    # the repair after the pass moves spread's small tasks off the big node (same pass, nothing committed yet)
    repaired = where(run(nodes, [*small, big], policy(scoring="spread")))
    assert repaired["big"] == "a-big" and set(repaired) == {"s0", "s1", "s2", "s3", "big"}
    assert [n for t, n in repaired.items() if t != "big"] == ["b-small"] * 4


def test_seed_scheduler_key_binpack_and_scoring_by_tag() -> None:
    assert Policy(scheduler="binpack").strategy == "binpack" and Policy().strategy == "spread"
    pol = policy(scoring_by_tag={"cloud": "binpack"})
    cloud = [node("c1", tags=["cloud"]), node("c2", tags=["cloud"])]
    edge = [node("e1", tags=["edge"]), node("e2", tags=["edge"])]
    tasks = [task(f"t{i}", seq=i, cpu="500m") for i in range(4)]
    assert sorted(where(run(cloud, tasks, pol)).values()) == ["c1"] * 4  # packed
    assert sorted(where(run(edge, tasks, pol)).values()) == ["e1", "e1", "e2", "e2"]  # spread


# -- queue order and limits ----------------------------------------------------------------------------------


def test_the_oldest_pending_task_is_placed_first_however_many_are_pending() -> None:
    """More pending tasks than any read or batch limit: the oldest of the highest priority is decided first,
    whatever order they arrive in (here newest first, as a store listing returns them)."""
    many = 100_001
    one = task("t", cpu="1")
    pending = [one.model_copy(update={"id": f"t{i}", "submitted_seq": i}) for i in reversed(range(many))]
    plan = run([node("only", cpu="1")], pending, limit=1)
    assert where(plan) == {"t0": "only"} and plan.deferrals == []
    plan = run([node("only", cpu="3")], pending, limit=5)
    assert set(where(plan)) == {"t0", "t1", "t2"} and {d.task_id for d in plan.deferrals} == {"t3", "t4"}


def test_limit_skips_tasks_not_yet_due_without_counting_them() -> None:
    later = task("later", seq=0, not_before=NOW + 10)
    plan = run([node("n")], [later, task("due", seq=1)], limit=1)
    assert where(plan) == {"due": "n"}


# -- codes ---------------------------------------------------------------------------------------------------


def test_every_decision_has_a_code() -> None:
    edge = "edge-1"
    cases = {
        Code.LOCAL_UNDER_THRESHOLD: ([node(edge), node("c", tags=["edge"])], task(origin=edge), policy()),
        Code.LOCAL_OFFLOAD_DISABLED: (
            [node(edge, cpu_pct=90), node("c", tags=["edge"])], task(origin=edge), policy(enable_offload=False)),
        Code.OFFLOADED_CPU: ([node(edge, cpu_pct=90), node("c", tags=["edge"])], task(origin=edge), policy()),
        Code.OFFLOADED_MEMORY: ([node(edge, memory_pct=90), node("c", tags=["edge"])], task(origin=edge), policy()),
        Code.KEPT_LOCAL_NO_TARGET: ([node(edge, cpu_pct=90)], task(origin=edge), policy()),
        Code.PINNED: ([node(edge, cpu_pct=90)], task(origin=edge, offloadable=False), policy()),
        Code.ANYWHERE_BEST: ([node("a")], task(), policy()),
        Code.ORIGIN_UNAVAILABLE: ([node("a")], task(origin="gone"), policy()),
        Code.NO_NODE_FITS: ([node("a", cpu="1")], task(cpu="2"), policy()),
        Code.PINNED_ORIGIN_UNAVAILABLE: ([node("a")], task(origin="gone", offloadable=False), policy()),
        Code.PINNED_ORIGIN_BLOCKED: ([node(edge, cpu="1")], task(origin=edge, cpu="2", offloadable=False), policy()),
        Code.WAITING_FOR_ORIGIN: ([node(edge, cpu="1")], task(origin=edge, cpu="2"), policy()),
        Code.WAITING_NO_TARGET: ([node(edge, cpu="1", cpu_pct=90)], task(origin=edge, cpu="2"), policy()),
    }  # fmt: skip
    for code, (nodes, t, pol) in cases.items():
        plan = run(nodes, [t], pol)
        (decision,) = [*plan.placements, *plan.deferrals]
        assert decision.code == code, (code, decision)


def test_updraft_nodes_shows_extended_resources() -> None:
    from updraft.cli.nodes import capacity_text

    assert capacity_text(node("g", extended={GPU: 2})) == "4 cpu / 8Gi, nvidia.com/gpu 2"
    assert capacity_text(node("p")) == "4 cpu / 8Gi"
