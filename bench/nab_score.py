"""The Numenta Anomaly Benchmark (NAB) scoring method, as pure functions (an evaluation tool, not runtime code).

Why this exists: Updraft claims its overload predictor detects anomalies early and rarely cries wolf. The
claim is only worth something if it is measured the way the field measures it, so this module re-implements
the published NAB scorer (Lavin & Ahmad 2015, NAB v1.1 "sweeper") instead of inventing a friendlier metric.
It is independent of the detector: it takes per-row scores and labelled windows and returns numbers.

The rules implemented here (and tested against hand computations in ``tests/unit/test_nab_scorer.py``):

* **Windows.** Each labelled anomaly window ``[start, end]`` (timestamps, inclusive) covers the rows whose
  timestamp lies in it. ``width`` is the number of rows in the window.
* **Detection.** Row ``i`` is a detection at threshold ``θ`` iff ``score[i] >= θ``. *Every* detecting row
  counts, not just rising edges.
* **Probationary period.** The first ``min(floor(0.15 * n), 0.15 * 5000)`` rows of a series are ignored
  (NAB caps the period at 750 rows so long series still get scored). Detections there count for nothing;
  a window is scored only if at least one of its rows lies after the period.
* **Scaled sigmoid.** ``σ(y) = 2 / (1 + e^{5y}) - 1``; ``σ(y) = -1`` for ``y >= 3`` (NAB's cut-off).
* **True positives.** A detecting row ``i`` inside a window with last row ``r`` is worth
  ``A_TP * σ(-(r - i + 1) / width) / σ(-1)``, so a detection on the first row of the window is worth
  exactly ``A_TP`` and one on the last row almost nothing. Only the *first* detection in a window counts
  (equivalently the best, since the reward falls monotonically through the window).
* **False negatives.** A scored window with no detection costs ``-A_FN``.
* **False positives.** A detecting row ``i`` outside every window is worth ``A_FP * σ(y)`` (a negative
  number) where ``y = |i - r_prev| / (width_prev - 1)`` measures the distance past the end ``r_prev`` of the
  closest preceding window (so an alarm just after a window is almost free); an FP with no preceding
  window is worth ``-A_FP`` (NAB sets ``y = 3``).
* **Profiles.** standard: ``A_TP = 1, A_FP = 0.11, A_FN = 1``; reward_low_FP: ``A_FP = 0.22``;
  reward_low_FN: ``A_FN = 2``.
* **Threshold.** One threshold per (detector, profile), chosen to maximise the raw score summed over the
  whole corpus (NAB does the same; it is never tuned per file).
* **Normalisation.** ``100 * (raw - null) / (perfect - null)`` where the null detector (never detects)
  scores ``-A_FN * n_windows`` and the perfect one (detects the first row of every window and nothing
  else) scores ``A_TP * n_windows``. NAB counts every labelled window for ``perfect``; with windows that
  all start after the probationary period (true for the shipped corpus) the two agree.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PROBATION_PERCENT = 0.15
#: NAB caps the probationary period at 15 % of 5000 rows.
PROBATION_CAP_ROWS = 5000


@dataclass(frozen=True)
class CostProfile:
    """NAB application profile: the weights of true positives, false positives and false negatives."""

    name: str
    tp: float
    fp: float
    fn: float


STANDARD = CostProfile("standard", tp=1.0, fp=0.11, fn=1.0)
REWARD_LOW_FP = CostProfile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0)
REWARD_LOW_FN = CostProfile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0)
PROFILES: tuple[CostProfile, ...] = (STANDARD, REWARD_LOW_FP, REWARD_LOW_FN)


def scaled_sigmoid(y: float) -> float:
    """NAB's reward curve: about +1 at y = -1 (window start), 0 at y = 0 (window end), -1 for y >= 3."""
    if y >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probationary_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a series whose detections are ignored (NAB: 15 %, at most 750 rows)."""
    return int(min(math.floor(percent * n_rows), percent * PROBATION_CAP_ROWS))


def window_rows(
    timestamps: Sequence[float] | FloatArray, windows: Sequence[tuple[float, float]]
) -> list[tuple[int, int]]:
    """Map windows given as inclusive ``(start, end)`` times to inclusive ``(first_row, last_row)`` indices.

    ``timestamps`` must be sorted ascending. Windows containing no row are dropped (they cannot be scored).
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    out: list[tuple[int, int]] = []
    for start, end in windows:
        a = int(np.searchsorted(ts, start, side="left"))
        b = int(np.searchsorted(ts, end, side="right")) - 1
        if a <= b:
            out.append((a, b))
    return sorted(out)


