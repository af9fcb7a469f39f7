"""φ-accrual failure detector (Hayashibara et al., 2004), one per node, clock injected.

Instead of a fixed timeout, each node's heartbeat inter-arrival times are kept in a bounded window and the
detector reports φ = -log10(P(a heartbeat arrives later than now)), under a normal model of the intervals.
A node on a slow, jittery link has a wide distribution and is given more time; a silent node on a steady link
is caught within about two heartbeat intervals.

Observed delays. The normal model is fitted to *intervals*, and delays on a real link are not normal: a
heartbeat whose first connection was dropped, or whose first attempt timed out, is resent and arrives a
whole retry later — a rare, long tail that the fitted deviation does not cover, so one such heartbeat
after a run of punctual ones would make φ jump. Agents stamp each heartbeat with ``sent_at`` (their wall
clock), so the server observes each heartbeat's delay, ``now() - sent_at``. That value includes the
unknown offset between the two clocks, so only its *excess* over the smallest delay in the window is used:
the queueing, jitter and retry part of the delay, which the offset cancels out of. The largest excess seen
in the window (capped at ``max_delay_slack_seconds``) is added to the acceptable pause: a node is given as
much extra time as its own heartbeats have been seen to need, and a node on a steady link (excess ≈ 0)
is judged exactly as before. Heartbeats without ``sent_at`` (older agents) leave the allowance as it is.

An agent clock step shifts every later delay by the step, so it can only *widen* the allowance, never
beyond the cap, until the pre-step samples leave the window.

The detector only *reports* (ready → suspect → unreachable) through the service layer; moving the node's
tasks is the scheduler's job.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from updraft.clock import Clock
from updraft.model import NodeState
from updraft.settings import DetectorSettings


@dataclass
class _History:
    intervals: deque[float]
    last: float
    delays: deque[float] = field(default_factory=deque)  # raw: receipt wall clock - sent_at (offset included)
    slack: float = 0.0  # cached: extra time allowed for this node's observed delays
    phase_only: bool = False  # the next heartbeat only sets the rhythm's phase (see restart)


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

    def heartbeat(self, node: str, sent_at: float | None = None) -> None:
        """Record a heartbeat; ``sent_at`` is the agent's wall-clock send time, if it said."""
        now = self.clock.monotonic()
        hist = self._nodes.get(node)
        if hist is None:
            # Seed with the expected interval so a new node is judged before it has a history.
            seed = deque([self.expected, self.expected], maxlen=self.settings.window)
            hist = self._nodes[node] = _History(seed, now, deque(maxlen=self.settings.window))
        else:
            if not hist.phase_only:
                hist.intervals.append(now - hist.last)
            hist.phase_only = False
            hist.last = now
        if sent_at is not None:
            hist.delays.append(self.clock.now() - sent_at)
            hist.slack = min(max(hist.delays) - min(hist.delays), self.settings.max_delay_slack_seconds)

    def restart(self, node: str) -> None:
        """A fresh history and a grace period from now: at a (re)registration, or for a node first seen after a
        server restart.

        The gap from then to the node's next heartbeat is not an interval of its rhythm (an agent heartbeats
        as soon as it has registered); counted as one (≈ 0 s), it would widen the fitted
        deviation of a young history several-fold and delay the detection of its next failure by a second.
        """
        self.forget(node)
        self.heartbeat(node)
        self._nodes[node].phase_only = True

    def pause(self, seconds: float) -> None:
        """The server itself was not listening for ``seconds`` (a stalled process or event loop): heartbeats sent
        meanwhile could not arrive, so that silence is nobody's fault. Every node's last heartbeat moves forward
        by the pause, as Cassandra does after a local pause, so a stall of the server never makes healthy nodes
        look silent."""
        for hist in self._nodes.values():
            hist.last += seconds

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
        pause = self.settings.acceptable_pause_seconds + hist.slack
        return phi(self.clock.monotonic() - hist.last, mean + pause, std)

    def delay_slack(self, node: str) -> float:
        """Extra seconds allowed for the node's observed heartbeat delays (0 until it sends ``sent_at``)."""
        hist = self._nodes.get(node)
        return 0.0 if hist is None else hist.slack

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
