"""The control plane's structure under load, without I/O beyond SQLite: heartbeats in memory, one commit path,
pinned tasks never stranded, every pending task considered oldest first, bounded admission."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import pytest
from builders import exited, heartbeat, registration, running, spec
from starlette.types import Message, Receive, Scope, Send

from updraft.clock import FakeClock
from updraft.control import ControlService
from updraft.control.edge import Admission
from updraft.control.failover import check_nodes, drift
from updraft.errors import Busy
from updraft.model import Event, EventKind, NodeState, TaskState
from updraft.settings import ServerSettings
from updraft.store import SqliteStore


def make(tmp_path: Path, clock: FakeClock, **settings: object) -> ControlService:
    store = SqliteStore(tmp_path / "u.db")
    return ControlService(store, ServerSettings(data_dir=tmp_path, **settings), clock, rng=random.Random(0))  # type: ignore[arg-type]


def test_heartbeats_stay_in_memory_until_the_slow_flush(tmp_path: Path, fake_clock: FakeClock) -> None:
    svc = make(tmp_path, fake_clock, node_flush_seconds=30)
    svc.register("n1", registration())
    rev = svc.store.revision()
    for i in range(20):
        fake_clock.advance(1)
        svc.heartbeat("n1", heartbeat(cpu_pct=i))
    svc.writer.flush()
    assert svc.store.revision() == rev  # twenty beats, not one write
    assert svc.node("n1").metrics.cpu_pct == 19 and svc.node("n1").last_heartbeat == fake_clock.now()
    svc.heartbeat("n1", heartbeat(cpu_pct=19).model_copy(update={"rtt": 0.012}))
    assert svc.node("n1").metrics.rtt == 0.012  # the agent's measured round trip, for the dashboard
    assert svc.store.get_node("n1").metrics.cpu_pct == 0  # type: ignore[union-attr]
    assert svc.flush_liveness() == 0  # 20 s since the last write: not due yet
    fake_clock.advance(11)
    svc.heartbeat("n1", heartbeat(cpu_pct=55))
    assert svc.flush_liveness() == 1
    stored = svc.store.get_node("n1")
    assert stored is not None and stored.metrics.cpu_pct == 55 and stored.last_heartbeat == fake_clock.now()
    svc.close()


def test_new_facts_are_written_and_a_revival_reaches_every_listener(tmp_path: Path, fake_clock: FakeClock) -> None:
    svc = make(tmp_path, fake_clock)
    seen: list[Event] = []
    svc.listeners.append(seen.append)
    svc.register("n1", registration())
    svc.set_node_state("n1", NodeState.UNREACHABLE, "silent")
    svc.heartbeat("n1", heartbeat().model_copy(update={"images": ["busybox:1.36"]}))
    svc.writer.flush()
    assert [e.kind for e in seen] == [EventKind.NODE_REGISTERED, EventKind.NODE_UNREACHABLE, EventKind.NODE_READY]
    stored = svc.store.get_node("n1")
    assert stored is not None and stored.state == NodeState.READY and stored.images == ["busybox:1.36"]
    assert svc.node("n1") == stored  # memory and store agree, revision included
    svc.close()


def cluster(tmp_path: Path, clock: FakeClock) -> ControlService:
    svc = make(tmp_path, clock)
    svc.register("edge-1", registration(tags=["edge"]))
    svc.register("cloud-1", registration(tags=["low-util"], cpu="8", memory="16Gi"))
    return svc


def test_a_pinned_task_never_drifts_off_its_unreachable_origin(tmp_path: Path, fake_clock: FakeClock) -> None:
    svc = cluster(tmp_path, fake_clock)
    pinned, _ = svc.submit(spec(origin="edge-1", offloadable=False, cpu_limit="100m"))
    free, _ = svc.submit(spec(origin="edge-1", cpu_limit="100m"))
    svc.schedule_once()
    p0, f0 = svc.task(pinned.id), svc.task(free.id)
    assert p0.node == f0.node == "edge-1"
    assert p0.token is not None and f0.token is not None
    svc.report(pinned.id, p0.token, running("c-pinned"))
    fake_clock.advance(10)  # edge-1 silent: the detector judges it unreachable
    svc.heartbeat("cloud-1", heartbeat())
    check_nodes(svc)
    assert svc.node("edge-1").state == NodeState.UNREACHABLE
    assert drift(svc) == 1  # only the offloadable one
    svc.schedule_once()
    p1, f1 = svc.task(pinned.id), svc.task(free.id)
    assert (p1.state, p1.node, p1.token, p1.current.container_id) == (  # type: ignore[union-attr]
        TaskState.RUNNING, "edge-1", p0.token, "c-pinned"
    )
    assert f1.node == "cloud-1" and f1.token is not None and f1.token > f0.token and f1.excluded_nodes == []
    (moved,) = [e for e in svc.store.list_events(task_id=free.id) if e.kind == EventKind.MIGRATED]
    assert moved.message.startswith("drifted from edge-1 to cloud-1: edge-1 unreachable for 10.0 s; ")
    # the agent comes back: the same attempt is still its to run and to finish
    svc.heartbeat("edge-1", heartbeat(running=[(pinned.id, p0.token)]))
    svc.writer.flush()
    assert svc.node("edge-1").state == NodeState.READY
    assert [a.task_id for a in svc.assignments("edge-1")] == [pinned.id]
    done = svc.report(pinned.id, p0.token, exited(0))
    assert done.state == TaskState.SUCCEEDED and [a.token for a in done.attempts] == [p0.token]
    svc.close()


def test_drain_leaves_pinned_tasks_and_moves_the_rest(tmp_path: Path, fake_clock: FakeClock) -> None:
    svc = cluster(tmp_path, fake_clock)
    pinned, _ = svc.submit(spec(origin="edge-1", offloadable=False, cpu_limit="100m"))
    free, _ = svc.submit(spec(origin="edge-1", cpu_limit="100m"))
    svc.schedule_once()
    assert svc.task(free.id).node == "edge-1"
    token = svc.task(pinned.id).token
    node = svc.drain("edge-1")
    assert node.draining
    svc.schedule_once()
    assert (svc.task(pinned.id).node, svc.task(pinned.id).token) == ("edge-1", token)
    moved = svc.task(free.id)
    assert moved.node == "cloud-1" and moved.state == TaskState.SCHEDULED
    events = [e for e in svc.store.list_events(task_id=free.id) if e.kind == EventKind.MIGRATED]
    assert len(events) == 1 and events[0].message.startswith("drifted from edge-1 to cloud-1: node drained; ")
    drain_events = [e.message for e in svc.store.list_events() if e.kind == EventKind.NODE_DRAINING]
    assert drain_events == ["node edge-1 draining; 1 task(s) pinned to it stay"]
    svc.close()


def test_every_pending_task_is_considered_in_turn_and_the_oldest_first(tmp_path: Path, fake_clock: FakeClock) -> None:
    svc = make(tmp_path, fake_clock, scheduler_batch=5)
    svc.register("n1", registration(cpu="4"))
    big = [svc.submit(spec(cpu="64"))[0] for _ in range(12)]  # fit nowhere
    whole = [svc.submit(spec(cpu="4"))[0] for _ in range(3)]  # one at a time fits
    small, _ = svc.submit(spec(cpu="100m"))
    placed: list[str] = []
    for _ in range(4):  # 12 big tasks deferred five at a time, then the ones that fit
        svc.schedule_once()
        placed = [t.id for t in svc.state.list_tasks([TaskState.SCHEDULED])]
        if placed:
            break
    assert placed == [whole[0].id]  # the oldest of the tasks that fit, although more are pending than a batch
    assert all(svc.task(t.id).state == TaskState.PENDING for t in big)
    svc.report(whole[0].id, svc.task(whole[0].id).token, exited(0))  # type: ignore[arg-type]
    for _ in range(4):  # the finished task freed room: every pending task is decided again, oldest first
        svc.schedule_once()
    assert svc.task(whole[1].id).state == TaskState.SCHEDULED and svc.task(whole[2].id).state == TaskState.PENDING
    assert svc.task(small.id).state == TaskState.PENDING  # FIFO within a priority: it waits its turn behind whole[2]
    svc.close()


def test_a_task_that_fits_nowhere_is_decided_again_with_backoff_or_at_once_when_the_cluster_changes(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """Deferred again and again on an unchanged cluster, a task is decided after 5 s, then 10, 20, 40, then
    every 60 s (scheduler_interval 0.5 s): a long backlog costs a pass next to nothing. A change that could make
    it fit (a node joins) has it decided at the next pass."""
    svc = make(tmp_path, fake_clock, scheduler_interval=0.5)
    svc.register("n1", registration(cpu="4"))
    big, _ = svc.submit(spec(cpu="64"))
    decided: list[float] = []
    start = fake_clock.now()
    while fake_clock.now() - start < 200:
        if big.id in [t.id for t in svc.eligible(fake_clock.now())]:
            decided.append(round(fake_clock.now() - start, 1))
            svc.schedule_once()
            assert svc.task(big.id).state == TaskState.PENDING
        fake_clock.advance(0.5)
    assert decided == [0.0, 5.0, 15.0, 35.0, 75.0, 135.0, 195.0]
    assert svc.more_to_schedule() is False  # nothing due: the loop does not spin on the backlog
    svc.register("n2", registration(cpu="64"))  # a node that fits joins: the epoch moves
    assert [t.id for t in svc.eligible(fake_clock.now())] == [big.id]
    svc.schedule_once()
    assert svc.task(big.id).state == TaskState.SCHEDULED and svc.task(big.id).node == "n2"
    svc.close()


def test_a_full_backlog_answers_busy_with_retry_after(tmp_path: Path, fake_clock: FakeClock) -> None:
    svc = make(tmp_path, fake_clock, max_pending_tasks=3)
    for _ in range(3):
        svc.submit(spec(cpu="64"))
    with pytest.raises(Busy) as info:
        svc.submit(spec(cpu="64"))
    assert info.value.status == 429 and info.value.details["retry_after"] > 0
    assert len(svc.store.list_tasks()) == 3
    svc.close()


def test_the_writer_batches_concurrent_commits(tmp_path: Path, fake_clock: FakeClock) -> None:
    svc = make(tmp_path, fake_clock)
    gate = threading.Barrier(16)

    def submit_some() -> None:
        gate.wait()
        for _ in range(20):
            svc.submit(spec())

    threads = [threading.Thread(target=submit_some) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(svc.store.list_tasks(limit=1000)) == 320 == svc.state.pending_count()
    assert svc.writer.commits >= 320 and svc.writer.batches < svc.writer.commits
    seqs = sorted(t.submitted_seq for t in svc.state.pending())
    assert seqs == list(range(1, 321))  # every submit got its own sequence number
    svc.close()


def test_admission_refuses_beyond_the_limit_before_reading_the_body() -> None:
    release = asyncio.Event()
    served: list[str] = []

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        served.append(scope["path"])
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    admission = Admission(slow_app, {"submit": 1, "read": 5}, retry_after=2)

    async def call(method: str, path: str) -> tuple[int, dict[bytes, bytes]]:
        out: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: Message) -> None:
            out.append(message)

        await admission({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
        return out[0]["status"], dict(out[0]["headers"])

    async def scenario() -> None:
        first = asyncio.create_task(call("POST", "/v1/tasks"))
        await asyncio.sleep(0)
        status, headers = await call("POST", "/v1/tasks")
        assert (status, headers[b"retry-after"]) == (429, b"2")
        heartbeat_task = asyncio.create_task(call("POST", "/v1/nodes/n1/heartbeat"))  # agent traffic: never refused
        await asyncio.sleep(0)
        release.set()
        assert (await first)[0] == 201 and (await heartbeat_task)[0] == 201
        assert admission.refused == {"submit": 1, "read": 0} and admission.inflight == {"submit": 0, "read": 0}

    asyncio.run(scenario())
    assert served == ["/v1/tasks", "/v1/nodes/n1/heartbeat"]


def test_with_offload_disabled_a_dead_origins_task_still_moves(tmp_path: Path, fake_clock: FakeClock) -> None:
    """enable_offload is a load decision; a task whose origin is gone is placed anywhere all the same."""
    svc = make(tmp_path, fake_clock, policy={"enable_offload": False})
    svc.register("a", registration())
    svc.register("b", registration())
    free, _ = svc.submit(spec(origin="a", cpu_limit="100m"))
    pinned, _ = svc.submit(spec(origin="a", offloadable=False, cpu_limit="100m"))
    svc.schedule_once()
    assert svc.task(free.id).node == svc.task(pinned.id).node == "a"
    fake_clock.advance(10)
    svc.heartbeat("b", heartbeat())
    check_nodes(svc)
    drift(svc)
    svc.schedule_once()
    moved = svc.task(free.id)
    assert (moved.node, moved.state) == ("b", TaskState.SCHEDULED)
    assert moved.current is not None and moved.current.reason.startswith("origin a is unreachable; target b")
    assert svc.task(pinned.id).node == "a"  # pinned: it waits for its origin, its attempt intact
    svc.close()


def test_assignments_are_served_from_a_cache_of_unchanging_attempts(tmp_path: Path, fake_clock: FakeClock) -> None:
    import json

    from updraft.model.api import Assignments

    svc = cluster(tmp_path, fake_clock)
    ids = [svc.submit(spec(origin="edge-1", cpu_limit="100m"))[0].id for _ in range(3)]
    svc.schedule_once()
    expected = Assignments(index=7, assignments=svc.assignments("edge-1")).model_dump(mode="json")
    assert json.loads(svc.assignments_json("edge-1", 7)) == expected and len(expected["assignments"]) == 3
    reads: list[str] = []
    real = svc.store.get_task
    svc.store.get_task = lambda task_id: reads.append(task_id) or real(task_id)  # type: ignore[method-assign]
    assert json.loads(svc.assignments_json("edge-1", 7)) == expected
    assert reads == []  # the second wake-up reads nothing from the store
    svc.cancel(ids[0])
    reads.clear()  # the cancel itself read its task
    after = json.loads(svc.assignments_json("edge-1", 8))
    assert sorted(a["task_id"] for a in after["assignments"]) == sorted(ids[1:]) and reads == []
    svc.close()
