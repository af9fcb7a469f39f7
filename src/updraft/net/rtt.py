"""Per-endpoint round-trip-time estimation and adaptive timeouts (RFC 6298).

Why: edge links range from a LAN hop to a congested cellular uplink. A fixed request timeout is either
too long (a dead control-plane replica stalls every agent for seconds before failover) or too short
(spurious timeouts on a slow link). RFC 6298's estimator gives each endpoint a timeout that tracks its
observed latency and variance, and backs off exponentially when that endpoint stops answering.

Algorithm (RFC 6298 §2, with α = 1/8, β = 1/4, K = 4)::

    first sample R:   SRTT = R;  RTTVAR = R / 2
    later sample R:   RTTVAR = (1 - β)·RTTVAR + β·|SRTT - R|      (uses the *old* SRTT)
                      SRTT   = (1 - α)·SRTT   + α·R
    RTO = clamp(SRTT + max(G, K·RTTVAR), min_rto, max_rto)

Defaults and why:

* ``initial_rto = 1.0`` s — RFC 6298 §2.1, used until the first sample arrives.
* ``min_rto = 0.2`` s — RFC 6298 §2.4 recommends 1 s, but that floor would hide the estimator on the
  links Updraft targets (tens to a few hundred ms); 0.2 s is what Linux TCP uses. Note an HTTP "round
  trip" includes server processing time, so the variance term absorbs slow handlers.
* ``max_rto = 60`` s — RFC 6298 §2.5 allows any maximum of at least 60 s.
* ``granularity = 0.0`` — G in the RFC; monotonic float clocks have effectively no tick.

Back-off (§5.5): each timeout doubles the RTO (capped at ``max_rto``); the doubling is kept until a
*valid* sample arrives (§5.7). Karn's rule: a sample taken from a request that was already sent once
is ambiguous and must not update the estimator (and therefore does not cancel the back-off either).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from updraft.clock import Clock, SystemClock

ALPHA = 1 / 8
BETA = 1 / 4
K = 4

DEFAULT_INITIAL_RTO = 1.0
DEFAULT_MIN_RTO = 0.2
DEFAULT_MAX_RTO = 60.0


@dataclass(frozen=True)
class RttSnapshot:
    """A consistent read of the estimator for metrics and benchmarks."""

    srtt: float | None
    rttvar: float | None
    rto: float
    backoffs: int
    samples: int


class RttEstimator:
    """SRTT/RTTVAR estimator producing an adaptive, backed-off request timeout.

    Thread-safe: one estimator is shared by every request to its endpoint, and the sync client may be
    used from several threads.
    """

    def __init__(
        self,
        *,
        initial_rto: float = DEFAULT_INITIAL_RTO,
        min_rto: float = DEFAULT_MIN_RTO,
        max_rto: float = DEFAULT_MAX_RTO,
        granularity: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        if not 0 < min_rto <= max_rto:
            raise ValueError(f"need 0 < min_rto <= max_rto, got {min_rto} and {max_rto}")
        if initial_rto <= 0 or granularity < 0:
            raise ValueError("initial_rto must be positive and granularity non-negative")
        self.initial_rto = initial_rto
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._srtt: float | None = None
        self._rttvar: float | None = None
        self._backoffs = 0
        self._samples = 0

    # -- reading -------------------------------------------------------------------------------------

    @property
    def srtt(self) -> float | None:
        return self._srtt

    @property
    def rttvar(self) -> float | None:
        return self._rttvar

    @property
    def backoffs(self) -> int:
        """How many consecutive timeouts have doubled the RTO since the last valid sample."""
        return self._backoffs

    @property
    def base_rto(self) -> float:
        """The clamped RTO before back-off is applied."""
        with self._lock:
            return self._base_rto()

    @property
    def timeout(self) -> float:
        """The timeout to use for the next request: base RTO doubled per back-off, capped."""
        with self._lock:
            return self._timeout()

    def snapshot(self) -> RttSnapshot:
        with self._lock:
            return RttSnapshot(self._srtt, self._rttvar, self._timeout(), self._backoffs, self._samples)

    # -- updating ------------------------------------------------------------------------------------

    def observe(self, rtt: float, *, retried: bool = False) -> bool:
        """Feed one measured round trip; returns whether it was used.

        ``retried=True`` applies Karn's rule: the sample is dropped and any back-off stays in force.
        """
        if retried:
            return False
        if rtt < 0:
            raise ValueError(f"a round-trip time cannot be negative: {rtt}")
        with self._lock:
            if self._srtt is None or self._rttvar is None:
                self._srtt = rtt
                self._rttvar = rtt / 2
            else:
                self._rttvar = (1 - BETA) * self._rttvar + BETA * abs(self._srtt - rtt)
                self._srtt = (1 - ALPHA) * self._srtt + ALPHA * rtt
            self._backoffs = 0
            self._samples += 1
        return True

    def on_timeout(self) -> float:
        """Record that a request timed out; doubles the timeout (RFC 6298 §5.5) and returns the new one."""
        with self._lock:
            if self._timeout() < self.max_rto:
                self._backoffs += 1
            return self._timeout()

    def start(self) -> float:
        """Start timing a request; pass the result to :meth:`finish`."""
        return self._clock.monotonic()

    def finish(self, started: float, *, retried: bool = False) -> float:
        """Finish timing a request started with :meth:`start`; returns the elapsed time."""
        elapsed = max(0.0, self._clock.monotonic() - started)
        self.observe(elapsed, retried=retried)
        return elapsed

    # -- internals (call with the lock held) ---------------------------------------------------------

    def _base_rto(self) -> float:
        if self._srtt is None or self._rttvar is None:
            raw = self.initial_rto
        else:
            raw = self._srtt + max(self.granularity, K * self._rttvar)
        return min(self.max_rto, max(self.min_rto, raw))

    def _timeout(self) -> float:
        return min(self.max_rto, self._base_rto() * (2**self._backoffs))
