"""The dashboard's pure parts: rows, bars, filters, flows, recorders, sessions (no server, no browser)."""

from __future__ import annotations

from updraft.model import Capacity, Event, EventKind, Node, NodeMetrics, NodeState, Taint, Task, TaskSpec, TaskState
from updraft.scheduler.policy import Policy
from updraft.ui.auth import Sessions
from updraft.ui.recorders import EventRing, FlowRecorder
from updraft.ui.views import (
    NO_ORIGIN,
    Bar,
    Flow,
    TaskFilter,
    age_text,
    fleet_changes,
    fleet_row,
    fleet_rows,
    fleet_summary,
    flow_of,
    flow_picture,
    summarize_flows,
    tone,
)

POLICY = Policy(threshold_cpu=75, threshold_memory=80)


def node(name: str, cpu: float = 10.0, **kw: object) -> Node:
    return Node(name=name, capacity=Capacity(cpu_millis=2000, memory_bytes=1 << 30),
                metrics=NodeMetrics(cpu_pct=cpu, memory_pct=20.0), **kw)  # type: ignore[arg-type]


def task(tid: str, origin: str | None = None, image: str = "busybox:1.36", **kw: object) -> Task:
    return Task(id=tid, spec=TaskSpec(image=image, origin=origin), **kw)  # type: ignore[arg-type]


def test_bars_are_drawn_against_the_offload_thresholds() -> None:
    assert Bar(50, 75).level == "ok"
    assert Bar(60, 75).level == "near"  # from 80 % of the threshold
    assert Bar(75, 75).level == "over"
    assert Bar(130, 75).width == 100 and Bar(-3, 75).width == 0
    assert Bar(10, 80.4).mark == 80


def test_a_fleet_row_says_what_the_page_shows() -> None:
    n = node("edge-1", cpu=91.4, tags=["edge"], labels={"zone": "a"}, cordoned=True, offloading=True,
             taints=[Taint(key="gpu", value="yes", effect="NoSchedule")], state=NodeState.SUSPECT)
    row = fleet_row(n, ["t-b", "t-a"], POLICY, jitter=0.0123)
    assert row.cpu == Bar(91, 75) and row.cpu.level == "over"
    assert row.memory == Bar(20, 80)
    assert row.flags == ("offloading", "cordoned")
    assert row.taints == ("gpu=yes:NoSchedule",)
    assert row.tasks == ("t-a", "t-b") and row.running == 2
    assert row.jitter_ms == 12
    assert "zone=a" in row.search and "suspect" in row.search and "cordoned" in row.search
    assert row.rtt_ms is None  # no heartbeat round trip reported yet
    beat = n.model_copy(update={"metrics": NodeMetrics(cpu_pct=91.4, memory_pct=20.0, rtt=0.0237)})
    assert fleet_row(beat, [], POLICY).rtt_ms == 24


def test_only_changed_rows_are_sent_and_gone_nodes_named() -> None:
    before = {r.name: r for r in fleet_rows([node("a"), node("b"), node("c")], lambda name: [], POLICY)}
    after = fleet_rows([node("a"), node("b", cpu=80.0)], lambda name: [], POLICY)
    changed, gone = fleet_changes(before, after)
    assert [r.name for r in changed] == ["b"] and gone == ["c"]
    # a heartbeat that moves the load by less than a percent changes nothing the page shows
    same = fleet_rows([node("a", cpu=10.3)], lambda name: [], POLICY)
    assert fleet_changes({"a": before["a"]}, same) == ([], [])


def test_fleet_summary_counts() -> None:
    rows = fleet_rows([node("a", cordoned=True), node("b", state=NodeState.UNREACHABLE)],
                      lambda name: ["t-1"] if name == "a" else [], POLICY)
    s = fleet_summary(rows)
    assert (s.nodes, s.cordoned, s.running, s.by_state) == (2, 1, 1, {"ready": 1, "unreachable": 1})


def test_task_filter_by_state_node_origin_and_search() -> None:
    a = task("t-aaa", origin="edge-1", image="registry:5000/app@sha256:" + "a" * 64, node="cloud", state=TaskState.RUNNING,
             image_tag="registry:5000/app:v2")
    b = task("t-bbb", origin="edge-2", state=TaskState.FAILED)
    f = TaskFilter.parse({"state": "running", "node": "cloud", "origin": "edge-1", "q": "APP:V2"})
    assert f.matches(a) and not f.matches(b)
    assert TaskFilter.parse({"q": "t-bb"}).apply([a, b], 10) == [b]
    assert TaskFilter.parse({"state": "no-such-state"}).state is None  # ignored, not refused
    assert TaskFilter.parse({}).apply([a, b], 1) == [a]


