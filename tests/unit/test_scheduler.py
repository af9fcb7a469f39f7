"""The pure scheduler: filters, offload policy, hysteresis, ordering, scoring and capacity accounting."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from builders import DIGEST, IMAGE, NOW, node, policy, snapshot, task, tol

from updraft.model import Node, NodeState, Task
from updraft.scheduler import Code, Deferral, Placement, Plan, Policy, Usage, filters, queue_order, schedule


def plan_for(
    nodes: Iterable[Node],
    pending: Iterable[Task],
    pol: Policy | None = None,
    usage: dict[str, Usage] | None = None,
    forecasts: dict[str, str] | None = None,
    now: float = NOW,
) -> Plan:
    """Schedule, and check the invariant every test shares: each decision says why."""
    plan = schedule(snapshot(nodes, pending, usage, forecasts), pol or policy(), now)
    decisions: list[Placement | Deferral] = [*plan.placements, *plan.deferrals]
    for d in decisions:
        assert d.reason.strip(), d
    return plan


def where(plan: Plan) -> dict[str, str]:
    return {p.task_id: p.node for p in plan.placements}


def reason(plan: Plan, task_id: str) -> str:
    found = [p.reason for p in plan.placements if p.task_id == task_id]
    found += [d.reason for d in plan.deferrals if d.task_id == task_id]
    assert len(found) == 1, found
    return found[0]


def deferred(plan: Plan) -> set[str]:
    return {d.task_id for d in plan.deferrals}


EDGE = "edge-1"


def cluster(origin_cpu: float = 0.0, origin_mem: float = 0.0, offloading: bool = False) -> list[Node]:
    """An origin edge device and two offload targets, one tagged edge, one low-util; plus an untagged node."""
    return [
        node(EDGE, tags=["edge"], cpu_pct=origin_cpu, memory_pct=origin_mem, offloading=offloading),
        node("cloud-1", tags=["low-util"], cpu="8", memory="16Gi"),
        node("edge-2", tags=["edge"], cpu_pct=50),
        node("big-untagged", cpu="64", memory="256Gi"),
    ]


# -- filters ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocked", "why", "summary"),
    [
        (node("a", state=NodeState.SUSPECT), "node is suspect", "1 not ready"),
        (node("a", state=NodeState.UNREACHABLE), "node is unreachable", "1 not ready"),
        (node("a", cordoned=True), "node is cordoned", "1 cordoned"),
        (node("a", cordoned=True, draining=True), "node is draining", "1 draining"),
        (node("a", labels={"zone": "b"}), "label zone=a required, node has zone=b", "1 node_selector mismatch"),
        (node("a"), "lacks label zone=a", "1 node_selector mismatch"),
        (node("a", taints=["gpu=true:NoSchedule"]), "untolerated taint gpu=true:NoSchedule", "1 untolerated taint"),
        (node("a", taints=["dedicated:NoExecute"]), "untolerated taint dedicated:NoExecute", "1 untolerated taint"),
        (
            node("a", cpu="100m"),
            "insufficient cpu (requested 500m, free 100m)",
            "1 insufficient cpu (requested 500m, largest free 100m)",
        ),
        (
            node("a", memory="32Mi"),
            "insufficient memory (requested 64Mi, free 32Mi)",
            "1 insufficient memory (requested 64Mi, largest free 32Mi)",
        ),
    ],
)
def test_filters_reject_with_a_reason(blocked: Node, why: str, summary: str) -> None:
    selector = {"zone": "a"} if "label" in why else {}
    t = task("t", cpu="500m", node_selector=selector)
    ok = node("z-ok", labels={"zone": "a"})
    plan = plan_for([blocked, ok], [t])
    assert where(plan) == {"t": "z-ok"}
    assert filters.check(blocked, t.spec, Usage()) == why  # what the applier logs for one node
    alone = plan_for([blocked], [t])
    assert deferred(alone) == {"t"}
    assert reason(alone, "t") == f"0/1 nodes fit: {summary}"
    (d,) = alone.deferrals
    assert d.code == Code.NO_NODE_FITS and d.rejections is not None and d.rejections.total == 1


def test_tolerated_taints_admit() -> None:
    t = task("t", tolerations=[tol("gpu", "Equal", "true"), tol("dedicated", "Exists")])
    plan = plan_for([node("a", taints=["gpu=true:NoSchedule", "dedicated:NoExecute"])], [t])
    assert where(plan) == {"t": "a"}


def test_prefer_no_schedule_only_lowers_the_score() -> None:
    soft = node("a-soft", taints=["busy=yes:PreferNoSchedule"])
    plain = node("b-plain")
    assert where(plan_for([soft, plain], [task("t")])) == {"t": "b-plain"}
    assert where(plan_for([soft], [task("t")])) == {"t": "a-soft"}
    tolerant = task("t", tolerations=[tol("busy", "Exists")])
    scores = {p.node: p.score for p in plan_for([soft], [tolerant]).placements}
    assert scores["a-soft"] > plan_for([soft], [task("t2")]).placements[0].score


def test_pre_existing_usage_counts_against_capacity() -> None:
    plan = plan_for([node("a", cpu="4")], [task("t", cpu="200m")], usage={"a": Usage(cpu_millis=3900)})
    assert reason(plan, "t") == "0/1 nodes fit: 1 insufficient cpu (requested 200m, largest free 100m)"


# -- offload at, below and above thresholds ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "mem", "offloaded"),
    [(74.9, 0, False), (75, 0, True), (91, 0, True), (0, 79.9, False), (0, 80, True), (10, 95, True)],
)
def test_offload_thresholds(cpu: float, mem: float, offloaded: bool) -> None:
    plan = plan_for(cluster(cpu, mem), [task("t", origin=EDGE)])
    p = plan.placements[0]
    if offloaded:
        assert (p.node, p.placement) == ("cloud-1", "offload")
        assert p.reason.startswith("offloaded: origin ")
        assert "; target cloud-1 (score " in p.reason
    else:
        assert (p.node, p.placement) == (EDGE, "local")
        assert p.reason == f"local: origin cpu {cpu:.0f}% < 75%, memory {mem:.0f}% < 80%"


def test_offload_reason_quotes_the_numbers() -> None:
    plan = plan_for(cluster(91), [task("t", origin=EDGE)])
    assert reason(plan, "t").startswith("offloaded: origin cpu 91% ≥ 75%; target cloud-1 (score 0.")
    plan = plan_for(cluster(0, 85), [task("t", origin=EDGE)])
    assert reason(plan, "t").startswith("offloaded: origin memory 85% ≥ 80%")


def test_offload_only_to_nodes_carrying_a_target_tag() -> None:
    nodes = [node(EDGE, tags=["edge"], cpu_pct=90), node("big-untagged", cpu="64")]
    plan = plan_for(nodes, [task("t", origin=EDGE)])
    assert where(plan) == {"t": EDGE}
    assert "no target fits: no node carries a tag of ['edge', 'low-util']" in reason(plan, "t")


def test_custom_thresholds_and_tags() -> None:
    pol = policy(threshold_cpu=50, target_node_tags=["cloud"])
    nodes = [node(EDGE, cpu_pct=55), node("c", tags=["cloud"]), node("e", tags=["edge"])]
    assert where(plan_for(nodes, [task("t", origin=EDGE)], pol)) == {"t": "c"}


def test_offload_disabled_keeps_tasks_local() -> None:
    plan = plan_for(cluster(99), [task("t", origin=EDGE)], policy(enable_offload=False))
    assert where(plan) == {"t": EDGE}
    assert reason(plan, "t").startswith("local: offload disabled; origin cpu 99%")


def test_no_target_fits_runs_on_origin_with_reason() -> None:
    nodes = [node(EDGE, tags=["edge"], cpu_pct=90), node("tiny", tags=["low-util"], cpu="100m")]
    plan = plan_for(nodes, [task("t", origin=EDGE, cpu="500m")])
    assert where(plan) == {"t": EDGE}
    r = reason(plan, "t")
    assert r == (
        "kept on origin: origin cpu 90% ≥ 75% but no target fits: "
        "0/1 target nodes fit: 1 insufficient cpu (requested 500m, largest free 100m)"
    )
    (p,) = plan.placements
    assert p.code == Code.KEPT_LOCAL_NO_TARGET and p.rejections is not None
    assert p.rejections.as_dict() == {"insufficient-cpu": 1}


def test_no_target_and_origin_full_defers() -> None:
    nodes = [node(EDGE, cpu="1", cpu_pct=90), node("tiny", tags=["edge"], cpu="100m")]
    plan = plan_for(nodes, [task("t", origin=EDGE, cpu="2")])
    assert deferred(plan) == {"t"}
    assert "no target fits" in reason(plan, "t") and reason(plan, "t").startswith("waiting:")


def test_predicted_overload_offloads() -> None:
    plan = plan_for(cluster(10), [task("t", origin=EDGE)], forecasts={EDGE: "cpu 92% in 20 s"})
    assert where(plan) == {"t": "cloud-1"}
    assert "origin predicted to overload: cpu 92% in 20 s" in reason(plan, "t")


def test_origin_not_ready_offloads() -> None:
    nodes = [*cluster(0)[1:], node(EDGE, tags=["edge"], state=NodeState.SUSPECT)]
    plan = plan_for(nodes, [task("t", origin=EDGE)])
    assert where(plan) == {"t": "cloud-1"}
    assert "origin edge-1 is suspect" in reason(plan, "t")
    assert plan.offload_mode == {}  # a flag flip needs a ready origin


# -- hysteresis ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offloading", "cpu", "offloaded", "mode_change"),
    [
        (False, 70, False, {}),  # below threshold, not in offload mode: local
        (False, 80, True, {EDGE: True}),  # crosses: enters offload mode
        (True, 80, True, {}),  # stays in offload mode
        (True, 70, True, {}),  # 70 ≥ 75 - 10: still offloading
        (True, 65, True, {}),  # exactly at threshold - hysteresis: still offloading
        (True, 64.9, False, {EDGE: False}),  # below threshold - hysteresis: leaves offload mode
    ],
)
def test_hysteresis(offloading: bool, cpu: float, offloaded: bool, mode_change: dict[str, bool]) -> None:
    plan = plan_for(cluster(cpu, offloading=offloading), [task("t", origin=EDGE)])
    assert (plan.placements[0].placement == "offload") is offloaded
    assert plan.offload_mode == mode_change
    if offloading and offloaded and cpu < 75:
        assert "(hysteresis)" in reason(plan, "t")


def test_hysteresis_on_memory() -> None:
    plan = plan_for(cluster(0, 72, offloading=True), [task("t", origin=EDGE)])
    assert plan.placements[0].placement == "offload"
    plan = plan_for(cluster(0, 69, offloading=True), [task("t", origin=EDGE)])
    assert plan.placements[0].placement == "local" and plan.offload_mode == {EDGE: False}


# -- pinning, origins, exclusions, time ------------------------------------------------------------------


def test_not_offloadable_pins_to_origin() -> None:
    plan = plan_for(cluster(99), [task("t", origin=EDGE, offloadable=False)])
    assert where(plan) == {"t": EDGE}
    assert reason(plan, "t").startswith("pinned to origin (offloadable: false); origin cpu 99%")


def test_not_offloadable_waits_for_a_full_origin() -> None:
    plan = plan_for(
        [node(EDGE, cpu="1"), node("cloud", tags=["edge"])], [task("t", origin=EDGE, cpu="2", offloadable=False)]
    )
    assert deferred(plan) == {"t"}
    assert reason(plan, "t").startswith("pinned to origin edge-1: insufficient cpu")


def test_no_origin_goes_to_the_best_node_anywhere() -> None:
    nodes = [node("a-busy", cpu_pct=90), node("b-idle"), node("c-untagged-busy", cpu_pct=95)]
    plan = plan_for(nodes, [task("t")])
    assert where(plan) == {"t": "b-idle"}
    assert plan.placements[0].placement == "anywhere"
    assert reason(plan, "t").startswith("best node b-idle (score ")


def test_excluded_nodes_are_never_used() -> None:
    nodes = [node("a"), node("b", cpu_pct=99)]
    assert where(plan_for(nodes, [task("t", excluded=["a"])])) == {"t": "b"}
    plan = plan_for(nodes, [task("t", excluded=["a", "b"])])
    assert deferred(plan) == {"t"} and reason(plan, "t") == "0/2 nodes fit: 2 excluded for this task"


def test_excluded_origin_offloads_to_any_other_node() -> None:
    plan = plan_for(cluster(0), [task("t", origin=EDGE, excluded=[EDGE])])
    p = plan.placements[0]
    assert p.node != EDGE and p.placement == "offload"
    assert p.reason.startswith("origin edge-1 not available; target ")


def test_unknown_origin_pinned_task_defers() -> None:
    plan = plan_for(cluster(0), [task("t", origin="gone", offloadable=False)])
    assert reason(plan, "t") == "origin gone is not available and the task is not offloadable"


def test_not_before_in_the_future_is_skipped() -> None:
    later = task("later", not_before=NOW + 1)
    due = task("due", not_before=NOW)
    plan = plan_for([node("a")], [later, due])
    assert where(plan) == {"due": "a"}
    assert "later" not in deferred(plan)


# -- order and scoring ---------------------------------------------------------------------------------


def test_queue_order_priority_then_fifo() -> None:
    tasks = [task("low", seq=1, priority=-5), task("b", seq=3), task("hi", seq=4, priority=10), task("a", seq=2)]
    assert [t.id for t in queue_order(tasks)] == ["hi", "a", "b", "low"]


def test_higher_priority_wins_the_last_slot() -> None:
    tasks = [task("first", seq=1, cpu="1"), task("urgent", seq=2, cpu="1", priority=5)]
    plan = plan_for([node("a", cpu="1")], tasks)
    assert where(plan) == {"urgent": "a"} and deferred(plan) == {"first"}


def test_fifo_within_a_priority() -> None:
    tasks = [task("second", seq=2, cpu="1"), task("first", seq=1, cpu="1")]
    plan = plan_for([node("a", cpu="1")], tasks)
    assert where(plan) == {"first": "a"} and deferred(plan) == {"second"}


def test_image_locality_scores_higher() -> None:
    cold, warm = node("a-cold", tags=["edge"]), node("b-warm", tags=["edge"], images=[IMAGE])
    plan = plan_for([cold, warm], [task("t")])
    assert where(plan) == {"t": "b-warm"}
    pinned = f"busybox@{DIGEST}"
    by_digest = node("b-digest", images=[DIGEST])
    assert where(plan_for([cold, by_digest], [task("t", image=pinned)])) == {"t": "b-digest"}


def test_image_locality_when_offloading() -> None:
    nodes = [*cluster(90), node("edge-3", tags=["edge"], cpu="8", memory="16Gi", images=[IMAGE])]
    assert where(plan_for(nodes, [task("t", origin=EDGE)])) == {"t": "edge-3"}


def test_lower_load_scores_higher() -> None:
    plan = plan_for([node("a", cpu_pct=60), node("b", cpu_pct=20)], [task("t")])
    assert where(plan) == {"t": "b"}


# -- committed requests ----------------------------------------------------------------------------------


def test_burst_from_one_origin_offloads_once_the_origin_is_committed() -> None:
    nodes = [node(EDGE, cpu="4", tags=["edge"]), node("cloud-1", tags=["low-util"], cpu="16", memory="64Gi")]
    burst = [task(f"b{i}", seq=i, origin=EDGE, cpu="1", cpu_limit="1") for i in range(8)]
    plan = plan_for(nodes, burst)
    kinds = [p.placement for p in sorted(plan.placements, key=lambda p: p.task_id)]
    # 3 × 1 cpu = 75% committed: from then on the origin counts as over threshold
    assert kinds == ["local"] * 3 + ["offload"] * 5
    assert plan.offload_mode == {EDGE: True}
    assert "offloaded: origin cpu 75% ≥ 75%" in reason(plan, "b3")


def test_a_placed_task_without_cpu_limit_counts_as_taking_all_idle_cpu() -> None:
    nodes = [node(EDGE, cpu="4", tags=["edge"]), node("cloud-1", tags=["low-util"], cpu="16", memory="64Gi")]
    burst = [task(f"b{i}", seq=i, origin=EDGE, cpu="100m") for i in range(4)]
    plan = plan_for(nodes, burst)
    kinds = [p.placement for p in sorted(plan.placements, key=lambda p: p.task_id)]
    # until a heartbeat shows what the first one really uses, the origin is assumed saturated
    assert kinds == ["local", "offload", "offload", "offload"]
    assert "origin cpu 100% ≥ 75%" in reason(plan, "b1")


def test_existing_commitments_count_as_origin_load() -> None:
    plan = plan_for(cluster(0), [task("t", origin=EDGE)], usage={EDGE: Usage(cpu_millis=3000, tasks=3)})
    assert where(plan) == {"t": "cloud-1"}


def test_plan_never_over_commits_a_node() -> None:
    tasks = [task(f"x{i}", seq=i, cpu="1", memory="1Gi") for i in range(10)]
    plan = plan_for([node("a", cpu="4", memory="3Gi")], tasks)
    assert len(plan.placements) == 3 and len(plan.deferrals) == 7
    assert all("insufficient memory" in d.reason for d in plan.deferrals)


def test_spread_across_equal_nodes() -> None:
    tasks = [task(f"s{i}", seq=i, cpu="100m") for i in range(4)]
    plan = plan_for([node("a"), node("b")], tasks)
    assert sorted(where(plan).values()) == ["a", "a", "b", "b"]


def test_plan_carries_the_snapshot_revision() -> None:
    snap = snapshot([node("a")], [task("t")])
    snap = type(snap)(nodes=snap.nodes, pending=snap.pending, usage={}, revision=42)
    assert schedule(snap, Policy(), NOW).revision == 42


def test_binpack_repair_moves_an_earlier_placement_to_make_room_for_a_zone_pinned_task() -> None:
    """Bin-packing puts the first, unconstrained task on the fuller node of zone a; the next task may only
    run in zone a and no longer fits there. The repair moves the first task (same task, still placed) to
    zone b, within the same pass, and both run; with the repair off the pinned task waits."""
    from updraft.model import Capacity, Node, ResourceList, Resources, Task, TaskSpec
    from updraft.scheduler import Policy, Snapshot, Usage, schedule

    def task(i: int, cpu: str, zone: str | None) -> Task:
        spec = TaskSpec(
            image="busybox",
            resources=Resources(requests=ResourceList(cpu=cpu, memory="64Mi")),
            node_selector={"zone": zone} if zone else {},
        )
        return Task(id=f"t{i}", spec=spec, submitted_seq=i)

    nodes = {
        "a1": Node(name="a1", capacity=Capacity(cpu_millis=2000, memory_bytes=2**30), labels={"zone": "a"}),
        "b1": Node(name="b1", capacity=Capacity(cpu_millis=4000, memory_bytes=2**30), labels={"zone": "b"}),
    }
    usage = {"a1": Usage(cpu_millis=500), "b1": Usage(cpu_millis=0)}
    pending = [task(1, "1000m", None), task(2, "1000m", "a")]
    policy = Policy(scoring="binpack")

    greedy = schedule(
        Snapshot(nodes=nodes, pending=pending, usage=usage), policy.model_copy(update={"repair_moves": 0}), NOW
    )
    assert [(p.task_id, p.node) for p in greedy.placements] == [("t1", "a1")]
    assert [d.task_id for d in greedy.deferrals] == ["t2"]

    plan = schedule(Snapshot(nodes=nodes, pending=pending, usage=usage), policy, NOW)
    assert {p.task_id: p.node for p in plan.placements} == {"t1": "b1", "t2": "a1"}
    assert not plan.deferrals
    moved = next(p for p in plan.placements if p.task_id == "t1")
    assert "moved from a1" in moved.reason and "t2" in moved.reason
    assert moved.code == Code.MOVED_FOR_ROOM
    assert next(p for p in plan.placements if p.task_id == "t2").code == Code.MADE_ROOM
