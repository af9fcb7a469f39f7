"""SqliteStore: compare-and-set commits, group commit, atomicity, counters, idempotency keys, events, logs, WAL,
isolation of unreadable records, file modes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from builders import NOW, node, task

from updraft.errors import Conflict
from updraft.model import Event, TaskState
from updraft.store import KeyUse, SqliteStore, Txn


def ev(message: str, task_id: str | None = None, kind: str = "submitted") -> Event:
    return Event(at=NOW, kind=kind, message=message, task_id=task_id)


def count(store: SqliteStore, table: str) -> int:
    return int(store._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_fresh_store_is_empty(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    assert s.revision() == 0
    assert (s.list_nodes(), s.list_tasks(), s.list_events()) == ([], [], [])
    assert s.get_task("nope") is None and s.get_node("nope") is None and s.key_use("k") is None


def test_commit_creates_and_stamps_revisions(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    rev = s.commit(Txn(tasks=[(task("a"), 0)], nodes=[(node("n1"), 0)]))
    assert rev == 1 == s.revision()
    assert s.get_task("a").revision == 1  # type: ignore[union-attr]
    assert s.get_node("n1").revision == 1  # type: ignore[union-attr]
    assert s.commit(Txn(events=[ev("only an event")])) == 2


def test_cas_update_with_current_revision(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    s.commit(Txn(tasks=[(task("a"), 0)]))
    read = s.get_task("a")
    assert read is not None
    s.commit(Txn().put_task(read.model_copy(update={"reason": "updated"})))
    again = s.get_task("a")
    assert again is not None and again.reason == "updated" and again.revision == 2


def test_stale_revision_conflicts(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    s.commit(Txn(tasks=[(task("a"), 0)]))
    first = s.get_task("a")
    assert first is not None
    s.commit(Txn().put_task(first.model_copy(update={"reason": "winner"})))
    with pytest.raises(Conflict) as info:
        s.commit(Txn().put_task(first.model_copy(update={"reason": "loser"})))
    assert info.value.details == {"task_id": "a"}
    assert s.get_task("a").reason == "winner"  # type: ignore[union-attr]


def test_create_of_an_existing_key_conflicts(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    s.commit(Txn(tasks=[(task("a"), 0)], nodes=[(node("n1"), 0)]))
    with pytest.raises(Conflict):
        s.commit(Txn(tasks=[(task("a"), 0)]))
    with pytest.raises(Conflict) as info:
        s.commit(Txn(nodes=[(node("n1", cpu="8"), 0)]))
    assert info.value.details == {"node": "n1"}
    assert s.get_node("n1").capacity.cpu_millis == 4000  # type: ignore[union-attr]


def test_a_failed_compare_writes_nothing_of_the_txn(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    s.commit(Txn(tasks=[(task("a"), 0)], nodes=[(node("n1"), 0)]))
    n1 = s.get_node("n1")
    assert n1 is not None
    before = (s.revision(), count(s, "events"), count(s, "idempotency"))
    txn = Txn(
        tasks=[(task("new"), 0), (task("a"), 7)],  # the second compare fails
        nodes=[(n1.model_copy(update={"cordoned": True}), n1.revision), (node("n2"), 0)],
        events=[ev("should not appear", "new")],
        idempotency=("key-1", "new", "fp"),
    )
    with pytest.raises(Conflict):
        s.commit(txn)
    assert (s.revision(), count(s, "events"), count(s, "idempotency")) == before
    assert s.get_task("new") is None and s.get_node("n2") is None
    assert s.get_node("n1").cordoned is False  # type: ignore[union-attr]
    assert s.key_use("key-1") is None


def test_counters_strictly_increase_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db" / "updraft.db"  # the parent directory is created
    s = SqliteStore(path)
    first = s.next_tokens(3)
    s.commit(Txn(events=[ev("uses token 9 and seq 4")], counters={"token": 9, "seq": 4}))
    s.commit(Txn(events=[ev("a floor never lowers a counter")], counters={"token": 5}))
    s.close()
    s = SqliteStore(path)
    assert first == [1, 2, 3] and (s.counter("token"), s.counter("seq")) == (9, 4)
    assert s.next_tokens(2) == [10, 11]
    s.close()


def test_data_survives_reopen(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "u.db")
    s.commit(Txn(tasks=[(task("a"), 0)], events=[ev("hello", "a")], idempotency=("k", "a", "fp")))
    s.close()
    s = SqliteStore(tmp_path / "u.db", durable=True)
    assert s.revision() == 1 and s.get_task("a") is not None and s.key_use("k") == KeyUse("a", "fp")
    assert [e.message for e in s.list_events()] == ["hello"]
    s.close()


def test_idempotency_key(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    s.commit(Txn(tasks=[(task("a"), 0)], idempotency=("submit-1", "a", "fp-a")))
    assert s.key_use("submit-1") == KeyUse("a", "fp-a")
    assert s.key_use("submit-2") is None


def test_a_reused_idempotency_key_conflicts_and_writes_nothing(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    s.commit(Txn(tasks=[(task("a"), 0)], idempotency=("submit-1", "a", "fp-a")))
    with pytest.raises(Conflict) as info:
        s.commit(Txn(tasks=[(task("b"), 0)], idempotency=("submit-1", "b", "fp-b"), events=[ev("dup", "b")]))
    assert info.value.details == {"key": "submit-1", "task_id": "a", "fingerprint": "fp-a"}
    assert s.get_task("b") is None and s.key_use("submit-1") == KeyUse("a", "fp-a") and s.revision() == 1
    assert s.list_events() == []


def test_list_tasks_filters(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    s.commit(
        Txn(
            tasks=[
                (task("p1"), 0),
                (task("p2"), 0),
                (task("r1", state=TaskState.RUNNING).model_copy(update={"node": "n1"}), 0),
                (task("s1", state=TaskState.SCHEDULED).model_copy(update={"node": "n2"}), 0),
            ]
        )
    )
    assert {t.id for t in s.list_tasks([TaskState.PENDING])} == {"p1", "p2"}
    assert {t.id for t in s.list_tasks([TaskState.RUNNING, TaskState.SCHEDULED])} == {"r1", "s1"}
    assert [t.id for t in s.list_tasks(node="n1")] == ["r1"]
    assert s.list_tasks([TaskState.PENDING], node="n1") == []
    assert len(s.list_tasks(limit=3)) == 3 and len(s.list_tasks()) == 4


def test_list_nodes_sorted_by_name(sqlite_store: SqliteStore) -> None:
    sqlite_store.commit(Txn(nodes=[(node("b"), 0), (node("a"), 0), (node("c"), 0)]))
    assert [n.name for n in sqlite_store.list_nodes()] == ["a", "b", "c"]


def test_events_listing(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    s.commit(Txn(events=[ev("one", "a"), ev("two", "b")]))
    s.commit(
        Txn(
            events=[
                ev("three", "a", kind="started"),
                Event(at=NOW, kind="node-ready", message="four", node="n1", token=9, code="c"),
            ]
        )
    )
    every = s.list_events()
    assert [e.message for e in every] == ["one", "two", "three", "four"]
    assert [e.id for e in every] == sorted(e.id for e in every) and len({e.id for e in every}) == 4
    assert [e.message for e in s.list_events(task_id="a")] == ["one", "three"]
    assert [e.message for e in s.list_events(after=every[1].id)] == ["three", "four"]
    assert [e.message for e in s.list_events(limit=1)] == ["one"]
    last = every[-1]
    assert (last.node, last.token, last.task_id, last.at, last.code) == ("n1", 9, None, NOW, "c")


def test_logs_listing(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    assert s.append_logs("a", 1, [("stdout", 1.0, "hello\n"), ("stderr", 2.0, "oops\n")]) == 2
    s.append_logs("b", 4, [("stdout", 3.0, "other task\n")])
    s.append_logs("a", 2, [("stdout", 4.0, "second attempt\n")])
    lines = s.list_logs("a")
    assert [(x.token, x.stream, x.at, x.data) for x in lines] == [
        (1, "stdout", 1.0, "hello\n"),
        (1, "stderr", 2.0, "oops\n"),
        (2, "stdout", 4.0, "second attempt\n"),
    ]
    assert all(x.task_id == "a" for x in lines)
    assert [x.data for x in s.list_logs("a", after=lines[0].seq)] == ["oops\n", "second attempt\n"]
    assert len(s.list_logs("a", limit=1)) == 1
    assert s.list_logs("missing") == []


def test_wal_mode_is_on(sqlite_store: SqliteStore) -> None:
    conn = sqlite3.connect(sqlite_store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_second_connection_sees_committed_data(tmp_path: Path) -> None:
    a, b = SqliteStore(tmp_path / "u.db"), SqliteStore(tmp_path / "u.db")
    a.commit(Txn(tasks=[(task("x"), 0)]))
    assert b.get_task("x") is not None and b.revision() == 1
    stale = b.get_task("x")
    a.commit(Txn().put_task(a.get_task("x").model_copy(update={"reason": "a"})))  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        b.commit(Txn().put_task(stale))  # type: ignore[arg-type]
    assert b.next_tokens(1) == [1] and a.next_tokens(1) == [2]
    a.close()
    b.close()


def test_group_commit_fails_only_the_txn_whose_compare_failed(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    s.commit(Txn(tasks=[(task("a"), 0)]))
    results = s.commit_many(
        [
            Txn(tasks=[(task("b"), 0)], events=[ev("b created", "b")]),
            Txn(tasks=[(task("a"), 0)], events=[ev("must not appear", "a")]),  # a exists: compare fails
            Txn(tasks=[(task("c"), 0)]),
        ]
    )
    assert results[0] == 2 and isinstance(results[1], Conflict) and results[2] == 3
    assert {t.id for t in s.list_tasks()} == {"a", "b", "c"}
    assert [e.message for e in s.list_events()] == ["b created"]
    assert s.revision() == 3


def test_an_unreadable_record_is_isolated_not_fatal(sqlite_store: SqliteStore) -> None:
    s = sqlite_store
    s.commit(Txn(tasks=[(task("good"), 0), (task("bad"), 0)], nodes=[(node("n1"), 0), (node("n2"), 0)]))
    s._db.execute("UPDATE tasks SET data = '{\"id\": \"bad\", \"spec\": null}' WHERE id = 'bad'")
    s._db.execute("UPDATE nodes SET data = 'not json' WHERE name = 'n2'")
    assert [t.id for t in s.list_tasks()] == ["good"]
    assert s.get_task("bad") is None and [n.name for n in s.list_nodes()] == ["n1"]
    assert s.broken() == ["bad", "n2"]


def test_the_store_files_are_private(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "private" / "u.db")
    s.commit(Txn(tasks=[(task("a"), 0)]))
    s.close()
    s = SqliteStore(tmp_path / "private" / "u.db")
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "private" / "u.db").stat().st_mode & 0o777 == 0o600
    s.close()