def test_flows_group_origin_to_target_with_codes() -> None:
    flows = [
        Flow(100, "t-1", "edge", "cloud", "offloaded", "offloaded-cpu"),
        Flow(101, "t-2", "edge", "cloud", "offloaded", "offloaded-cpu"),
        Flow(102, "t-3", "edge", "edge", "placed-local", "local-under-threshold"),
        Flow(103, "t-4", None, "cloud", "placed", "anywhere-best"),
        Flow(104, "t-5", "edge", None, "deferred", "no-node-fits"),
        Flow(10, "t-0", "edge", "cloud", "offloaded", "offloaded-cpu"),  # before the window
    ]
    s = summarize_flows(flows, since=50)
    assert [(p.origin, p.target, p.count) for p in s.pairs] == [
        ("edge", "cloud", 2), (NO_ORIGIN, "cloud", 1), ("edge", "edge", 1)]
    assert s.pairs[0].codes == {"offloaded-cpu": 2} and s.pairs[0].offloaded
    assert not s.pairs[2].offloaded and not s.pairs[1].offloaded
    assert s.deferred == {"no-node-fits": 1} and s.placed == 4
    pic = flow_picture(s)
    assert {b.name for b in pic.origins} == {"edge", NO_ORIGIN} and {b.name for b in pic.targets} == {"cloud", "edge"}
    widest = max(pic.links, key=lambda link: link.width)
    assert (widest.origin, widest.target, widest.count) == ("edge", "cloud", 2)
    assert "offloaded-cpu" in widest.title


def test_flow_picture_folds_the_tail_into_other() -> None:
    flows = [Flow(1, f"t-{i}", f"o-{i:02d}", "cloud", "offloaded", "offloaded-cpu") for i in range(50)]
    pic = flow_picture(summarize_flows(flows, 0), max_nodes=10)
    assert len(pic.origins) == 10 and pic.origins[-1].name == "(other)" and pic.origins[-1].count == 41


def test_flow_of_events() -> None:
    placed = Event(at=1, kind=EventKind.OFFLOADED, message="m", task_id="t-1", node="cloud", code="offloaded-cpu")
    assert flow_of(placed, "edge") == Flow(1, "t-1", "edge", "cloud", "offloaded", "offloaded-cpu")
    deferred = Event(at=2, kind=EventKind.DEFERRED, message="m", task_id="t-1", code="no-node-fits")
    assert flow_of(deferred, "edge") == Flow(2, "t-1", "edge", None, "deferred", "no-node-fits")
    assert flow_of(Event(at=3, kind=EventKind.STARTED, message="m", task_id="t-1"), None) is None
    assert tone(EventKind.OFFLOADED) == "offload" and tone(EventKind.FAILED) == "bad"


def test_flow_recorder_notes_origins_while_pending_and_drops_old_flows() -> None:
    pending = {"t-1": task("t-1", origin="edge")}
    rec = FlowRecorder(pending.get, window=60)
    rec(Event(at=100, kind=EventKind.SUBMITTED, message="m", task_id="t-1"))
    pending.clear()  # placed: no longer pending, kept as a compact record without its spec
    rec(Event(at=101, kind=EventKind.OFFLOADED, message="m", task_id="t-1", node="cloud", code="offloaded-cpu"))
    assert rec.since(0) == [Flow(101, "t-1", "edge", "cloud", "offloaded", "offloaded-cpu")]
    rec(Event(at=102, kind=EventKind.SUCCEEDED, message="m", task_id="t-1", node="cloud"))
    assert "t-1" not in rec._origins  # forgotten once finished
    rec(Event(at=200, kind=EventKind.PLACED, message="m", task_id="t-2", node="cloud"))
    assert [f.task_id for f in rec.since(0)] == ["t-2"]  # the flow at 101 left the 60 s window
    rec.note([task("t-3", origin="edge-9")])
    rec(Event(at=201, kind=EventKind.PLACED_LOCAL, message="m", task_id="t-3", node="edge-9"))
    assert rec.since(201)[0].origin == "edge-9"


def test_event_ring_numbers_events_and_keeps_the_newest() -> None:
    ring = EventRing(size=3)
    for i in range(5):
        ring(Event(at=i, kind=EventKind.NODE_READY, message=f"m{i}"))
    assert ring.last() == 5
    assert [n.seq for n in ring.after(0)] == [3, 4, 5]
    assert [n.event.message for n in ring.after(4)] == ["m4"]
    assert [n.seq for n in ring.after(0, limit=2)] == [4, 5]


def test_sessions_expire_when_idle_and_at_their_lifetime() -> None:
    now = [1000.0]
    sessions = Sessions(lambda: now[0], idle=60, lifetime=300, limit=2)
    s = sessions.create("tok")
    assert sessions.get(s.id) is s and s.csrf and s.csrf != s.id
    now[0] += 59
    assert sessions.get(s.id) is s  # seen: the idle clock restarts
    now[0] += 61
    assert sessions.get(s.id) is None
    s2 = sessions.create("tok")
    for _ in range(5):
        now[0] += 50
        assert sessions.get(s2.id) is s2
    now[0] += 50
    assert sessions.get(s2.id) is None  # 300 s after it was made, however active
    a, b, c = sessions.create(None), sessions.create(None), sessions.create(None)
    assert sessions.get(a.id) is None and sessions.get(b.id) is b and sessions.get(c.id) is c  # bounded
    assert sessions.get("x" * 500) is None


def test_age_text() -> None:
    assert [age_text(s) for s in (-1, 0.44, 9.96, 42.4, 300, 9000)] == [
        "0.0 s", "0.4 s", "10.0 s", "42 s", "5 min", "2.5 h"]
