"""Keep a server's in-memory ``ClusterState`` following etcd, whoever wrote (issue 16).

Every server (leader or follower) watches the whole key prefix from the revision its state was loaded at.
Changes are applied per etcd revision (all keys of one Txn share it) through ``ClusterState.apply`` — the same
call the writer makes after its own commits — and the long-poll topics they touch are woken, so an agent
long-polling its assignments on a follower hears of a placement the leader made, and the leader's scheduler
hears of a task submitted on a follower.

A change this process committed itself was already applied by its writer (``EtcdStore.local`` records it), and
a change older than what the state holds is skipped, so the state never goes back. If the watch breaks, it
resumes from the next revision on another endpoint; if etcd compacted that revision away, the state is
reloaded whole (:func:`reload_state`) and the watch starts again after it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from updraft.control.notify import Notifier
from updraft.control.state import ClusterState
from updraft.control.writer import topics_of
from updraft.model import TaskState
from updraft.store import EtcdStore, Txn
from updraft.store.etcd import b64, prefix_end

log = logging.getLogger("updraft.follow")

WATCH_READ_TIMEOUT = 30.0
"""An idle watch is re-opened after this long (it resumes where it was, so nothing is missed)."""


def reload_state(state: ClusterState, store: EtcdStore) -> int:
    """Load the state afresh from etcd and swap it in place (the same object, so every holder sees it).

    Returns the revision the load started at: the watch resumes after it (changes in between are applied again,
    and skipped where the state already holds them).
    """
    start = store.revision()
    fresh = ClusterState()
    fresh.load(store)
    with state.lock:
        epoch = state.epoch
        for name, value in vars(fresh).items():
            if name not in ("lock", "_load"):  # the same lock, and the same way to read a placed task
                setattr(state, name, value)
        state.epoch = epoch + 1
    return start


def group_by_revision(events: list[dict[str, Any]]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    group: list[dict[str, Any]] = []
    rev = 0
    for event in events:
        r = int(event["kv"].get("mod_revision", 0))
        if group and r != rev:
            yield rev, group
            group = []
        rev = r
        group.append(event)
    if group:
        yield rev, group


class Follower:
    def __init__(
        self,
        store: EtcdStore,
        state: ClusterState,
        notifier: Notifier,
        on_leader: Callable[[str | None, int], None],
    ) -> None:
        self.store, self.state, self.notifier, self.on_leader = store, state, notifier, on_leader
        self.revision = 0
        self.applied = 0
        self._stop = threading.Event()
        self._response: requests.Response | None = None
        self._thread = threading.Thread(target=self._run, name="updraft-follow", daemon=True)

    def start(self, revision: int) -> None:
        self.revision = revision
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            response.close()
        self._thread.join(2)

    # -- the watch ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._watch()
                failures = 0
            except Exception as exc:  # a broken stream or member: resume from the next revision elsewhere
                if self._stop.is_set():
                    return
                failures += 1
                log.info("watch interrupted (%s); resuming from revision %d", exc, self.revision + 1)
                self.store.net.rotate()
                time.sleep(min(0.05 * 2**failures, 1.0))

    def _watch(self) -> None:
        client = self.store.net.client
        prefix = self.store.prefix
        body: dict[str, Any] = {"create_request": {
            "key": b64(prefix), "range_end": b64(prefix_end(prefix)), "start_revision": self.revision + 1,
        }}
        with client.session.post(client.get_url("/watch"), json=body, stream=True,
                                 timeout=(2.0, WATCH_READ_TIMEOUT)) as response:
            self._response = response
            if response.status_code != 200:
                raise RuntimeError(f"watch answered {response.status_code}")
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if not line.strip():
                    continue
                result = json.loads(line).get("result", {})
                if int(result.get("compact_revision", 0) or 0) > 0:
                    log.warning("watch: revision %d was compacted; reloading the state", self.revision + 1)
                    self.revision = reload_state(self.state, self.store)
                    self.notifier.notify("scheduler")
                    return
                events = result.get("events", [])
                if events:
                    self.apply(events)

    # -- applying --------------------------------------------------------------------------------------------------
    def apply(self, events: list[dict[str, Any]]) -> None:
        prefix = self.store.prefix
        for rev, group in group_by_revision(events):
            txn, topics = Txn(), set[str]()
            for event in group:
                kv = event["kv"]
                key = base64.b64decode(kv["key"]).decode()
                kind, _, rest = key[len(prefix):].partition("/")
                deleted = event.get("type") == "DELETE"
                if kind == "leader":
                    value = None if deleted else base64.b64decode(kv.get("value", "")).decode()
                    self.on_leader(value, int(kv.get("create_revision", 0) or 0))
                elif deleted:
                    continue
                elif kind in ("tasks", "nodes"):
                    self._take(txn, kind, key, rev, kv)
                elif kind == "counters":
                    txn.counters[rest] = int(base64.b64decode(kv["value"]).decode())
                elif kind == "logs":
                    topics.add(f"logs:{rest.split('/', 1)[0]}")
                elif kind == "events":
                    topics.add("events")
            if txn.tasks or txn.nodes or txn.counters:
                self.state.apply(txn, rev)
                topics |= topics_of(txn)
                if any(t.state == TaskState.PENDING for t, _ in txn.tasks):
                    topics.add("scheduler")
            if topics:
                self.notifier.notify(*topics)
            self.revision = max(self.revision, rev)
            self.applied += 1
            with self.store.local_lock:
                for k in [k for k, r in self.store.local.items() if r <= rev]:
                    del self.store.local[k]

    def _take(self, txn: Txn, kind: str, key: str, rev: int, kv: dict[str, Any]) -> None:
        with self.store.local_lock:
            if self.store.local.get(key, 0) >= rev:
                return  # this process committed it and its writer already applied it
        decoded = {**kv, "key": key, "value": base64.b64decode(kv.get("value", "")).decode()}
        if kind == "tasks":
            task = self.store.parse_task(decoded)
            held = self.state.tasks.get(task.id) if task else None  # the compact record: no store read
            if task is not None and (held is None or held.revision < rev):
                txn.tasks.append((task, 0))
        else:
            node = self.store.parse_node(decoded)
            known = self.state.node(node.name) if node else None
            if node is not None and (known is None or known.revision < rev):
                txn.nodes.append((node, 0))

