"""φ-accrual failure detector (Hayashibara et al., 2004), one per node, clock injected.

Instead of a fixed timeout, the detector reports φ = -log10(P(the next heartbeat arrives later than now))
under a normal model learnt from a bounded window of each node's history. A node on a slow, jittery link
has a wide distribution and is given more time; a silent node on a steady link is caught within about two
heartbeat intervals.

What the model is learnt from. A heartbeat received at R was sent at S and spent D on the way: R = S + D.
The classic detector models the gaps between *receipts*, R' - R = I + (D' - D): the agent's send interval
and the difference of two delays, blind to which one was slow. Agents stamp each heartbeat with ``sent_at``
(their wall clock), so the server observes each heartbeat's delay as ``now() - sent_at``. That value
includes the offset between the two clocks, which is unknown but constant, so only its *excess* over the
smallest delay in the window is used: ``e = raw - min(raw)`` is the queueing/jitter part of the delay
(and retries: a heartbeat resent after a timeout keeps its ``sent_at`` and shows up as slow). Then

* the anchor of the next wait is the last heartbeat's receipt minus its excess, ``A = R - e`` — "when it
  would have arrived on the fastest observed path": a heartbeat that arrived late does not push the
  deadline of the next one later, and one that arrived early does not pull it earlier. The subtraction is
  capped at one mean send interval, because the agent sends its next heartbeat only after the current
  exchange is over (a heartbeat delayed by more than an interval delays the next *send* too);
* the wait from ``A`` to the next receipt is ``I' + e'``, with mean ``mean(I) + mean(e)`` and variance
  ``var(I) + var(e)``, where the send intervals ``I`` come from consecutive ``sent_at`` values.

So a node whose heartbeats are delayed (slow or jittery link, lost connections that force retries) is
given time in proportion to the delays it has been seen to suffer, and nothing more: its own heartbeat
*cadence* stays the centre of the model. Heartbeats without ``sent_at`` (older agents) fall back to the
classic receipt-gap model.

Clock trouble is contained: a heartbeat whose ``sent_at`` is not newer than the last one is a duplicate
or a late copy of a retried heartbeat and only refreshes ``silence``; two in a row, or a send gap that
disagrees with the receipt gap by more than ``max_silence_seconds``, mean the agent's clock was stepped,
and the delay history restarts.

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
    intervals: deque[float]  # send intervals (from sent_at), or receipt gaps when the agent sends none
    delays: deque[float]  # raw observed delays, receipt wall clock - sent_at (clock offset included)
    last: float  # monotonic receipt of the newest heartbeat: for silence
    anchor: float  # monotonic time the next wait is measured from: last receipt minus its excess delay
    last_sent: float | None = None  # sent_at of the newest heartbeat
    stale_run: int = 0  # consecutive heartbeats whose sent_at was not newer than last_sent
    mean: float = 0.0  # cached model of the wait from anchor to the next receipt
    std: float = 0.0
    excess: float = 0.0  # excess delay of the newest heartbeat


def phi(elapsed: float, mean: float, std: float) -> float:
    """-log10 of the normal tail probability beyond ``elapsed``."""
    z = (elapsed - mean) / std
    tail = 0.5 * math.erfc(z / math.sqrt(2))
    return -math.log10(max(tail, 1e-300))


def _mean_var(values: deque[float] | list[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    mean = sum(values) / n
    return mean, sum((x - mean) ** 2 for x in values) / n


class PhiAccrualDetector:
    def __init__(self, settings: DetectorSettings, clock: Clock, expected_interval: float = 1.0) -> None:
        self.settings = settings
        self.clock = clock
        self.expected = expected_interval
        self._nodes: dict[str, _History] = {}

    def heartbeat(self, node: str, sent_at: float | None = None) -> None:
        """Record a heartbeat; ``sent_at`` is the agent's wall-clock send time, when it says."""
        now = self.clock.monotonic()
        raw = None if sent_at is None else self.clock.now() - sent_at
        window = self.settings.window
        hist = self._nodes.get(node)
        if hist is None:
            # Seed with the expected interval so a new node is judged before it has a history.
            seed = deque([self.expected, self.expected], maxlen=window)
            hist = _History(seed, deque(maxlen=window), now, now)
            self._nodes[node] = hist
            self._record(hist, now, sent_at, raw)
            return
        gap = now - hist.last
        if sent_at is None or raw is None or hist.last_sent is None:
            hist.intervals.append(gap)
            hist.delays.clear()
        elif sent_at <= hist.last_sent and hist.stale_run == 0:
            # A duplicate, or a late copy of a heartbeat that was retried: alive, but the model is unchanged
            # (the next heartbeat is still due relative to the newer one).
            hist.stale_run += 1
            hist.last = now
            return
        elif sent_at <= hist.last_sent or abs((sent_at - hist.last_sent) - gap) > self.settings.max_silence_seconds:
            hist.intervals.append(gap)  # the agent's clock was stepped: its delays are not comparable
            hist.delays.clear()
        else:
            hist.intervals.append(sent_at - hist.last_sent)
        self._record(hist, now, sent_at, raw)

    def _record(self, hist: _History, now: float, sent_at: float | None, raw: float | None) -> None:
        hist.last, hist.last_sent, hist.stale_run = now, sent_at, 0
        mean_i, var_i = _mean_var(hist.intervals)
        mean_e = var_e = hist.excess = 0.0
        if raw is not None:
            hist.delays.append(raw)
            base = min(hist.delays)
            mean_e, var_e = _mean_var([d - base for d in hist.delays])
            hist.excess = raw - base
        # A sequential agent sends the next heartbeat when this one's exchange is over, so a heartbeat slower
        # than the send interval delays the next send as well: never anchor more than one interval back.
        hist.anchor = now - min(hist.excess, mean_i)
        hist.mean = mean_i + mean_e
        hist.std = max(math.sqrt(var_i + var_e), self.settings.min_std_seconds)

    def forget(self, node: str) -> None:
        self._nodes.pop(node, None)

    def phi(self, node: str) -> float:
        hist = self._nodes.get(node)
        if hist is None:
            return 0.0
        elapsed = self.clock.monotonic() - hist.anchor
        return phi(elapsed, hist.mean + self.settings.acceptable_pause_seconds, hist.std)

    def silence(self, node: str) -> float:
        hist = self._nodes.get(node)
        return 0.0 if hist is None else self.clock.monotonic() - hist.last

    def model(self, node: str) -> tuple[float, float] | None:
        """The learnt wait (mean, standard deviation, seconds) before the next heartbeat is due; None if unknown."""
        hist = self._nodes.get(node)
        return None if hist is None else (hist.mean, hist.std)

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
