"""How EtcdStore turns a ``Txn`` into one etcd Txn (no etcd: the request is captured): the compares are the
revisions read, creation means absent, the token floor must be above the stored counter, the leader's view adds
its term, events go on the history lease; a failed Txn's ranges say which compare failed."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from builders import NOW, node, task

from updraft.errors import Conflict, Unavailable
from updraft.model import Event
from updraft.store import EtcdStore, Txn


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Captured(EtcdStore):
    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        super().__init__(["http://127.0.0.1:1"], prefix="/u/")
        self.sent: list[tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]] = []
        self.answer = answer or {"header": {"revision": "42"}, "succeeded": True}
        self._seeded = True

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        self.sent.append((compare, success, failure or []))
        return self.answer

    def _history_lease(self) -> int:
        return 7


def compares(store: Captured) -> list[tuple[str, str, str, object]]:
    out = []
    for c in store.sent[-1][0]:
        target = c["target"]
        value = c.get({"MOD": "mod_revision", "CREATE": "create_revision", "VALUE": "value"}[target])
        out.append((base64.b64decode(c["key"]).decode(), c["result"], target, value))
    return out


def test_one_etcd_txn_compares_what_was_read() -> None:
    store = Captured()
    read = task("a").model_copy(update={"revision": 9})
    rev = store.commit(Txn(tasks=[(task("b"), 0)], nodes=[(node("n1"), 0)]).put_task(read))
    assert rev == 42 and len(store.sent) == 1
    assert compares(store) == [
        ("/u/tasks/b", "EQUAL", "CREATE", 0), ("/u/tasks/a", "EQUAL", "MOD", 9), ("/u/nodes/n1", "EQUAL", "CREATE", 0)]


def test_token_floor_is_compared_and_the_leader_view_adds_its_term() -> None:
    store = Captured()
    store.fenced(17).commit(Txn(counters={"token": 5, "seq": 3}, events=[Event(at=NOW, kind="placed", message="m")]))
    found = compares(store)
    assert ("/u/leader", "EQUAL", "CREATE", 17) in found
    assert ("/u/counters/token", "LESS", "VALUE", b64(f"{5:020d}")) in found
    assert not any(key == "/u/counters/seq" for key, *_ in found)  # seq is a maximum (a nested Txn), not a compare
    puts = [op for op in store.sent[-1][1] if "request_put" in op]
    assert any(op["request_put"].get("lease") == 7 for op in puts)  # the event, on the history lease


def test_a_failed_txn_says_which_compare_failed() -> None:
    moved = {"kvs": [{"key": b64("/u/tasks/a"), "mod_revision": "12", "create_revision": "3"}]}
    store = Captured({"header": {"revision": "50"}, "responses": [{"response_range": moved}]})
    with pytest.raises(Conflict) as info:
        store.commit(Txn().put_task(task("a").model_copy(update={"revision": 9})))
    assert info.value.details == {"task_id": "a"}

    other_term = {"kvs": [{"key": b64("/u/leader"), "mod_revision": "30", "create_revision": "30"}]}
    store = Captured({"header": {"revision": "50"}, "responses": [{"response_range": other_term}, {}]})
    with pytest.raises(Unavailable) as fenced:
        store.fenced(17).commit(Txn(tasks=[(task("b"), 0)]))
    assert fenced.value.details["reason"] == "fenced" and fenced.value.status == 503

    used = {"kvs": [{"key": b64("/u/idem/k"), "mod_revision": "4", "create_revision": "4",
                     "value": b64(json.dumps({"task_id": "t-1", "fingerprint": "fp"}))}]}
    store = Captured({"header": {"revision": "50"}, "responses": [{"response_range": used}, {}]})
    with pytest.raises(Conflict) as again:
        store.commit(Txn(tasks=[(task("c"), 0)], idempotency=("k", "c", "fp2")))
    assert again.value.details == {"key": "k", "task_id": "t-1", "fingerprint": "fp"}
