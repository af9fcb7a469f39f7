"""Predict that a node metric will cross its overload threshold, early and without chasing spikes.

Why: a static threshold offloads too late (the node is already at 92 %) and too often (one noisy sample
over the line triggers an offload). :class:`OverloadPredictor` instead

* fits straight lines to the recent samples at a few time scales (exponentially weighted least squares,
  O(1) time and memory per sample) and asks how likely the value is to be at or above the threshold
  within ``horizon_s``. Each fit's own predictive interval gives the probability, so a noisy series needs
  a steeper, longer trend to be believed than a quiet one; the short scale (8 s) sees a new ramp within
  seconds, the long one (30 s) is steadier, and the most alarmed of them is reported;
* treats a sample that is far outside the fit (``spike_k`` residual standard deviations) as *suspect*:
  it is clipped before it reaches the fit, and if it is over the threshold it is reported as
  ``transient`` and no offload is advised. If the next ``spike_hold`` samples are also outside the fit on
  the same side, it was a level shift, not a spike: the fit restarts from the new level (so a jump to
  90 % is acted on one sample later, not after a window's worth of averaging);
* also runs the generic :class:`~updraft.predict.detector.AnomalyDetector` on the same stream, for the
  scheduler's explanation and ranking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from updraft.predict._stats import normal_cdf
from updraft.predict.detector import AnomalyDetector, DetectorConfig


@dataclass(frozen=True)
class Prediction:
    """The predictor's view after one sample. Values are in the metric's unit (percent for cpu/memory)."""

    t: float
    value: float
    #: Fitted value now (robust to one-sample spikes).
    level: float
    #: Fitted slope, units per second.
    trend_per_s: float
    #: Anomaly score in [0, 1] of the sample (see :class:`AnomalyDetector`).
    anomaly_score: float
    #: Probability that the value is at or above the threshold within ``horizon_s``.
    p_cross: float
    #: The current excursion above the threshold looks like a one-sample spike: hold back.
    transient: bool
    #: ``p_cross >= decision_level and not transient``.
    should_offload: bool
    #: Seconds until the fitted line reaches the threshold (0 if already there, None if not rising).
    eta_s: float | None
    #: Short human explanation, e.g. ``"trend +1.8%/s, crosses 75% in ~9 s (p=0.86)"``.
    reason: str


class _EWLine:
    """Exponentially weighted least-squares line, O(1) time and memory per sample.

    Every sum is discounted by ``exp(-dt / tau)`` per elapsed second and the time origin is moved to the
    newest sample on every update, so the fit favours recent samples, needs no buffer, and keeps its
    precision over days of uptime. ``n_eff = (Σw)² / Σw²`` is the effective number of samples.
    """

    __slots__ = ("_t", "sw", "sw2", "sx", "sxx", "sxy", "sy", "syy", "tau")

    def __init__(self, tau: float) -> None:
        self.tau = tau
        self.sw = self.sw2 = self.sx = self.sy = self.sxx = self.sxy = self.syy = 0.0
        self._t: float | None = None

    def push(self, t: float, y: float) -> None:
        if self._t is not None:
            dt = t - self._t
            if dt > 0.0:
                f = math.exp(-dt / self.tau)
                self.sw *= f
                self.sw2 *= f * f
                self.sx *= f
                self.sy *= f
                self.sxx *= f
                self.sxy *= f
                self.syy *= f
                # move the origin to t: x_new = x_old - dt
                self.sxx += -2.0 * dt * self.sx + dt * dt * self.sw
                self.sxy -= dt * self.sy
                self.sx -= dt * self.sw
        self._t = t
        self.sw += 1.0
        self.sw2 += 1.0
        self.sy += y
        self.syy += y * y

    def n_eff(self) -> float:
        return self.sw * self.sw / self.sw2 if self.sw2 > 0.0 else 0.0

    def predict(self, dx: float, noise_floor: float) -> tuple[float, float, float]:
        """Fitted value ``dx`` seconds after the newest sample, its predictive std, and the slope.

        The variance is the ordinary-least-squares predictive variance with ``n_eff`` samples:
        ``σ² (1 + 1/n + (x - x̄)² / Sxx)``; σ is floored at ``noise_floor``.
        """
        sw = self.sw
        if sw <= 0.0:
            return 0.0, math.inf, 0.0
        n = self.n_eff()
        mx = self.sx / sw
        my = self.sy / sw
        sxx = self.sxx - sw * mx * mx
        syy = max(self.syy - sw * my * my, 0.0)
        if n < 3.0 or sxx <= 1e-12 * sw:
            sigma = max(math.sqrt(syy / sw), noise_floor)
            return my, sigma * math.sqrt(1.0 + 1.0 / max(n, 1.0)), 0.0
        sxy = self.sxy - sw * mx * my
        slope = sxy / sxx
        rss = max(syy - slope * sxy, 0.0)
        sigma = max(math.sqrt(rss / sw * n / (n - 2.0)), noise_floor)
        sxx_n = sxx * n / sw  # centred sum of squares expressed for n_eff samples
        var = sigma * sigma * (1.0 + 1.0 / n + (dx - mx) ** 2 / sxx_n)
        return my + slope * (dx - mx), math.sqrt(var), slope


class OverloadPredictor:
    """Online overload predictor for one metric of one node (see the module docstring).

    >>> p = OverloadPredictor(threshold=75.0, horizon_s=30.0)
    >>> pred = p.update(t=0.0, value=40.0)
    >>> pred.should_offload
    False
    """

    def __init__(
        self,
        threshold: float = 75.0,
        horizon_s: float = 30.0,
        *,
        decision_level: float = 0.8,
        scales_s: tuple[float, ...] = (8.0, 30.0),
        spike_k: float = 4.0,
        spike_hold: int = 1,
        noise_floor: float = 0.5,
        detector_config: DetectorConfig | None = None,
    ) -> None:
        """Create a predictor.

        ``threshold`` and ``noise_floor`` are in the metric's unit (percent). ``scales_s`` are the time
        constants (seconds) of the line fits; each should span at least a few samples (a scale with fewer
        than 3 effective samples has no trend). ``noise_floor`` is the smallest residual standard
        deviation assumed, so a perfectly flat series does not produce overconfident probabilities.
        ``spike_k`` is how many predictive standard deviations make a sample suspect, and ``spike_hold``
        how many consecutive suspect samples are ignored before they count as a level shift.
        """
        if horizon_s < 0:
            raise ValueError("horizon_s must be >= 0")
        if not 0.0 <= decision_level <= 1.0:
            raise ValueError("decision_level must be in [0, 1]")
        if not scales_s or min(scales_s) <= 0:
            raise ValueError("scales_s must be a non-empty tuple of positive time constants")
        if spike_k <= 0 or spike_hold < 0 or noise_floor <= 0:
            raise ValueError("spike_k and noise_floor must be > 0, spike_hold >= 0")
        self.threshold = float(threshold)
        self.horizon_s = float(horizon_s)
        self.decision_level = decision_level
        self.scales_s = tuple(sorted(scales_s))
        self.spike_k = spike_k
        self.spike_hold = spike_hold
        self.noise_floor = noise_floor
        self.detector = AnomalyDetector(detector_config)
        self._fits = [_EWLine(s) for s in self.scales_s]
        self._suspects: list[tuple[float, float]] = []  # consecutive suspect samples (raw), same side
        self._suspect_sign = 0
        self._last_t: float | None = None

    def _reset(self, samples: list[tuple[float, float]]) -> None:
        self._fits = [_EWLine(s) for s in self.scales_s]
        for t, y in samples:
            for f in self._fits:
                f.push(t, y)

    def update(self, t: float, value: float) -> Prediction:
        """Consume one sample and return the prediction. ``t`` in seconds, non-decreasing."""
        x = float(value)
        t = float(t)
        if not math.isfinite(x) or not math.isfinite(t):
            raise ValueError(f"sample must be finite, got t={t!r} value={value!r}")
        last_t = self._last_t
        if last_t is not None and t < last_t:
            t = last_t  # a clock step backwards: keep the series ordered
        self._last_t = t
        score = self.detector.update(t, x)
        thr = self.threshold
        floor = self.noise_floor

        # Is this sample plausible under the short-scale fit (which tracks ramps best)?
        transient = False
        short = self._fits[0]
        dt = t - last_t if last_t is not None else 0.0
        y_hat, sd, _ = short.predict(dt, floor)
        if short.n_eff() >= 3.0 and abs(x - y_hat) > self.spike_k * sd:
            sign = 1 if x > y_hat else -1
            if sign != self._suspect_sign:
                self._suspects = []
                self._suspect_sign = sign
            self._suspects.append((t, x))
            if len(self._suspects) > self.spike_hold:
                # Not a spike: a level shift. Restart the fits from the new level.
                self._reset(self._suspects)
                self._suspects = []
                self._suspect_sign = 0
            else:
                # Suspect: keep it out of the fits (clip it to the edge of the plausible band).
                clipped = y_hat + sign * self.spike_k * sd
                for f in self._fits:
                    f.push(t, clipped)
                transient = x >= thr and y_hat < thr
        else:
            self._suspects = []
            self._suspect_sign = 0
            for f in self._fits:
                f.push(t, x)

        # Probability of reaching the threshold within the horizon: the most alarmed usable scale.
        p_cross = 0.0
        level, _, slope = self._fits[-1].predict(0.0, floor)
        for f in self._fits:
            if f.n_eff() < 1.5:
                continue
            y0, _, b = f.predict(0.0, floor)
            dx = self.horizon_s if b > 0.0 else 0.0
            y1, sd1, _ = f.predict(dx, floor)
            p = normal_cdf((y1 - thr) / sd1)
            if p >= p_cross:
                p_cross, level, slope = p, y0, b
        if level >= thr:
            eta: float | None = 0.0
        elif slope > 0.0:
            eta = (thr - level) / slope
        else:
            eta = None
        should = p_cross >= self.decision_level and not transient
        reason = self._reason(x, level, slope, p_cross, eta, transient)
        return Prediction(t, x, level, slope, score, p_cross, transient, should, eta, reason)

    def _reason(self, x: float, level: float, slope: float, p: float, eta: float | None, transient: bool) -> str:
        thr = self.threshold
        if transient:
            return f"spike to {x:.1f}% over {thr:g}% looks transient (level {level:.1f}%), holding back"
        if eta == 0.0:
            return f"level {level:.1f}% at or above {thr:g}% (p={p:.2f})"
        if eta is not None and eta <= self.horizon_s * 2:
            return f"trend {slope:+.2f}%/s, crosses {thr:g}% in ~{eta:.0f} s (p={p:.2f})"
        return f"level {level:.1f}%, trend {slope:+.2f}%/s, below {thr:g}% (p={p:.2f})"
