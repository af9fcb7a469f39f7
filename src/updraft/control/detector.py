"""φ-accrual failure detector (Hayashibara et al., 2004), one per node, clock injected.

Instead of a fixed timeout, each node's heartbeat inter-arrival times are kept in a bounded window and the
detector reports φ = -log10(P(a heartbeat arrives later than now)), under a normal model of the intervals.
A node on a slow, jittery link has a wide distribution and is given more time; a silent node on a steady link
is caught within about two heartbeat intervals.

The detector only *reports* (ready → suspect → unreachable) through the service layer; moving the node's
tasks is the scheduler's job.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from updraft.clock import Clock
from updraft.model import NodeState
from updraft.settings import DetectorSettings


@dataclass
class _History:
    intervals: deque[float]
    last: float


def phi(elapsed: float, mean: float, std: float) -> float:
    """-log10 of the normal tail probability beyond ``elapsed``."""
    z = (elapsed - mean) / std
    tail = 0.5 * math.erfc(z / math.sqrt(2))
    return -math.log10(max(tail, 1e-300))


class PhiAccrualDetector:
    def __init__(self, settings: DetectorSettings, clock: Clock, expected_interval: float = 1.0) -> None:
        self.settings = settings
        self.clock = clock
        self.expected = expected_interval
        self._nodes: dict[str, _History] = {}

    def heartbeat(self, node: str) -> None:
        now = self.clock.monotonic()
        hist = self._nodes.get(node)
        if hist is None:
            # Seed with the expected interval so a new node is judged before it has a history.
            seed = deque([self.expected, self.expected], maxlen=self.settings.window)
            self._nodes[node] = _History(seed, now)
            return
        hist.intervals.append(now - hist.last)
        hist.last = now

    def forget(self, node: str) -> None:
        self._nodes.pop(node, None)

    def phi(self, node: str) -> float:
        hist = self._nodes.get(node)
        if hist is None:
            return 0.0
        n = len(hist.intervals)
        mean = sum(hist.intervals) / n
        var = sum((x - mean) ** 2 for x in hist.intervals) / n
        std = max(math.sqrt(var), self.settings.min_std_seconds)
        return phi(self.clock.monotonic() - hist.last, mean + self.settings.acceptable_pause_seconds, std)

    def silence(self, node: str) -> float:
        hist = self._nodes.get(node)
        return 0.0 if hist is None else self.clock.monotonic() - hist.last

    def state(self, node: str) -> NodeState:
        if node not in self._nodes:
            return NodeState.READY
        p = self.phi(node)
        if p >= self.settings.phi_unreachable or self.silence(node) >= self.settings.max_silence_seconds:
            return NodeState.UNREACHABLE
        if p >= self.settings.phi_suspect:
            return NodeState.SUSPECT
        return NodeState.READY

    def nodes(self) -> list[str]:
        return list(self._nodes)
