"""Small O(1)-per-sample online statistics shared by the detectors.

Why a separate module: the detector and the overload predictor both need a bounded sliding window with a
running mean/variance and a tail probability, and they must stay allocation-free per sample to meet the
≤ 50 µs budget. Plain Python floats over an ``array('d')`` ring buffer are faster than numpy for one sample
at a time (numpy's per-call overhead is ~1 µs) and cost 8 bytes per slot.
"""

from __future__ import annotations

import math
from array import array

_SQRT2 = math.sqrt(2.0)
#: ``ln(1e-10)``: NAB's log-likelihood maps a tail probability of 1e-10 to a score of 1.
_LOG_FLOOR = math.log(1e-10)


def gaussian_tail(z: float) -> float:
    """Two-sided-by-reflection tail probability ``P(Z >= |z|)`` of a standard normal."""
    return 0.5 * math.erfc(abs(z) / _SQRT2)


def normal_cdf(z: float) -> float:
    """``P(Z <= z)`` of a standard normal."""
    return 0.5 * math.erfc(-z / _SQRT2)


def log_score(tail: float) -> float:
    """Map a tail probability to a score in [0, 1] on a log scale (NAB's ``computeLogLikelihood``).

    A tail probability of 1e-5 gives 0.5, 1e-10 or less gives 1. The log scale spreads the interesting
    region (very small tail probabilities) over the whole unit interval so one threshold fits many series.
    """
    s = math.log(tail + 1e-10) / _LOG_FLOOR
    return 0.0 if s < 0.0 else (1.0 if s > 1.0 else s)


class RollingWindow:
    """Fixed-capacity ring buffer of floats with O(1) running mean and variance.

    Running sums drift with floating-point error, so they are recomputed from the buffer once per full
    turn of the ring (amortised O(1)).
    """

    __slots__ = ("_buf", "_cap", "_i", "_n", "_s", "_since_exact", "_ss")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._cap = capacity
        self._buf = array("d", bytes(8 * capacity))
        self._i = 0
        self._n = 0
        self._s = 0.0
        self._ss = 0.0
        self._since_exact = 0

    def __len__(self) -> int:
        return self._n

    def push(self, x: float) -> None:
        """Append ``x``, evicting the oldest value once full."""
        i = self._i
        if self._n == self._cap:
            old = self._buf[i]
            self._s -= old
            self._ss -= old * old
        else:
            self._n += 1
        self._buf[i] = x
        self._s += x
        self._ss += x * x
        self._i = i + 1 if i + 1 < self._cap else 0
        self._since_exact += 1
        if self._since_exact >= self._cap:
            self._recompute()

    def _recompute(self) -> None:
        vals = self._buf if self._n == self._cap else self._buf[: self._n]
        self._s = math.fsum(vals)
        self._ss = math.fsum(v * v for v in vals)
        self._since_exact = 0

    def mean(self) -> float:
        return self._s / self._n if self._n else 0.0

    def var(self) -> float:
        if self._n == 0:
            return 0.0
        m = self._s / self._n
        v = self._ss / self._n - m * m
        return v if v > 0.0 else 0.0


class AnomalyLikelihood:
    """Turn a stream of raw anomaly scores into a tail probability (after NAB/HTM "anomaly likelihood").

    Why: raw scores of different series live on different scales and some series are just noisier. Instead
    of thresholding a raw score, compare the *short-term average* of the raw scores (the last ``avg``
    samples) with the *long-term distribution* of that average (the last ``history`` samples, modelled as a
    Gaussian whose parameters are refreshed every ``reestimate`` samples). A run of moderately surprising
    samples then stands out as strongly as one huge surprise, and a series that is always noisy stops
    alarming. Returns 0.5 (no opinion) during the first ``learn`` samples.
    """

    __slots__ = ("_avg", "_hist", "_learn", "_min_var", "_mu", "_n", "_reest", "_sd")

    def __init__(
        self, history: int = 8640, avg: int = 20, reestimate: int = 100, learn: int = 300, min_var: float = 3e-4
    ) -> None:
        self._hist = RollingWindow(history)
        self._avg = RollingWindow(avg)
        self._reest = reestimate
        self._learn = learn
        self._min_var = min_var
        self._mu = 0.0
        self._sd = 1.0
        self._n = 0

    @property
    def average(self) -> float:
        """The current short-term average of the raw scores (the quantity whose tail is reported)."""
        return self._avg.mean()

    def update(self, raw: float) -> float:
        """Feed one raw score in [0, 1]; return the tail probability of the current short-term average."""
        self._n += 1
        self._avg.push(raw)
        a = self._avg.mean()
        self._hist.push(a)
        if self._n < self._learn:
            return 0.5
        if self._n == self._learn or self._n % self._reest == 0:
            self._mu = self._hist.mean()
            self._sd = math.sqrt(max(self._hist.var(), self._min_var))
        return gaussian_tail((a - self._mu) / self._sd)
