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

Many requests, one estimator. TCP has one retransmission timer per connection and, after a timeout, one
segment in flight; here many concurrent requests share an endpoint's estimator, and two rules keep that
sharing from distorting it. Callers take a :class:`RttTicket` (:meth:`sending`) when they send an attempt
and hand it back to :meth:`observe` or :meth:`on_timeout`:

* *One doubling per timeout actually used.* Ten requests sent with the same RTO that all time out are one
  expiry of "the timer", not ten: only an attempt sent at the current back-off level doubles the RTO again.
  Otherwise a burst of concurrent timeouts would drive the RTO to its maximum within one RTO.
* *Karn's rule, extended.* A sample is ambiguous, like a resent request's, when another attempt to the
  endpoint timed out while this one was in flight, or when it was sent while the endpoint was backed off
  and had not answered anything since its last timeout (a probe sent into an outage). During a partition
  new requests keep being sent with ever longer timeouts and, when it heals, answer all at once with
  "round trips" as long as the partition; fed to the estimator, those would keep the RTO near its maximum
  long after the path is well again. An ambiguous answer still tells that the endpoint answers again, so
  the next attempt's sample is valid and clears the back-off (§5.7), as after a retransmission in TCP.
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
class RttTicket:
    """The estimator's state when an attempt was sent (see "Many requests, one estimator")."""

    timeouts: int
    backoffs: int
    probe: bool


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
        self._timeouts = 0
        self._answered = True  # something answered since the last timeout

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
    def timeouts(self) -> int:
        """Timeouts recorded so far."""
        return self._timeouts

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

    def sending(self) -> RttTicket:
        """Note the state as an attempt is sent; pass the ticket to :meth:`observe` or :meth:`on_timeout`."""
        with self._lock:
            return RttTicket(self._timeouts, self._backoffs, self._backoffs > 0 and not self._answered)

    def answered(self) -> None:
        """The endpoint answered a request that yields no sample (a long poll, say): it is not in an outage."""
        with self._lock:
            self._answered = True

    def observe(self, rtt: float, *, retried: bool = False, ticket: RttTicket | None = None) -> bool:
        """Feed one measured round trip; returns whether it was used.

        ``retried=True`` applies Karn's rule: the sample is dropped and any back-off stays in force. With the
        attempt's ``ticket``, so is a sample from an attempt that another one's timeout overlapped, or that
        was sent into an outage (see "Many requests, one estimator").
        """
        if rtt < 0:
            raise ValueError(f"a round-trip time cannot be negative: {rtt}")
        with self._lock:
            self._answered = True
            if retried:
                return False
            if ticket is not None and (ticket.timeouts != self._timeouts or ticket.probe):
                return False
            if self._srtt is None or self._rttvar is None:
                self._srtt = rtt
                self._rttvar = rtt / 2
            else:
                self._rttvar = (1 - BETA) * self._rttvar + BETA * abs(self._srtt - rtt)
                self._srtt = (1 - ALPHA) * self._srtt + ALPHA * rtt
            self._backoffs = 0
            self._samples += 1
        return True

    def on_timeout(self, ticket: RttTicket | None = None) -> float:
        """Record that a request timed out; doubles the timeout (RFC 6298 §5.5) and returns the new one.

        With the attempt's ``ticket``, an attempt sent before the RTO was last doubled does not double it
        again.
        """
        with self._lock:
            self._timeouts += 1
            self._answered = False
            current = ticket is None or ticket.backoffs >= self._backoffs
            if current and self._timeout() < self.max_rto:
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
