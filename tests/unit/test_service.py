"""ControlService over a real SqliteStore and a FakeClock: submit, schedule, reports, fencing, drain."""

from __future__ import annotations

import pydantic
import pytest
from builders import exited, heartbeat, registration, running, spec

from updraft.clock import FakeClock
from updraft.control import ControlService
from updraft.errors import Conflict, NotFound, StaleToken, ValidationError
from updraft.model import NodeState, Task, TaskState
from updraft.model.api import AttemptReport, LabelChange, LogBatch, LogLine, NodeRegistration, TaintChange
from updraft.model.spec import Taint


def kinds(service: ControlService, task_id: str) -> list[str]:
    return [e.kind for e in service.store.list_events(task_id=task_id)]


def event(service: ControlService, task_id: str, kind: str) -> str:
    found = [e.message for e in service.store.list_events(task_id=task_id) if e.kind == kind]
    assert found, (kind, kinds(service, task_id))
    return found[-1]


def placed(service: ControlService, **spec_fields: object) -> Task:
    """Submit a task and run one scheduling pass; returns the task as stored."""
    t, _ = service.submit(spec(**spec_fields))  # type: ignore[arg-type]
    service.schedule_once()
    return service.task(t.id)


@pytest.fixture
def edge(service: ControlService) -> ControlService:
    """A busy-able edge origin, a low-util cloud target and an idle edge peer."""
    service.register("edge-1", registration(tags=["edge"]))
    service.register("cloud-1", registration(tags=["low-util"], cpu="8", memory="16Gi"))
    return service


# -- submit ------------------------------------------------------------------------------------------------


def test_submit_creates_a_pending_task_with_an_event(service: ControlService, fake_clock: FakeClock) -> None:
    t, created = service.submit(spec())
    assert created and t.state == TaskState.PENDING and t.created_at == fake_clock.now()
    assert service.task(t.id).spec == t.spec
    assert event(service, t.id, "submitted") == "submitted with no origin: busybox:1.36"


def test_submit_is_idempotent_by_key(service: ControlService) -> None:
    a, created_a = service.submit(spec(), key="k1")
    b, created_b = service.submit(spec(), key="k1")
    assert (created_a, created_b) == (True, False)
    assert b.id == a.id and b == service.task(a.id)
    with pytest.raises(Conflict) as info:  # the same key with another body is refused, as Stripe does
        service.submit(spec(image="other:1"), key="k1")
    assert info.value.details["task_id"] == a.id
    assert len(service.store.list_tasks()) == 1
    c, created_c = service.submit(spec(), key="k2")
    assert created_c and c.id != a.id


