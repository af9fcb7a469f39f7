"""Streaming anomaly detection for one metric series (cpu, memory, ...).

Why this design: an agent on an edge node must score every sample as it arrives, in microseconds, with
bounded memory and without an ML framework, and the score must mean the same thing on series it was never
tuned on. So the detector is a handful of robust online statistics whose surprises are turned into
calibrated tail probabilities, as in the HTM/NAB "anomaly likelihood":

1. **Raw surprise signals**, each ``|error| / typical |error|`` squashed to [0, 1]:

   * *step*: the change from the previous sample (catches spikes and sudden jumps);
   * *level* (off by default, ``use_level``): a fast EWMA against a slow EWMA, scaled by the slow EWMA's
     mean absolute deviation. It catches drifts that no single step reveals, but leave-one-category-out on
     NAB left it out in every fold (on, it finds one more NAB window and raises a quarter more alarms);
   * *daily profile*: the value against what this series did at the same time of day (a 288-bin
     time-of-day profile, 5-minute bins, each an EWMA over days), which catches broken daily patterns —
     e.g. a nightly dip that did not happen. The profile is indexed by timestamp, so its memory does not
     depend on the sampling rate.

2. **Anomaly likelihood** per signal (:class:`~updraft.predict._stats.AnomalyLikelihood`): the short-term
   average of the raw signal against its own long-term distribution gives a tail probability; a series
   that is always noisy stops alarming, and a sustained moderate surprise stands out. The smallest of the
   tail probabilities is kept and mapped to [0, 1] on a log scale (tail 1e-5 -> 0.5, 1e-10 -> 1).
   The output is *graded*: a threshold on it is a threshold on a tail probability, so raising it trades
   recall for false alarms on every series alike. A red sample (tail <= 1e-5) right after a red sample is
   damped to yellow (1e-4), so a sustained surprise gives one red sample (HTM's likelihood filter).

3. **Range novelty**: a value outside everything seen so far (by more than ``range_tolerance`` of the
   seen range) scores 1 — a new all-time high is exactly what an overload looks like. The first
   ``range_startup`` samples do not count towards the seen range: a start-up spike is not the series'
   normal range.

4. **One likelihood alarm per episode** (``quiet``): an alarm (a score at or above 0.5, or a range break)
   starts an episode of ``quiet`` samples. Inside it, likelihood alarms are mapped into [0.45, 0.495]
   (still ordered, but below the alarm level); range breaks still score 1, because each one is news. An
   anomaly is one event for the scheduler and for NAB, whose scorer counts every alarming row outside a
   window as a false positive but only the first one inside it.

The typical-error scales are EWMAs started at zero, so they are divided by their weight sum (as in Adam's
bias correction): otherwise every sample of the first ~100 looks hugely surprising. For the same reason an
error seen before any scale exists (weight sum 0) scores 0, not 1.

The configuration was chosen by leave-one-category-out evaluation on NAB (``bench/nab_eval.py``,
``docs/predict.md``): every choice was scored on categories it was not chosen on. The previous design
(record gating: a tail believed only when the signal set a new record for the series) scored 68.8 on the
same data in-sample, but 63.1 with the threshold chosen on the other categories and 30.6 on a NAB
category it had never seen, because its output was nearly binary.

Everything is O(1) per sample; memory is a ring buffer of ``history`` doubles per signal in use (two by
default, about 140 KB) plus 288 profile bins.
A score never depends on later samples.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

from updraft.predict._stats import AnomalyLikelihood, log_score


@dataclass(frozen=True)
class DetectorConfig:
    """Parameters of :class:`AnomalyDetector`. Defaults are the ones evaluated in ``bench/nab_eval.py``.

    ``quiet``, ``scale_alpha`` and ``season_alpha`` are chosen by leave-one-category-out on NAB
    (``bench/nab_eval.py``), and ``use_level`` was in an earlier grid; the others were chosen earlier for the
    whole corpus (never per file). ``docs/predict.md`` shows how their neighbours score.
    """

    #: Learning period in samples: until then the likelihoods have no opinion (score ~0.03) and range
    #: novelty is not reported.
    learn: int = 300
    #: Length of the long-term distribution of averaged raw scores, in samples.
    history: int = 8640
    #: Short-term averaging window of raw scores, in samples.
    avg: int = 20
    #: Samples between re-estimates of the long-term distribution.
    reestimate: int = 100
    #: EWMA weight per sample of the typical absolute error (scale of every raw signal).
    scale_alpha: float = 0.005
    #: A raw signal of ``z`` typical errors scores ``1 - exp(-(z / z_scale)^2 / 2)``.
    z_scale: float = 3.0
    #: Fast and slow EWMA weights per sample of the level signal.
    level_fast_alpha: float = 0.2
    level_slow_alpha: float = 0.005
    #: Daily profile: period (s), number of bins, and EWMA weight per visit of a bin.
    season_s: float = 86400.0
    season_bins: int = 288
    season_alpha: float = 0.1
    #: Tail probability that counts as "red" (score 0.5, the alarm level), and the "yellow" level (score 0.4)
    #: a red sample right after a red sample (the same surprise) is damped to.
    red_tail: float = 1e-5
    yellow_tail: float = 1e-4
    #: A value beyond the seen range by more than this fraction of the range scores 1.
    range_tolerance: float = 0.05
    #: The first samples of a series are start-up transients (the agent's own start-up load, a counter's
    #: first delta): they are scored, but they do not widen the seen range. Otherwise one start-up spike
    #: would hide every later overload below it from range novelty for the life of the series.
    range_startup: int = 20
    #: One likelihood alarm per episode: for this many samples after an alarm (a score at or above 0.5, or a
    #: range break), likelihood scores at or above 0.5 are mapped into [0.45, 0.495]; range breaks still
    #: score 1. 0 switches it off. Chosen by leave-one-category-out on NAB (candidates 0, 100, 200, 400).
    quiet: int = 100
    #: Switches for the individual signals. The level signal is off: leave-one-category-out chose it so.
    use_range: bool = True
    use_season: bool = True
    use_level: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.avg <= self.history or self.learn < 1 or self.reestimate < 1:
            raise ValueError("need 1 <= avg <= history, learn >= 1 and reestimate >= 1")
        if self.quiet < 0:
            raise ValueError("quiet must be >= 0")
        if not 0 <= self.range_startup < self.learn:
            raise ValueError("range_startup must be >= 0 and below learn (range novelty starts after learn)")


#: Score of a red tail probability (1e-5): the alarm level of the episode rule.
_ALARM = 0.5
#: An alarm inside an episode, a score in [0.5, 1], is mapped to ``_DAMPED + _DAMP_SLOPE * (score - _ALARM)``,
#: in [0.45, 0.495]: below the alarm level, in the same order.
_DAMPED = 0.45
_DAMP_SLOPE = 0.09


def _squash(err: float, scale: float, k: float) -> float:
    """Map ``err`` typical errors to [0, 1): a smooth, saturating surprise."""
    if scale <= 0.0:
        return 0.0 if err == 0.0 else 1.0
    z = err / (scale * k)
    return 1.0 - math.exp(-0.5 * z * z) if z < 40.0 else 1.0


@dataclass(frozen=True)
class Score:
    """Everything the detector knows about one sample (for explanations and debugging)."""

    score: float  # final anomaly score in [0, 1]
    tail: float  # smallest tail probability of the signals in use (after the red-after-red damping)
    novel_range: bool  # value outside the range seen so far
    step_raw: float
    level_raw: float
    season_raw: float


class AnomalyDetector:
    """Online anomaly score in [0, 1] for one series; see the module docstring for the method.

    ``update(t, value)`` must be called with non-decreasing ``t`` (seconds, e.g. Unix time). Scale-free:
    works the same for percentages and for bytes per second.
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        c = config or DetectorConfig()
        self.config = c
        self._n = 0
        self._last: float | None = None
        self._step_scale = 0.0
        self._lvl_fast = 0.0
        self._lvl_slow = 0.0
        self._lvl_scale = 0.0
        self._season = array("d", [math.nan]) * c.season_bins
        self._season_scale = 0.0
        self._lik_step = AnomalyLikelihood(c.history, c.avg, c.reestimate, c.learn)
        lik = (c.history, c.avg, c.reestimate, c.learn)
        self._lik_level = AnomalyLikelihood(*lik) if c.use_level else None
        self._lik_season = AnomalyLikelihood(*lik) if c.use_season else None
        self._min = math.inf
        self._max = -math.inf
        # weight sums of the three scale EWMAs (bias correction)
        self._w_step = 0.0
        self._w_lvl = 0.0
        self._w_season = 0.0
        self._prev_red = False
        self._since_alarm = c.quiet  # samples since the last alarm (the first sample is outside any episode)
        self.last: Score | None = None

    @property
    def samples(self) -> int:
        """Number of samples seen."""
        return self._n

    def update(self, t: float, value: float) -> float:
        """Score one sample; returns the anomaly score in [0, 1] (also kept in :attr:`last`)."""
        return self.update_detail(t, value).score

    def update_detail(self, t: float, value: float) -> Score:
        """Like :meth:`update` but returns the components of the score."""
        x = float(value)
        if not math.isfinite(x):
            raise ValueError(f"sample value must be finite, got {value!r}")
        c = self.config
        self._n += 1
        k = c.z_scale
        a = c.scale_alpha

        # 1. raw surprise signals
        last = self._last
        if last is None:
            step_raw = level_raw = season_raw = 0.0
            self._lvl_fast = self._lvl_slow = x
        else:
            e = abs(x - last)
            s = self._step_scale
            w = self._w_step
            step_raw = _squash(e, s / w, k) if w > 0.0 else 0.0
            self._step_scale = s + a * (e - s)
            self._w_step = w + a * (1.0 - w)
            if c.use_level:
                la = c.level_slow_alpha
                self._lvl_fast += c.level_fast_alpha * (x - self._lvl_fast)
                s = self._lvl_scale
                w = self._w_lvl
                level_raw = _squash(abs(self._lvl_fast - self._lvl_slow), s / w, k) if w > 0.0 else 0.0
                self._lvl_scale = s + la * (abs(x - self._lvl_slow) - s)
                self._w_lvl = w + la * (1.0 - w)
                self._lvl_slow += la * (x - self._lvl_slow)
            else:
                level_raw = 0.0
            season_raw = 0.0
        self._last = x
        if c.use_season:
            b = int((t % c.season_s) / c.season_s * c.season_bins) % c.season_bins
            p = self._season[b]
            if p == p:  # not NaN: this bin has been visited before
                e = abs(x - p)
                s = self._season_scale
                w = self._w_season
                season_raw = _squash(e, s / w, k) if w > 0.0 else 0.0
                self._season_scale = s + a * (e - s)
                self._w_season = w + a * (1.0 - w)
                self._season[b] = p + c.season_alpha * (x - p)
            else:
                self._season[b] = x

        # 2. anomaly likelihood of each signal; keep the most surprising
        tail = self._lik_step.update(step_raw)
        if self._lik_level is not None:
            tail = min(tail, self._lik_level.update(level_raw))
        if self._lik_season is not None:
            tail = min(tail, self._lik_season.update(season_raw))
        # one red sample per episode: the following consecutive reds are damped (HTM's likelihood filter)
        if tail <= c.red_tail:
            if self._prev_red:
                tail = c.yellow_tail
            self._prev_red = True
        else:
            self._prev_red = False
        score = log_score(tail)

        # 3. range novelty
        novel = False
        if c.use_range and self._max > self._min:
            tol = (self._max - self._min) * c.range_tolerance
            novel = x > self._max + tol or x < self._min - tol
        if self._n > c.range_startup:
            if x < self._min:
                self._min = x
            if x > self._max:
                self._max = x
        novel = novel and self._n >= c.learn

        # 4. one likelihood alarm per episode; a range break always alarms
        if c.quiet:
            self._since_alarm += 1
            if score >= _ALARM or novel:
                if self._since_alarm > c.quiet:
                    self._since_alarm = 0  # a new episode
                elif not novel:
                    score = _DAMPED + _DAMP_SLOPE * (score - _ALARM)
        if novel:
            score = 1.0
        res = Score(score, tail, novel, step_raw, level_raw, season_raw)
        self.last = res
        return res
