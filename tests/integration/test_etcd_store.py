"""EtcdStore against a real 3-member etcd: the same compare-and-set contract as the SQLite store (stale
revisions conflict, create means absent, idempotency keys, tokens strictly increasing), fencing by the leader
key's term, events and logs on the history lease, and a member down."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.cluster import wait_for
from tests.ha_cluster import EtcdCluster
from tests.unit.builders import NOW, node, task
from updraft.errors import Conflict, Unavailable
from updraft.model import Event, TaskState
from updraft.store import EtcdStore, Txn


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture
def store(etcd: EtcdCluster) -> Iterator[EtcdStore]:
    s = EtcdStore(etcd.endpoints, prefix=f"/t-{uuid.uuid4().hex[:8]}/", history_ttl=60)
    yield s
    s.close()


def ev(message: str, task_id: str | None = None) -> Event:
    return Event(at=NOW, kind="submitted", message=message, task_id=task_id)


def test_commit_stamps_mod_revisions_and_stale_revision_conflicts(store: EtcdStore) -> None:
    rev = store.commit(Txn(tasks=[(task("a"), 0)], nodes=[(node("n1"), 0)]))
    first = store.get_task("a")
    assert first is not None and first.revision == rev and store.get_node("n1").revision == rev  # type: ignore[union-attr]
    store.commit(Txn().put_task(first.model_copy(update={"reason": "winner"})))
    with pytest.raises(Conflict) as info:
        store.commit(Txn().put_task(first.model_copy(update={"reason": "loser"})))
    assert info.value.details == {"task_id": "a"}
    assert store.get_task("a").reason == "winner"  # type: ignore[union-attr]
    with pytest.raises(Conflict):  # revision 0 means "must not exist"
        store.commit(Txn(tasks=[(task("a"), 0)]))


def test_a_failed_compare_applies_nothing(store: EtcdStore) -> None:
    store.commit(Txn(tasks=[(task("a"), 0)]))
    with pytest.raises(Conflict):
        store.commit(Txn(tasks=[(task("b"), 0), (task("a"), 0)], events=[ev("never")]))
    assert store.get_task("b") is None and store.list_events() == []


def test_group_commit_fails_only_the_conflicting_txn(store: EtcdStore) -> None:
    results = store.commit_many([Txn(tasks=[(task("a"), 0)]), Txn(tasks=[(task("a"), 0)]), Txn(tasks=[(task("b"), 0)])])
    # the batch is sent at once: either of the two creates of "a" may win, never both
    assert sorted(type(r).__name__ for r in results[:2]) == ["Conflict", "int"] and isinstance(results[2], int)
    assert {t.id for t in store.list_tasks()} == {"a", "b"}


def test_idempotency_key_is_recorded_once_with_its_task(store: EtcdStore) -> None:
    store.commit(Txn(tasks=[(task("a"), 0)], idempotency=("k1", "a", "fp")))
    assert store.key_use("k1").task_id == "a"  # type: ignore[union-attr]
    with pytest.raises(Conflict) as info:
        store.commit(Txn(tasks=[(task("b"), 0)], idempotency=("k1", "b", "fp2")))
    assert info.value.details == {"key": "k1", "task_id": "a", "fingerprint": "fp"}
    assert store.get_task("b") is None


def test_token_floor_must_increase_and_seq_is_a_maximum(store: EtcdStore) -> None:
    store.commit(Txn(counters={"token": 5, "seq": 10}))
    assert (store.counter("token"), store.counter("seq")) == (5, 10)
    with pytest.raises(Conflict):  # a second leader issuing a token not above the stored one is refused
        store.commit(Txn(tasks=[(task("a"), 0)], counters={"token": 5}))
    assert store.get_task("a") is None
    store.commit(Txn(counters={"seq": 7}))  # submits on several servers: the counter keeps the maximum
    assert store.counter("seq") == 10
    assert store.next_tokens(3) == [6, 7, 8] and store.counter("token") == 8


def test_a_fenced_commit_fails_once_the_term_is_over(store: EtcdStore) -> None:
    leader = store.key("leader")
    store.txn([], [{"request_put": {"key": _b64(leader), "value": _b64("s0")}}])
    term = int(store.range(leader)[0][0]["create_revision"])
    view = store.fenced(term)
    assert isinstance(view.commit(Txn(tasks=[(task("a"), 0)])), int)
    store.txn([], [{"request_delete_range": {"key": _b64(leader)}}])  # the lease expired: the key is gone
    with pytest.raises(Unavailable) as info:
        view.commit(Txn(tasks=[(task("b"), 0)]))
    assert info.value.details["reason"] == "fenced"
    assert store.get_task("b") is None
    assert isinstance(store.commit(Txn(tasks=[(task("b"), 0)])), int)  # an unfenced (follower-safe) write goes on


def test_events_and_logs_are_numbered_in_commit_order(store: EtcdStore) -> None:
    store.commit(Txn(tasks=[(task("a"), 0)], events=[ev("one", "a"), ev("two", "a")]))
    store.commit(Txn(events=[ev("three")]))
    events = store.list_events()
    assert [e.message for e in events] == ["one", "two", "three"]
    assert [e.message for e in store.list_events(task_id="a")] == ["one", "two"]
    assert [e.message for e in store.list_events(after=events[0].id)] == ["two", "three"]
    store.append_logs("a", 1, [("stdout", NOW, "l1"), ("stdout", NOW, "l2")])
    store.append_logs("a", 1, [("stderr", NOW, "l3")])
    logs = store.list_logs("a")
    assert [ln.data for ln in logs] == ["l1", "l2", "l3"]
    assert [ln.data for ln in store.list_logs("a", after=logs[1].seq)] == ["l3"]


def test_live_tasks_filter_newest_first(store: EtcdStore) -> None:
    store.commit(Txn(tasks=[(task("a"), 0)]))
    store.commit(Txn(tasks=[(task("b").model_copy(update={"state": TaskState.RUNNING, "node": "n1"}), 0)]))
    assert [t.id for t in store.list_tasks()] == ["b", "a"]
    assert [t.id for t in store.list_tasks([TaskState.RUNNING], node="n1")] == ["b"]


def test_one_member_down_reads_and_writes_go_on(etcd: EtcdCluster) -> None:
    store = EtcdStore(etcd.endpoints, prefix=f"/t-{uuid.uuid4().hex[:8]}/")
    try:
        etcd.kill_member(0)  # the store's first endpoint

        def commit() -> bool:
            # A pooled connection to the dead member may break mid-request (503, outcome unknown), and if it was
            # etcd's Raft leader the others elect one first (≈ 1 s here): the caller resends, as clients do.
            try:
                store.commit(Txn(tasks=[(task("b"), 0)]))
            except Unavailable:
                return False
            except Conflict:  # an earlier attempt whose answer was lost did commit
                pass
            return True

        wait_for(commit, 20, interval=0.2, what="a write with member 0 down")
        assert store.get_task("b") is not None
    finally:
        etcd.start_member(0)
        wait_for(lambda: etcd.healthy(0), 30, what="member 0 healthy again")
        store.close()


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()
