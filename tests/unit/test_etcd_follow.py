"""The follower's watch applier (no etcd: the events are built here as the gateway sends them): changes land in
``ClusterState`` by revision, never backwards, own commits are not applied twice, long-polls are woken, and the
leader key's deletion reaches the election."""

from __future__ import annotations

import base64
import json

from builders import node, task

from updraft.control.follow import Follower
from updraft.control.notify import Notifier
from updraft.control.state import ClusterState
from updraft.model import TaskState
from updraft.store import EtcdStore, Txn


def put(key: str, value: str, rev: int, create: int | None = None) -> dict[str, object]:
    kv = {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value.encode()).decode(),
          "mod_revision": str(rev), "create_revision": str(create or rev)}
    return {"kv": kv}


def setup() -> tuple[EtcdStore, ClusterState, Notifier, list[tuple[str | None, int]], Follower]:
    store = EtcdStore(["http://127.0.0.1:1"], prefix="/u/")  # never contacted: apply() is pure over the events
    state, notifier, seen = ClusterState(), Notifier(), []
    state.apply(Txn(nodes=[(node("n1"), 0)], tasks=[(task("t1"), 0)]), 5)
    return store, state, notifier, seen, Follower(store, state, notifier, lambda v, r: seen.append((v, r)))


def test_newer_changes_are_applied_and_wake_their_long_polls() -> None:
    _, state, notifier, _, follower = setup()
    placed = task("t1").model_copy(update={"state": TaskState.SCHEDULED, "node": "n1", "token": 3})
    before = (notifier.version("task:t1"), notifier.version("node:n1"))
    follower.apply([put("/u/tasks/t1", placed.model_dump_json(), 7), put("/u/counters/token", f"{3:020d}", 7)])
    held = state.tasks.get("t1")  # placed: kept as a compact record
    assert held is not None and held.state == TaskState.SCHEDULED and held.revision == 7 and held.token == 3
    assert state.counters["token"] == 3 and [t.id for t in state.on_node("n1")] == ["t1"]
    assert notifier.version("task:t1") > before[0] and notifier.version("node:n1") > before[1]
    assert follower.revision == 7


def test_older_changes_and_own_commits_are_not_applied_again() -> None:
    _, state, _, _, follower = setup()
    stale = task("t1").model_copy(update={"reason": "an older write"})
    follower.apply([put("/u/tasks/t1", stale.model_dump_json(), 4)])
    assert state.task("t1").reason != "an older write"  # type: ignore[union-attr]  # pending: whole in memory
    follower.revisions.take("tasks/t2", 9)  # this server's writer applied its own commit at revision 9 first
    follower.apply([put("/u/tasks/t2", task("t2").model_dump_json(), 9)])
    assert state.task("t2") is None


def test_the_writer_does_not_undo_a_newer_change_the_watch_applied_first() -> None:
    _, state, _, _, follower = setup()
    placed = task("t1").model_copy(update={"state": TaskState.SCHEDULED, "node": "n1", "token": 3})
    follower.apply([put("/u/tasks/t1", placed.model_dump_json(), 8)])  # another server placed it at revision 8
    late = Txn(tasks=[(task("t1").model_copy(update={"reason": "this server's earlier write"}), 5)])
    state.apply(follower.revisions.fresh(late, 6), 6)  # this server's commit at 6, applied by its writer late
    held = state.tasks.get("t1")
    assert held is not None and held.state == TaskState.SCHEDULED and held.revision == 8


def test_a_task_submitted_elsewhere_wakes_the_scheduler_and_the_leader_key_reaches_the_election() -> None:
    _, state, notifier, seen, follower = setup()
    before = notifier.version("scheduler")
    follower.apply([put("/u/tasks/t9", task("t9").model_dump_json(), 11)])
    assert state.task("t9") is not None and notifier.version("scheduler") > before
    follower.apply([put("/u/leader", json.dumps({"id": "s1", "url": "http://b"}), 12),
                    {"type": "DELETE", "kv": {"key": base64.b64encode(b"/u/leader").decode(), "mod_revision": "13"}}])
    assert seen == [('{"id": "s1", "url": "http://b"}', 12), (None, 0)]
