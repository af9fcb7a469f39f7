"""What the Flows and Events pages show, kept in memory by listeners on the control plane's one commit path.

:class:`EventRing` keeps the latest events, numbered, for the Events page and its live stream.
:class:`FlowRecorder` keeps where work went for the Flows page.

Every placement and deferral is an event with a reason code (DESIGN.md, decision 8); what an event does not
carry is the task's origin, and the control plane keeps a placed task in memory only as a compact record
without its spec. So the recorder notes a task's origin while the task is pending (its first event, the
submit, finds it whole in ``ClusterState``), keeps it until the task finishes, and reads it back when the
placement is committed: no store read on the writer's thread. Records older than the window are dropped; the
page never reads the store. History starts when the server does (a restart forgets the picture, not the
events; tasks still pending then are noted from memory at start).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from updraft.model import Event, EventKind, Task
from updraft.ui.views import Flow, flow_of

WINDOW_SECONDS = 15 * 60.0
MAX_FLOWS = 200_000
FINISHED = frozenset({EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELLED})


class FlowRecorder:
    """An ``EventListener``: ``service.listeners.append(recorder)``. Thread-safe (the writer thread appends).

    ``pending(task_id)`` is ``ClusterState.pending_task``: the whole task while it is pending, from memory.
    """

    def __init__(
        self,
        pending: Callable[[str], Task | None],
        window: float = WINDOW_SECONDS,
        limit: int = MAX_FLOWS,
    ) -> None:
        self.pending, self.window, self.limit = pending, window, limit
        self._flows: deque[Flow] = deque(maxlen=limit)
        self._origins: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, tasks: Iterable[Task]) -> None:
        """Remember the origins of tasks already pending (at start)."""
        with self._lock:
            for task in tasks:
                self._origins[task.id] = task.spec.origin

    def __call__(self, event: Event) -> None:
        task_id = event.task_id
        if task_id is None:
            return
        with self._lock:
            if task_id not in self._origins:
                task = self.pending(task_id)
                if task is not None:
                    self._origins[task_id] = task.spec.origin
                    while len(self._origins) > self.limit:
                        self._origins.popitem(last=False)
            origin = self._origins.get(task_id)
            if event.kind in FINISHED:
                self._origins.pop(task_id, None)
            flow = flow_of(event, origin)
            if flow is None:
                return
            self._flows.append(flow)
            cutoff = flow.at - self.window
            while self._flows and self._flows[0].at < cutoff:
                self._flows.popleft()

    def since(self, at: float) -> list[Flow]:
        with self._lock:
            return [f for f in self._flows if f.at >= at]


@dataclass(frozen=True)
class Numbered:
    seq: int
    event: Event


class EventRing:
    """The latest ``size`` committed events, each numbered in commit order (an ``EventListener``).

    The numbers are this ring's own (the store numbers events only when it inserts them, and the listener
    sees them before); the live stream asks for those after the last it sent. The ring starts empty when the
    server starts; the API's ``GET /v1/events`` reads the whole history.
    """

    def __init__(self, size: int = 2000) -> None:
        self._ring: deque[Numbered] = deque(maxlen=size)
        self._seq = 0
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._seq += 1
            self._ring.append(Numbered(self._seq, event))

    def last(self) -> int:
        return self._seq

    def after(self, seq: int, limit: int = 500) -> list[Numbered]:
        """Events numbered above ``seq``, oldest first, at most the newest ``limit`` of them."""
        with self._lock:
            out = [n for n in self._ring if n.seq > seq]
        return out[-limit:]
