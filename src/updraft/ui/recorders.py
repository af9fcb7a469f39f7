"""What the Flows and Events pages show, kept in memory by listeners on the control plane's one commit path.

:class:`EventRing` keeps the latest events, numbered, for the Events page and its live stream.
:class:`FlowRecorder` keeps where work went for the Flows page.

Every placement and deferral is an event with a reason code (DESIGN.md, decision 8); what an event does not
carry is the task's origin, and reading each task back from the store to find it would be one store read per
decision. The writer calls its listeners right after it records a commit in ``ClusterState``, where the task
is still live, so the origin is read from memory there. Records older than the window are dropped; the page
never reads the store. History starts when the server does (a restart forgets the picture, not the events).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from updraft.model import Event
from updraft.ui.views import Flow, flow_of

WINDOW_SECONDS = 15 * 60.0
MAX_FLOWS = 200_000


class FlowRecorder:
    """An ``EventListener``: ``service.listeners.append(recorder)``. Thread-safe (the writer thread appends)."""

    def __init__(
        self,
        origin_of: Callable[[str], str | None],
        window: float = WINDOW_SECONDS,
        limit: int = MAX_FLOWS,
    ) -> None:
        self.origin_of, self.window = origin_of, window
        self._flows: deque[Flow] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if event.task_id is None:
            return
        flow = flow_of(event, self.origin_of(event.task_id))
        if flow is None:
            return
        with self._lock:
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
