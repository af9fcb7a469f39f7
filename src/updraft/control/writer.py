"""The control plane's single writer: every commit goes through here, in order, in batches.

Submits, reports, scheduling plans and node changes are queued as transactions; one thread takes whatever has
queued (up to ``max_batch``) and commits it with one store call (group commit: one durable write for the
batch, each transaction still atomic and independently compared). After the store answers, the same thread
records each committed transaction in the in-memory :class:`ClusterState`, hands its events to the listeners
(metrics, logs, tracing) and wakes the long-polls that wait on what changed — one commit path, so every
listener sees every event, whoever wrote it.

Callers in worker threads wait on the returned future; code on the event loop awaits it with
``asyncio.wrap_future``. ``depth()`` is the backlog the API's admission control looks at.

A caller's context may name another store to commit through (``COMMIT_VIA``): with etcd, the leader's loops
commit through the fenced view of their term (``EtcdStore.fenced``), so a deposed leader's writes fail.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextvars import ContextVar
from itertools import groupby
from typing import Any, Protocol

from updraft.control.notify import Notifier
from updraft.control.state import ClusterState
from updraft.errors import Unavailable, UpdraftError
from updraft.model import Event
from updraft.store import Store, Txn

log = logging.getLogger("updraft.writer")

EventListener = Callable[[Event], None]
_STOP = object()


class _Committer(Protocol):
    def commit_many(self, txns: list[Txn]) -> list[int | UpdraftError]: ...


COMMIT_VIA: ContextVar[_Committer | None] = ContextVar("updraft_commit_via", default=None)
"""Set by a context whose commits must go through another view of the store (the leader's fenced view)."""


def topics_of(txn: Txn) -> set[str]:
    """The long-poll topics a committed transaction wakes."""
    topics = {f"task:{t.id}" for t, _ in txn.tasks}
    topics |= {f"node:{t.node}" for t, _ in txn.tasks if t.node}
    # A log follower waits on the logs topic; the end of the task is its news too (a task that prints
    # nothing would otherwise keep ``updraft run`` waiting out the whole long-poll).
    topics |= {f"logs:{t.id}" for t, _ in txn.tasks if t.state.terminal}
    topics |= {f"node:{n.name}" for n, _ in txn.nodes}
    if txn.events:
        topics.add("events")
    return topics


class Writer:
    def __init__(
        self,
        store: Store,
        state: ClusterState,
        notifier: Notifier,
        listeners: list[EventListener],
        max_batch: int = 256,
    ) -> None:
        self.store, self.state, self.notifier, self.listeners = store, state, notifier, listeners
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="updraft-writer", daemon=True)
        self._thread.start()
        self.commits = 0
        self.batches = 0
        self.fresh: Callable[[Txn, int], Txn] | None = None
        """With etcd: what of a committed txn is still news for the state (``follow.Revisions.fresh``)."""

    def submit(self, txn: Txn) -> Future[int]:
        fut: Future[int] = Future()
        if not self._thread.is_alive():
            fut.set_exception(Unavailable("the store writer has stopped"))
            return fut
        self._queue.put((txn, fut, COMMIT_VIA.get()))
        return fut

    def commit(self, txn: Txn) -> int:
        """Commit and wait (from a worker thread, never from the event loop)."""
        return self.submit(txn).result()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued before this call is committed (tests, shutdown)."""
        fut: Future[int] = Future()
        self._queue.put((None, fut, None))
        fut.result(timeout)

    def depth(self) -> int:
        return self._queue.qsize()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            self._commit_batch(batch)  # type: ignore[arg-type]

    def _commit_batch(self, items: list[tuple[Txn | None, Future[int], Any]]) -> None:
        barriers = [fut for txn, fut, _ in items if txn is None]
        batch = [(txn, fut, via) for txn, fut, via in items if txn is not None]
        for via, group in groupby(batch, key=lambda item: item[2]):  # consecutive txns of one view together
            self._commit_txns([(txn, fut) for txn, fut, _ in group], via or self.store)
        for fut in barriers:
            fut.set_result(0)

    def _commit_txns(self, batch: list[tuple[Txn, Future[int]]], store: _Committer) -> None:
        try:
            results = store.commit_many([txn for txn, _ in batch])
        except Exception as exc:  # the store itself failed: every caller gets the error, the writer lives on
            log.exception("store commit failed")
            err = exc if isinstance(exc, UpdraftError) else Unavailable(f"store commit failed: {exc}")
            for _, fut in batch:
                fut.set_exception(err)
            return
        self.batches += 1
        topics: set[str] = set()
        for (txn, fut), result in zip(batch, results, strict=True):
            if isinstance(result, UpdraftError):
                fut.set_exception(result)
                continue
            self.commits += 1
            with self.state.lock:  # with several servers, the watch may have applied a newer change already
                self.state.apply(txn if self.fresh is None else self.fresh(txn, result), result)
            for event in txn.events:
                for listener in self.listeners:
                    try:
                        listener(event)
                    except Exception:  # a listener must never undo a commit or stop the writer
                        log.exception("event listener failed")
            topics |= topics_of(txn)
            fut.set_result(result)
        if topics:
            self.notifier.notify(*topics)
