"""Keep a server's in-memory ``ClusterState`` following etcd, whoever wrote (issue 16).

Every server (leader or follower) watches the whole key prefix from the revision its state was loaded at.
Changes are applied per etcd revision (all keys of one Txn share it) through ``ClusterState.apply`` — the same
call the writer makes after its own commits — and the long-poll topics they touch are woken, so an agent
long-polling its assignments on a follower hears of a placement the leader made, and the leader's scheduler
hears of a task submitted on a follower.

A change older than what the state holds, or already applied by this server's writer, is skipped
(:class:`Revisions`), so the state never goes back. If the watch breaks, it
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


class Revisions:
    """The newest revision applied to the state per task and node, whoever applied it: the writer (this server's
    commits) or the watch (everyone's, this server's included). Both ask here under the state's lock, so the
    state never goes back: the watch may deliver another server's later change to a task before this server's
    writer has applied its own earlier commit to it, and that earlier commit is then not applied. Entries are
    kept ``keep`` seconds (a writer's apply is never that late)."""

    def __init__(self, keep: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep, self.clock = keep, clock
        self._newest: dict[str, tuple[int, float]] = {}

    def take(self, key: str, revision: int) -> bool:
        """Whether a change at ``revision`` is newer than what the state holds for ``key`` (then recorded)."""
        held = self._newest.get(key)
        if held is not None and held[0] >= revision:
            return False
        self._newest[key] = (revision, self.clock())
        return True

    def fresh(self, txn: Txn, revision: int) -> Txn:
        """The part of a committed txn that is still news for the state (the writer's hook)."""
        self.prune()
        tasks = [(t, r) for t, r in txn.tasks if self.take(f"tasks/{t.id}", revision)]
        nodes = [(n, r) for n, r in txn.nodes if self.take(f"nodes/{n.name}", revision)]
        if len(tasks) == len(txn.tasks) and len(nodes) == len(txn.nodes):
            return txn
        return Txn(tasks=tasks, nodes=nodes, events=txn.events, idempotency=txn.idempotency, counters=txn.counters)

    def prune(self) -> None:
        if len(self._newest) < 1024:
            return
        horizon = self.clock() - self.keep
        for key in [k for k, (_, at) in self._newest.items() if at < horizon]:
            del self._newest[key]


class Follower:
    def __init__(
        self,
        store: EtcdStore,
        state: ClusterState,
        notifier: Notifier,
        on_leader: Callable[[str | None, int], None],
        revisions: Revisions | None = None,
    ) -> None:
        self.store, self.state, self.notifier, self.on_leader = store, state, notifier, on_leader
        self.revisions = revisions or Revisions()
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
            with self.state.lock:  # with the writer's apply: see Revisions
                self._apply(prefix, rev, group)

    def _apply(self, prefix: str, rev: int, group: list[dict[str, Any]]) -> None:
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

    def _take(self, txn: Txn, kind: str, key: str, rev: int, kv: dict[str, Any]) -> None:
        if not self.revisions.take(key[len(self.store.prefix):], rev):
            return  # the state holds this revision or a newer one (e.g. this server's writer applied it)
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

