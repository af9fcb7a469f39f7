"""Behaviour of the streaming anomaly detector and the overload predictor on synthetic series."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft.predict import AnomalyDetector, DetectorConfig, OverloadPredictor, Prediction


def noisy(n: int, level: float, sd: float, seed: int = 0) -> list[float]:
    r = random.Random(seed)
    return [level + r.gauss(0.0, sd) for _ in range(n)]


# ---------------------------------------------------------------- overload predictor


def test_ramp_is_predicted_before_it_crosses_the_threshold() -> None:
    p = OverloadPredictor(threshold=75.0, horizon_s=30.0)
    r = random.Random(1)
    first_offload = first_cross = None
    for t in range(300):
        v = 40.0 + r.gauss(0, 1) if t < 120 else 40.0 + (t - 120) * 1.0 + r.gauss(0, 1)
        pred = p.update(float(t), v)
        if t < 120:
            assert not pred.should_offload
        if pred.should_offload and first_offload is None:
            first_offload = t
            assert "crosses 75% in ~" in pred.reason
        if v >= 75.0 and first_cross is None:
            first_cross = t
    assert first_offload is not None and first_cross is not None
    assert first_offload <= first_cross - 5, (first_offload, first_cross)


def test_single_spike_does_not_trigger_an_offload() -> None:
    p = OverloadPredictor(threshold=75.0, horizon_s=30.0)
    values = noisy(400, 50.0, 1.5, seed=2)
    values[250] = 98.0
    for t, v in enumerate(values):
        pred = p.update(float(t), v)
        assert not pred.should_offload, (t, pred)
        if t == 250:
            assert pred.transient
            assert "transient" in pred.reason
            assert pred.p_cross < 0.5


def test_level_shift_over_threshold_offloads_on_the_second_sample() -> None:
    p = OverloadPredictor(threshold=75.0, horizon_s=30.0)
    values = noisy(200, 45.0, 1.0, seed=3) + noisy(50, 90.0, 1.0, seed=4)
    preds = [p.update(float(t), v) for t, v in enumerate(values)]
    assert not any(x.should_offload for x in preds[:200])
    assert preds[200].transient and not preds[200].should_offload
    assert all(x.should_offload for x in preds[201:])
    assert preds[-1].reason.startswith("level")


def test_noisy_flat_series_below_threshold_never_offloads() -> None:
    p = OverloadPredictor(threshold=75.0, horizon_s=30.0)
    for t, v in enumerate(noisy(5000, 60.0, 3.0, seed=5)):
        assert not p.update(float(t), v).should_offload


def test_prediction_fields_are_in_range() -> None:
    p = OverloadPredictor(threshold=75.0, horizon_s=30.0)
    for t, v in enumerate(noisy(500, 70.0, 5.0, seed=6)):
        pred = p.update(t * 2.0, min(max(v, 0.0), 100.0))
        assert isinstance(pred, Prediction)
        assert 0.0 <= pred.anomaly_score <= 1.0
        assert 0.0 <= pred.p_cross <= 1.0
        assert pred.should_offload == (pred.p_cross >= p.decision_level and not pred.transient)
        assert pred.reason


def test_rejects_non_finite_samples() -> None:
    p = OverloadPredictor()
    with pytest.raises(ValueError):
        p.update(0.0, math.nan)
    with pytest.raises(ValueError):
        AnomalyDetector().update(0.0, math.inf)


def test_clock_stepping_backwards_is_tolerated() -> None:
    p = OverloadPredictor()
    p.update(10.0, 40.0)
    pred = p.update(5.0, 41.0)
    assert pred.t == 10.0


# ---------------------------------------------------------------- anomaly detector


def test_level_shift_is_detected() -> None:
    d = AnomalyDetector()
    values = noisy(2000, 100.0, 5.0, seed=7) + noisy(200, 130.0, 5.0, seed=8)
    scores = [d.update(t * 300.0, v) for t, v in enumerate(values)]
    assert max(scores[2000:2010]) >= 0.5
    # before the shift, after learning, alarms are rare
    assert sum(s >= 0.5 for s in scores[300:2000]) <= 3


def test_single_spike_is_scored_but_does_not_keep_alarming() -> None:
    d = AnomalyDetector()
    values = noisy(3000, 20.0, 1.0, seed=9)
    values[2500] = 60.0
    scores = [d.update(t * 60.0, v) for t, v in enumerate(values)]
    assert scores[2500] == 1.0  # far outside anything seen
    assert sum(s >= 0.5 for s in scores[2501:]) <= 1


def test_a_start_up_spike_does_not_hide_later_overloads_from_range_novelty() -> None:
    # the agent's own start-up load: 95 % for the first samples, then a node idling at 20 %. A later climb
    # to 60 % is a new high for the running node and must score as range novelty, although it stays
    # below the start-up value.
    values = [95.0] * 3 + noisy(2000, 20.0, 1.0, seed=12) + [60.0]
    d = AnomalyDetector()
    scores = [d.update_detail(t * 60.0, v) for t, v in enumerate(values)]
    assert scores[-1].novel_range and scores[-1].score == 1.0
    # with the start-up samples counted as the normal range, the climb would be hidden
    hidden = AnomalyDetector(DetectorConfig(range_startup=0))
    assert not [hidden.update_detail(t * 60.0, v) for t, v in enumerate(values)][-1].novel_range


def test_detector_config_rejects_windows_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="range_startup"):
        DetectorConfig(range_startup=300)  # the range would be empty when novelty starts
    with pytest.raises(ValueError, match="avg <= history"):
        DetectorConfig(avg=100, history=50)


def test_one_likelihood_alarm_per_episode_but_every_range_break_alarms() -> None:
    # a level shift lasting 100 samples, then (inside the same episode) a value far above anything seen
    values = noisy(2000, 100.0, 5.0, seed=7) + noisy(100, 130.0, 5.0, seed=8) + noisy(50, 100.0, 5.0, seed=9)
    values += [300.0, *noisy(600, 100.0, 5.0, seed=10)]
    quiet = AnomalyDetector(DetectorConfig(quiet=400))
    q = [quiet.update_detail(t * 300.0, v) for t, v in enumerate(values)]
    loud = AnomalyDetector(DetectorConfig(quiet=0))
    u = [loud.update(t * 300.0, v) for t, v in enumerate(values)]

    first = next(i for i in range(2000, len(q)) if q[i].score >= 0.5)
    assert first == 2000  # the shift is found at once
    episode = range(first + 1, first + 401)
    # without the episode rule the shift's likelihood alarms again inside the episode ...
    assert [i for i in episode if u[i] >= 0.5 and not q[i].novel_range]
    # ... with it, only range breaks alarm there (the spike to 300 among them), and they score 1
    breaks = [i for i in episode if q[i].score >= 0.5]
    assert 2150 in breaks and all(q[i].novel_range and q[i].score == 1.0 for i in breaks)
    # the rule changes nothing else: every score is the same, or a damped alarm mapped below 0.5 in order
    for i, (r, b) in enumerate(zip(q, u, strict=True)):
        a = r.score
        assert a == b or (b >= 0.5 and a == pytest.approx(0.45 + 0.09 * (b - 0.5)) and a < 0.5), i


def test_first_error_without_a_scale_is_not_a_surprise() -> None:
    # before any typical error is known there is no reference: the first step must not score as a
    # maximal surprise
    d = AnomalyDetector()
    d.update(0.0, 10.0)
    r = d.update_detail(300.0, 50.0)
    assert r.step_raw == 0.0 and r.level_raw == 0.0


def test_scores_are_in_unit_interval() -> None:
    d = AnomalyDetector()
    r = random.Random(10)
    for t in range(3000):
        s = d.update(float(t), r.expovariate(1.0) * (10 if t % 500 == 0 else 1))
        assert 0.0 <= s <= 1.0


def test_memory_is_bounded() -> None:
    cfg = DetectorConfig(history=500)
    d = AnomalyDetector(cfg)
    for t, v in enumerate(noisy(3000, 5.0, 1.0, seed=11)):
        d.update(float(t), v)
    assert len(d._lik_step._hist) == 500  # ring buffer, not a growing list
    assert len(d._season) == cfg.season_bins


# ---------------------------------------------------------------- online property

samples = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=600.0, allow_nan=False),  # time step
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=400,
)


def _times(steps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    t = 1.6e9
    out = []
    for dt, v in steps:
        t += dt
        out.append((t, v))
    return out


@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_appending_samples_never_changes_earlier_scores(
    prefix: list[tuple[float, float]], more: list[tuple[float, float]]
) -> None:
    cfg = DetectorConfig(learn=20, history=50, avg=5, reestimate=10, quiet=30, range_startup=5)
    series = _times(prefix + more)
    k = len(prefix)

    d1 = AnomalyDetector(cfg)
    short = [d1.update(t, v) for t, v in series[:k]]
    d2 = AnomalyDetector(cfg)
    full = [d2.update(t, v) for t, v in series]
    assert full[:k] == short

    p1 = OverloadPredictor(threshold=0.0, horizon_s=30.0, detector_config=cfg)
    short_p = [p1.update(t, v) for t, v in series[:k]]
    p2 = OverloadPredictor(threshold=0.0, horizon_s=30.0, detector_config=cfg)
    full_p = [p2.update(t, v) for t, v in series]
    assert full_p[:k] == short_p