@dataclass(frozen=True)
class RowWeights:
    """Per-row NAB weights of one series for one profile (what a detection on that row would be worth).

    ``window_id[i]`` is the index (into ``windows``) of the window containing row ``i``, or -1. Rows of the
    probationary period have ``scored[i] == False``.
    """

    weight: FloatArray
    window_id: IntArray
    scored: npt.NDArray[np.bool_]
    windows: tuple[tuple[int, int], ...]
    scored_windows: tuple[int, ...]


def row_weights(
    n_rows: int, windows: Sequence[tuple[int, int]], profile: CostProfile = STANDARD, probation: int | None = None
) -> RowWeights:
    """Compute what a detection on every row of a series would earn (positive) or cost (negative)."""
    if probation is None:
        probation = probationary_length(n_rows)
    wins = tuple(sorted((int(a), int(b)) for a, b in windows))
    for (_, b0), (a1, _) in itertools.pairwise(wins):
        if a1 <= b0:
            raise ValueError("anomaly windows must not overlap")
    weight = np.empty(n_rows, dtype=np.float64)
    window_id = np.full(n_rows, -1, dtype=np.int64)
    max_tp = scaled_sigmoid(-1.0)
    prev_right: int | None = None
    prev_width = 0
    k = 0
    i = 0
    while i < n_rows:
        if k < len(wins) and i == wins[k][0]:
            a, b = wins[k]
            width = b - a + 1
            for j in range(a, min(b, n_rows - 1) + 1):
                weight[j] = scaled_sigmoid(-(b - j + 1) / width) * profile.tp / max_tp
                window_id[j] = k
            prev_right, prev_width = b, width
            i = b + 1
            k += 1
            continue
        if prev_right is None:
            y = 3.0
        elif prev_width <= 1:
            y = 3.0  # NAB would divide by zero here; treat as "far away"
        else:
            y = abs(prev_right - i) / (prev_width - 1)
        weight[i] = scaled_sigmoid(y) * profile.fp
        i += 1
    scored = np.arange(n_rows) >= probation
    scored_windows = tuple(k for k, (a, b) in enumerate(wins) if b >= probation)
    return RowWeights(weight, window_id, scored, wins, scored_windows)


@dataclass(frozen=True)
class FileScore:
    """NAB result of one series at one threshold."""

    score: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detecting rows outside windows (after the probationary period)
    first_detection: tuple[int | None, ...]  # per window: row of the first detection, or None


def score_detections(
    detections: npt.NDArray[np.bool_] | Sequence[bool], rw: RowWeights, profile: CostProfile = STANDARD
) -> FileScore:
    """Score a boolean detection vector of one series (the NAB ``Scorer`` for a fixed threshold)."""
    det = np.asarray(detections, dtype=bool) & rw.scored
    fp_rows = det & (rw.window_id < 0)
    score = float(rw.weight[fp_rows].sum())
    tp = fn = 0
    firsts: list[int | None] = []
    for k, (a, b) in enumerate(rw.windows):
        hits = np.flatnonzero(det[a : b + 1])
        first = int(a + hits[0]) if hits.size else None
        firsts.append(first)
        if k not in rw.scored_windows:
            continue
        if first is None:
            fn += 1
            score -= profile.fn
        else:
            tp += 1
            score += float(rw.weight[first])
    return FileScore(score, tp, fn, int(fp_rows.sum()), tuple(firsts))


