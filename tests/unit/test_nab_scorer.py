"""The NAB scorer against hand computations on small, hand-made series.

Expected values are written out from the NAB rules (scaled sigmoid 2/(1+e^{5y})-1, TP reward normalised by
its value at the window start, FP cost 0.11 * sigmoid of the distance past the previous window), not taken
from the implementation.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import nab_score as nab  # bench/ is not a package: the scorer is an evaluation tool


def sig(y: float) -> float:
    """The scaled sigmoid, spelled out independently of the module."""
    return -1.0 if y >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


SIG_M1 = 0.9866142981514305  # sig(-1) by hand: 2 / (1 + e^-5) - 1


def test_scaled_sigmoid_reference_points() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(SIG_M1)
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.8482836399575131)
    assert nab.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-SIG_M1)
    assert nab.scaled_sigmoid(3.0) == -1.0
    assert nab.scaled_sigmoid(10.0) == -1.0


def test_probationary_length_is_15_percent_capped_at_750() -> None:
    assert nab.probationary_length(100) == 15
    assert nab.probationary_length(4032) == 604
    assert nab.probationary_length(15902) == 750


def test_window_rows_maps_timestamps_inclusively() -> None:
    ts = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert nab.window_rows(ts, [(10.0, 30.0)]) == [(1, 3)]
    assert nab.window_rows(ts, [(5.0, 35.0)]) == [(1, 3)]
    assert nab.window_rows(ts, [(41.0, 49.0)]) == []  # no row inside: cannot be scored


N = 100  # rows; probation = 15
WIN = (40, 49)  # width 10


def score(
    rows: list[int], windows: list[tuple[int, int]] | None = None, profile: nab.CostProfile = nab.STANDARD
) -> float:
    rw = nab.row_weights(N, [WIN] if windows is None else windows, profile)
    det = np.zeros(N, dtype=bool)
    det[rows] = True
    return nab.score_detections(det, rw, profile).score


def test_detection_at_window_start_is_worth_exactly_a_tp() -> None:
    assert score([40]) == pytest.approx(1.0)


def test_detection_mid_window_by_hand() -> None:
    # row 45: y = -(49 - 45 + 1) / 10 = -0.5 -> sig(-0.5) / sig(-1) = 0.848284 / 0.986614
    assert score([45]) == pytest.approx(0.8597925669097837)


def test_only_first_detection_in_window_counts() -> None:
    assert score([45, 47, 49]) == pytest.approx(score([45]))


def test_missed_window_costs_fn_weight() -> None:
    assert score([]) == pytest.approx(-1.0)
    assert score([], profile=nab.REWARD_LOW_FN) == pytest.approx(-2.0)


def test_fp_before_any_window_costs_full_fp_weight() -> None:
    assert score([20, 40]) == pytest.approx(1.0 - 0.11)
    assert score([20, 40], profile=nab.REWARD_LOW_FP) == pytest.approx(1.0 - 0.22)


def test_fp_after_window_is_discounted_by_distance() -> None:
    # row 54: y = |49 - 54| / (10 - 1) = 5/9 -> 0.11 * sig(5/9) = -0.0971219
    assert score([40, 54]) == pytest.approx(1.0 - 0.09712188136763907)
    # far past the window (y >= 3): full cost
    assert score([40, 49 + 27]) == pytest.approx(1.0 - 0.11)


def test_probationary_detections_are_ignored() -> None:
    assert score([3, 10, 40]) == pytest.approx(1.0)


def test_composite_series_by_hand() -> None:
    windows = [(30, 39), (70, 79)]
    # 5: probation (ignored); 20: FP, no window before (-0.11); 33: TP at y=-(39-33+1)/10=-0.7;
    # 36: second in window (ignored); 45: FP, y=6/9; window 2 missed (-1).
    expected = -0.11 + sig(-0.7) / SIG_M1 + 0.11 * sig(6 / 9) - 1.0
    assert score([5, 20, 33, 36, 45], windows) == pytest.approx(expected)


def test_overlapping_windows_are_rejected() -> None:
    with pytest.raises(ValueError):
        nab.row_weights(N, [(10, 20), (20, 30)])


def _corpus(seed: int) -> list[tuple[np.ndarray, nab.RowWeights]]:
    rng = np.random.default_rng(seed)
    out = []
    for n, wins in [(200, [(60, 79), (150, 169)]), (120, [(90, 99)]), (80, [])]:
        out.append((rng.random(n), nab.row_weights(n, wins)))
    return out


def test_null_and_perfect_detectors_normalise_to_0_and_100() -> None:
    corpus = _corpus(0)
    n_windows = nab.count_windows(corpus)
    assert n_windows == 3
    null = [(np.zeros(rw.weight.shape[0]), rw) for _, rw in corpus]
    _, raw = nab.sweep(null).best()
    assert nab.normalise(raw, n_windows) == pytest.approx(0.0)
    perfect = []
    for _, rw in corpus:
        s = np.zeros(rw.weight.shape[0])
        for a, _ in rw.windows:
            s[a] = 1.0
        perfect.append((s, rw))
    thr, raw = nab.sweep(perfect).best()
    assert thr == 1.0
    assert nab.normalise(raw, n_windows) == pytest.approx(100.0)
    for prof in nab.PROFILES:
        assert nab.normalise(nab.null_score(3, prof), 3, prof) == 0.0
        assert nab.normalise(nab.perfect_score(3, prof), 3, prof) == 100.0


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_sweep_matches_scoring_each_threshold(seed: int) -> None:
    """The vectorised sweep equals scoring the detections at every threshold one by one."""
    corpus = _corpus(seed)
    rng = np.random.default_rng(seed + 1)
    corpus = [(np.round(s * 10) / 10 if rng.random() < 0.5 else s, rw) for s, rw in corpus]  # add ties
    sw = nab.sweep(corpus)
    picks = rng.choice(len(sw.thresholds), size=min(15, len(sw.thresholds)), replace=False)
    for j in picks:
        thr = sw.thresholds[j]
        direct = sum(nab.score_detections(s >= thr, rw).score for s, rw in corpus)
        assert sw.raw[j] == pytest.approx(direct)