def test_submission_order_is_recorded(service: ControlService) -> None:
    seqs = [service.submit(spec())[0].submitted_seq for _ in range(3)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


def test_submit_with_unknown_origin_is_rejected(service: ControlService) -> None:
    with pytest.raises(ValidationError) as info:
        service.submit(spec(origin="nowhere"))
    assert info.value.details["field"] == "origin"


def test_unknown_task_and_node(service: ControlService) -> None:
    with pytest.raises(NotFound) as info:
        service.task("t-missing")
    assert info.value.details["field"] == "task_id"
    with pytest.raises(NotFound):
        service.node("n-missing")
    with pytest.raises(NotFound):
        service.cancel("t-missing")
    with pytest.raises(NotFound):
        service.drain("n-missing")


# -- nodes -----------------------------------------------------------------------------------------------


def test_register_and_reregister(service: ControlService, fake_clock: FakeClock) -> None:
    n = service.register("n1", registration(cpu="2", memory="1Gi", tags=["edge"], labels={"zone": "a"}))
    assert (n.capacity.cpu_millis, n.capacity.memory_bytes, n.state) == (2000, 2**30, NodeState.READY)
    fake_clock.advance(5)
    again = service.register("n1", registration(cpu="4"))
    assert again.capacity.cpu_millis == 4000 and again.registered_at == n.registered_at
    assert [e.message for e in service.store.list_events()][-1] == "node n1 re-registered"


@pytest.mark.parametrize(
    ("cpu", "memory", "field"), [("2", "12Zi", "memory"), ("abc", "1Gi", "cpu"), ("0", "1Gi", "cpu")]
)
def test_registration_rejects_bad_capacity_naming_the_field(cpu: str, memory: str, field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        NodeRegistration.model_validate({"capacity": {"cpu": cpu, "memory": memory}})
    assert [e["loc"] for e in info.value.errors()] == [("capacity", field)]


def test_node_commands(service: ControlService) -> None:
    service.register("n1", registration(labels={"zone": "a", "old": "x"}))
    assert service.cordon("n1").cordoned
    assert not service.cordon("n1", on=False).cordoned
    assert service.set_labels("n1", LabelChange(set={"arch": "arm"}, remove=["old"])).labels == {
        "zone": "a",
        "arch": "arm",
    }
    n = service.set_taints("n1", TaintChange(add=[Taint.parse("gpu=true:NoSchedule")]))
    assert [str(t) for t in n.taints] == ["gpu=true:NoSchedule"]
    assert service.set_taints("n1", TaintChange(remove=["gpu"])).taints == []
    assert service.set_node_state("n1", NodeState.SUSPECT, "phi 4.2").state == NodeState.SUSPECT


def test_heartbeat_updates_metrics_and_revives(service: ControlService, fake_clock: FakeClock) -> None:
    service.register("n1", registration())
    service.set_node_state("n1", NodeState.UNREACHABLE, "silent")
    fake_clock.advance(3)
    reply = service.heartbeat("n1", heartbeat(cpu_pct=42))
    service.writer.flush()  # the revival is written without making the heartbeat wait
    n = service.node("n1")
    assert reply.known and reply.stale == []
    assert n.state == NodeState.READY and n.metrics.cpu_pct == 42 and n.last_heartbeat == fake_clock.now()
    assert service.heartbeat("ghost", heartbeat()).known is False


# -- scheduling ------------------------------------------------------------------------------------------


def test_local_placement_when_origin_is_idle(edge: ControlService) -> None:
    t = placed(edge, origin="edge-1")
    assert (t.state, t.node, t.current.placement) == (TaskState.SCHEDULED, "edge-1", "local")  # type: ignore[union-attr]
    assert t.token is not None and t.current.token == t.token  # type: ignore[union-attr]
    assert event(edge, t.id, "placed-local").startswith("local: origin cpu 0% < 75%")
    assert [a.task_id for a in edge.assignments("edge-1")] == [t.id]


def test_busy_origin_offloads_with_reason(edge: ControlService) -> None:
    edge.heartbeat("edge-1", heartbeat(cpu_pct=91))
    t = placed(edge, origin="edge-1")
    assert t.node == "cloud-1" and t.current.placement == "offload"  # type: ignore[union-attr]
    msg = event(edge, t.id, "offloaded")
    assert msg.startswith("offloaded: origin cpu 91% ≥ 75%; target cloud-1 (score ")
    assert t.reason == msg
    assert edge.node("edge-1").offloading is True
    assert "edge-1 entered offload mode" in [e.message for e in edge.store.list_events()]


def test_deferral_is_recorded_once(service: ControlService) -> None:
    service.register("small", registration(cpu="1"))
    t, _ = service.submit(spec(cpu="2"))
    service.schedule_once()
    service.schedule_once()
    assert kinds(service, t.id).count("deferred") == 1
    assert service.task(t.id).reason == "0/1 nodes fit: 1 insufficient cpu (requested 2, largest free 1)"
    deferred = [e for e in service.store.list_events(task_id=t.id) if e.kind == "deferred"]
    assert deferred[0].code == "no-node-fits"  # the decision as data, beside the message


def test_tokens_are_unique_and_increasing(edge: ControlService) -> None:
    ids = [edge.submit(spec())[0].id for _ in range(4)]
    edge.schedule_once()
    tokens = [edge.task(i).token for i in ids]
    assert all(tok is not None for tok in tokens) and len(set(tokens)) == 4


# -- reports ---------------------------------------------------------------------------------------------


def test_running_then_succeeded(edge: ControlService) -> None:
    t = placed(edge, origin="edge-1")
    assert t.token is not None
    r = edge.report(t.id, t.token, running())
    assert r.state == TaskState.RUNNING and r.current.container_id == "c0ffee"  # type: ignore[union-attr]
    stored = edge.task(t.id).revision
    edge.report(t.id, t.token, running())  # a duplicate delivery writes nothing
    assert edge.task(t.id).revision == stored
    done = edge.report(t.id, t.token, exited(0))
    assert done.state == TaskState.SUCCEEDED and done.current.exit_code == 0  # type: ignore[union-attr]
    assert done.current.log_tail == "bye\n"  # type: ignore[union-attr]
    assert event(edge, t.id, "succeeded") == "succeeded on edge-1 (exit 0)"
    assert edge.report(t.id, t.token, exited(0)) == edge.task(t.id)  # a repeated report is a no-op
    with pytest.raises(Conflict):  # a different result for a finished attempt is refused
        edge.report(t.id, t.token, exited(1))  # type: ignore[arg-type]
    assert edge.task(t.id).current.exit_code == 0  # type: ignore[union-attr]
    assert edge.assignments("edge-1") == []


def test_failure_with_retries_gets_a_new_attempt_later(edge: ControlService, fake_clock: FakeClock) -> None:
    t = placed(edge, origin="edge-1", max_retries=2)
    first = t.token
    assert first is not None
    edge.report(t.id, first, running())
    r = edge.report(t.id, first, exited(3))
    assert (r.state, r.token, r.node, r.retries_used) == (TaskState.PENDING, None, None, 1)
    assert r.not_before > fake_clock.now()
    assert r.attempts[0].state == TaskState.FAILED and r.attempts[0].error == "exit code 3"
    assert event(edge, t.id, "retry").startswith("failed on edge-1 (exit code 3); retry 1/2 in ")

    edge.schedule_once()
    assert edge.task(t.id).state == TaskState.PENDING  # backoff not over yet
    fake_clock.advance(r.not_before - fake_clock.now() + 0.01)
    edge.schedule_once()
    again = edge.task(t.id)
    assert again.state == TaskState.SCHEDULED and again.token is not None and again.token > first
    assert [a.token for a in again.attempts] == [first, again.token]


def test_failure_without_retries_fails(edge: ControlService) -> None:
    t = placed(edge, origin="edge-1")
    assert t.token is not None
    r = edge.report(t.id, t.token, exited(2))
    assert r.state == TaskState.FAILED and r.reason == "exit code 2"
    assert event(edge, t.id, "failed") == "failed on edge-1: exit code 2"


def test_oom_killed_reason(edge: ControlService) -> None:
    t = placed(edge, origin="edge-1")
    assert t.token is not None
    r = edge.report(t.id, t.token, exited(137, oom=True))
    assert r.state == TaskState.FAILED and r.reason == "OOMKilled (exit 137)"
    assert r.current.oom_killed is True  # type: ignore[union-attr]
    assert "OOMKilled" in event(edge, t.id, "failed")


def test_oom_kill_with_exit_zero_is_still_a_failure(edge: ControlService) -> None:
    t = placed(edge, origin="edge-1")
    assert edge.report(t.id, t.token, exited(0, oom=True)).state == TaskState.FAILED  # type: ignore[arg-type]


def test_error_report(edge: ControlService) -> None:
    t = placed(edge, origin="edge-1")
    r = edge.report(t.id, t.token, AttemptReport(state="error", error="image not found"))  # type: ignore[arg-type]
    assert r.state == TaskState.FAILED and r.reason == "image not found"


def test_stale_token_is_refused_recorded_and_changes_nothing(edge: ControlService, fake_clock: FakeClock) -> None:
    t = placed(edge, origin="edge-1", max_retries=1)
    old = t.token
    assert old is not None
    edge.report(t.id, old, exited(1))
    fake_clock.advance(120)
    edge.schedule_once()
    current = edge.task(t.id)
    assert current.token is not None and current.token > old
    with pytest.raises(StaleToken) as info:
        edge.report(t.id, old, exited(0))
    assert info.value.details == {"task_id": t.id, "token": old, "current": current.token}
    assert edge.task(t.id) == current
    edge.writer.flush()
    stale = [e for e in edge.store.list_events(task_id=t.id) if e.kind == "stale-report"]
    assert len(stale) == 1 and stale[0].token == old
    assert stale[0].message == f"stale report (exited) from token {old} ignored (current token {current.token})"
    with pytest.raises(StaleToken):
        edge.append_logs(t.id, old, LogBatch(lines=[LogLine(at=1.0, data="late")]))
    assert edge.store.list_logs(t.id) == []


def test_logs_from_the_current_attempt(edge: ControlService) -> None:
    t = placed(edge, origin="edge-1")
    batch = LogBatch(lines=[LogLine(at=1.0, data="a\n"), LogLine(stream="stderr", at=2.0, data="b\n")])
    assert edge.append_logs(t.id, t.token, batch) == 2  # type: ignore[arg-type]
    assert [(x.stream, x.data) for x in edge.store.list_logs(t.id)] == [("stdout", "a\n"), ("stderr", "b\n")]


# -- cancel and drain ----------------------------------------------------------------------------------


def test_cancel(edge: ControlService) -> None:
    pending, _ = edge.submit(spec(cpu="64"))
    c = edge.cancel(pending.id)
    assert c.state == TaskState.CANCELLED and c.reason == "cancelled by user"
    assert edge.cancel(pending.id) == edge.task(pending.id)  # cancelling twice is a no-op
    assert kinds(edge, pending.id).count("cancelled") == 1

    t = placed(edge, origin="edge-1")
    assert edge.cancel(t.id).state == TaskState.CANCELLED
    assert edge.assignments("edge-1") == []  # so the agent stops the container
    after = edge.report(t.id, t.token, exited(0))  # type: ignore[arg-type]
    assert after.state == TaskState.CANCELLED and after.current.exit_code == 0  # type: ignore[union-attr]


def test_drain_requeues_and_retires_the_token(edge: ControlService) -> None:
    edge.register("edge-2", registration(tags=["edge"]))
    t = placed(edge, origin="edge-1")
    old = t.token
    assert old is not None and t.node == "edge-1"
    edge.report(t.id, old, running())

    n = edge.drain("edge-1")
    assert n.cordoned and n.draining
    r = edge.task(t.id)
    assert (r.state, r.token, r.node, r.drifted_from, r.excluded_nodes) == (TaskState.PENDING, None, None, "edge-1", [])
    assert r.attempts[-1].state == TaskState.CANCELLED
    assert event(edge, t.id, "drifted") == "drifted from edge-1: node drained"
    assert edge.assignments("edge-1") == []
    with pytest.raises(StaleToken):
        edge.report(t.id, old, exited(0))

    edge.schedule_once()
    moved = edge.task(t.id)
    assert moved.node not in (None, "edge-1") and moved.token is not None and moved.token > old


def test_heartbeat_returns_stale_pairs_for_superseded_tokens(edge: ControlService) -> None:
    t = placed(edge, origin="edge-1")
    old = t.token
    assert old is not None
    assert edge.heartbeat("edge-1", heartbeat(running=[(t.id, old)])).stale == []
    edge.drain("edge-1")
    reply = edge.heartbeat("edge-1", heartbeat(running=[(t.id, old), ("t-unknown", 3)]))
    assert reply.stale == [(t.id, old), ("t-unknown", 3)]
    edge.schedule_once()
    new = edge.task(t.id)
    assert new.node is not None and new.token is not None
    # the new copy's node must not vouch for the old token either
    assert edge.heartbeat(new.node, heartbeat(running=[(t.id, old)])).stale == [(t.id, old)]
    assert edge.heartbeat(new.node, heartbeat(running=[(t.id, new.token)])).stale == []


def test_committed_usage_spills_a_burst(edge: ControlService) -> None:
    ids = [edge.submit(spec(origin="edge-1", cpu="1", cpu_limit="1"))[0].id for _ in range(6)]
    edge.schedule_once()
    nodes = [edge.task(i).node for i in ids]
    assert nodes.count("edge-1") == 3 and nodes.count("cloud-1") == 3


def test_the_applier_uses_the_decided_task_only_while_the_state_holds_it_unchanged(service: ControlService) -> None:
    """A pass hands the applier the tasks it decided on, so they are not parsed again; one that changed since
    (a newer revision in the state) is re-read, and one that left the queue is not placed at all."""
    from updraft.control.applier import apply_plan
    from updraft.scheduler import Placement, Plan
    from updraft.store import Txn

    service.register("n1", registration())
    same, _ = service.submit(spec())
    changed, _ = service.submit(spec())
    gone, _ = service.submit(spec())
    # copies, not the state's own objects, so which one the applier used shows
    decided = {t.id: Task.model_validate_json(service.task(t.id).model_dump_json()) for t in (same, changed, gone)}
    service._commit(
        Txn().put_task(
            decided[changed.id].model_copy(update={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
        )
    )
    service.cancel(gone.id)
    plan = Plan(placements=[Placement(t.id, "n1", "anywhere", "best node n1", 1.0) for t in (same, changed, gone)])
    _, placed = apply_plan(service.state, plan, service.clock.now(), decided)
    by_id = {t.id: t for t in placed}
    assert set(by_id) == {same.id, changed.id}  # the cancelled one is not placed
    assert by_id[same.id].spec is decided[same.id].spec  # taken as decided, not parsed again
    assert by_id[changed.id].traceparent is not None and decided[changed.id].traceparent is None  # re-read