def null_score(n_windows: int, profile: CostProfile = STANDARD) -> float:
    """Raw score of the detector that never fires."""
    return -profile.fn * n_windows


def perfect_score(n_windows: int, profile: CostProfile = STANDARD) -> float:
    """Raw score of the detector that fires on the first row of every window and nowhere else."""
    return profile.tp * n_windows


def normalise(raw: float, n_windows: int, profile: CostProfile = STANDARD) -> float:
    """NAB's reported score: 0 for the null detector, 100 for the perfect one."""
    null = null_score(n_windows, profile)
    perfect = perfect_score(n_windows, profile)
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True)
class Sweep:
    """Raw corpus score as a function of the threshold: ``raw[j]`` is the score with ``score >= thresholds[j]``.

    ``thresholds`` is descending and starts at ``+inf`` (nothing detected).
    """

    thresholds: FloatArray
    raw: FloatArray

    def best(self) -> tuple[float, float]:
        """The threshold with the highest raw score (the highest such threshold on ties) and that score."""
        j = int(np.argmax(self.raw))
        return float(self.thresholds[j]), float(self.raw[j])


def sweep(series: Sequence[tuple[FloatArray, RowWeights]], profile: CostProfile = STANDARD) -> Sweep:
    """Evaluate every distinct threshold over a corpus at once (NAB's ``calcScoreByThreshold``, vectorised).

    Lowering the threshold past a row's score turns that row into a detection. An FP row adds its weight; a
    window row raises that window's value from ``-A_FN`` to the best weight detected so far in it. Sorting all
    scored rows by descending score and accumulating those increments gives the exact score at every
    threshold in O(N log N).
    """
    scores_l: list[FloatArray] = []
    incr_l: list[FloatArray] = []
    n_windows = 0
    for scores, rw in series:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape[0] != rw.weight.shape[0]:
            raise ValueError("scores and row weights differ in length")
        m = rw.scored
        s_m = s[m]
        w_m = rw.weight[m]
        wid = rw.window_id[m]
        incr = np.where(wid < 0, w_m, 0.0)
        # Window rows: order by descending score, ties by row (stable), then running max within each window.
        win_rows = np.flatnonzero(wid >= 0)
        if win_rows.size:
            order = np.lexsort((win_rows, -s_m[win_rows], wid[win_rows]))
            rows = win_rows[order]
            ids = wid[rows]
            w = w_m[rows]
            for k in np.unique(ids):
                sel = ids == k
                wk = w[sel]
                best = np.maximum.accumulate(np.concatenate(([-profile.fn], wk)))
                incr[rows[sel]] = np.diff(best)
        n_windows += len(rw.scored_windows)
        scores_l.append(s_m)
        incr_l.append(incr)
    all_s = np.concatenate(scores_l) if scores_l else np.empty(0)
    all_i = np.concatenate(incr_l) if incr_l else np.empty(0)
    order = np.argsort(-all_s, kind="stable")
    s_sorted = all_s[order]
    cum = np.cumsum(all_i[order])
    base = null_score(n_windows, profile)
    if s_sorted.size == 0:
        return Sweep(np.array([np.inf]), np.array([base]))
    # The score at threshold s_sorted[j] includes every row with score >= s_sorted[j]: take the last index
    # of each run of equal scores.
    last = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
    thresholds = np.concatenate(([np.inf], s_sorted[last]))
    raw = np.concatenate(([base], base + cum[last]))
    return Sweep(thresholds, raw)


def count_windows(series: Sequence[tuple[FloatArray, RowWeights]]) -> int:
    """Number of scored windows in a corpus (the ``n_windows`` of :func:`normalise`)."""
    return sum(len(rw.scored_windows) for _, rw in series)
