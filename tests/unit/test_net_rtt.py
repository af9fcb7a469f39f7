"""RFC 6298 estimator: worked sequences, clamping, back-off and Karn's rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from updraft.clock import FakeClock
from updraft.net import RttEstimator


def test_initial_timeout_before_any_sample_is_one_second() -> None:
    est = RttEstimator()
    assert est.srtt is None and est.rttvar is None
    assert est.timeout == 1.0


def test_worked_sequence_100_120_80_ms() -> None:
    est = RttEstimator(min_rto=0.001)

    # Sample 1, R = 0.100: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4·RTTVAR.
    est.observe(0.100)
    assert est.srtt == pytest.approx(0.100)
    assert est.rttvar == pytest.approx(0.050)
    assert est.timeout == pytest.approx(0.100 + 4 * 0.050)  # 0.300

    # Sample 2, R = 0.120: RTTVAR first, with the old SRTT.
    #   RTTVAR = 3/4·0.050 + 1/4·|0.100 − 0.120| = 0.0375 + 0.005 = 0.0425
    #   SRTT   = 7/8·0.100 + 1/8·0.120           = 0.0875 + 0.015 = 0.1025
    #   RTO    = 0.1025 + 4·0.0425 = 0.2725
    est.observe(0.120)
    assert est.rttvar == pytest.approx(0.0425)
    assert est.srtt == pytest.approx(0.1025)
    assert est.timeout == pytest.approx(0.2725)

    # Sample 3, R = 0.080:
    #   RTTVAR = 3/4·0.0425 + 1/4·|0.1025 − 0.080| = 0.031875 + 0.005625 = 0.0375
    #   SRTT   = 7/8·0.1025 + 1/8·0.080            = 0.0896875 + 0.010   = 0.0996875
    #   RTO    = 0.0996875 + 4·0.0375 = 0.2496875
    est.observe(0.080)
    assert est.rttvar == pytest.approx(0.0375)
    assert est.srtt == pytest.approx(0.0996875)
    assert est.timeout == pytest.approx(0.2496875)


def test_steady_samples_converge_and_are_floored_by_min_rto() -> None:
    est = RttEstimator()  # min_rto 0.2 s
    for _ in range(200):
        est.observe(0.010)
    assert est.srtt == pytest.approx(0.010)
    assert est.rttvar == pytest.approx(0.0, abs=1e-9)
    assert est.timeout == 0.2


def test_clamped_to_max() -> None:
    est = RttEstimator(max_rto=60.0)
    est.observe(30.0)  # 30 + 4·15 = 90 → 60
    assert est.base_rto == 60.0
    assert est.timeout == 60.0


def test_granularity_is_a_floor_for_the_variance_term() -> None:
    est = RttEstimator(min_rto=0.001, granularity=0.5)
    for _ in range(100):
        est.observe(0.1)
    assert est.timeout == pytest.approx(0.1 + 0.5)


def test_timeout_doubles_and_a_good_sample_resets_it() -> None:
    est = RttEstimator(min_rto=0.001)
    est.observe(0.100)  # RTO 0.3
    assert est.on_timeout() == pytest.approx(0.6)
    assert est.on_timeout() == pytest.approx(1.2)
    assert est.on_timeout() == pytest.approx(2.4)
    assert est.backoffs == 3
    est.observe(0.100)
    # RTTVAR = 3/4·0.05 + 0 = 0.0375; SRTT stays 0.1; RTO = 0.1 + 0.15 = 0.25, no more doubling.
    assert est.backoffs == 0
    assert est.timeout == pytest.approx(0.25)


def test_backoff_before_first_sample_starts_from_initial_rto() -> None:
    est = RttEstimator()
    assert [est.on_timeout() for _ in range(3)] == [2.0, 4.0, 8.0]


def test_backoff_is_capped_at_max() -> None:
    est = RttEstimator(max_rto=10.0)
    values = [est.on_timeout() for _ in range(50)]
    assert values[:3] == [2.0, 4.0, 8.0]
    assert set(values[3:]) == {10.0}
    assert est.backoffs == 4  # stops counting once capped: no overflow, quick recovery


def test_karn_retried_sample_is_ignored_and_backoff_kept() -> None:
    est = RttEstimator(min_rto=0.001)
    est.observe(0.100)
    est.on_timeout()  # 0.6
    assert est.observe(5.0, retried=True) is False
    assert est.srtt == pytest.approx(0.100)
    assert est.rttvar == pytest.approx(0.050)
    assert est.timeout == pytest.approx(0.6)  # back-off stays until a valid sample
    assert est.observe(0.100) is True
    assert est.backoffs == 0


def test_karn_first_sample_must_be_unambiguous() -> None:
    est = RttEstimator()
    est.observe(0.5, retried=True)
    assert est.srtt is None
    assert est.timeout == 1.0


def test_start_finish_use_the_injected_clock() -> None:
    clock = FakeClock()
    est = RttEstimator(clock=clock, min_rto=0.001)
    t0 = est.start()
    clock.advance(0.25)
    assert est.finish(t0) == pytest.approx(0.25)
    assert est.srtt == pytest.approx(0.25)
    t1 = est.start()
    clock.advance(9.0)
    est.finish(t1, retried=True)
    assert est.srtt == pytest.approx(0.25)
    snap = est.snapshot()
    assert snap.samples == 1 and snap.rto == pytest.approx(0.25 + 4 * 0.125)


def test_invalid_configuration_and_samples() -> None:
    with pytest.raises(ValueError):
        RttEstimator(min_rto=2.0, max_rto=1.0)
    with pytest.raises(ValueError):
        RttEstimator(initial_rto=0)
    with pytest.raises(ValueError):
        RttEstimator().observe(-0.1)


@given(st.lists(st.floats(min_value=0.0, max_value=120.0), min_size=1, max_size=50))
def test_timeout_always_within_bounds(samples: list[float]) -> None:
    est = RttEstimator(min_rto=0.2, max_rto=60.0)
    for r in samples:
        est.observe(r)
        assert 0.2 <= est.timeout <= 60.0
        assert est.srtt is not None and min(samples) - 1e-9 <= est.srtt <= max(samples) + 1e-9
