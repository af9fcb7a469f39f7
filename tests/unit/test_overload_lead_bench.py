"""The episode bookkeeping of bench/overload_lead.py on hand-made traces (the replay itself is the benchmark)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import overload_lead as ol  # noqa: E402


def test_an_episode_lasts_until_the_value_leaves_the_hysteresis_band() -> None:
    # 76 starts an episode; hovering 70-80 is the same episode; 60 (< 75 - 10) ends it; 90 starts a new one
    values = [50, 76, 70, 80, 74, 60, 90, 91]
    assert ol.episodes([float(v) for v in values], 75.0, 10.0) == [1, 6]


def test_episodes_are_classified_and_credited_to_the_advice_before_them() -> None:
    low = [20.0] * (ol.WARMUP + 5)
    trace = low + [70.0, 80.0, 85.0, 20.0] + [20.0] * 40 + [90.0, 20.0] + [20.0] * 40 + [95.0, 96.0] + [20.0] * 40
    gradual, jump = trace.index(80.0), trace.index(95.0)
    advice = [False] * len(trace)
    advice[gradual - 2] = advice[gradual - 1] = advice[gradual] = True  # two samples ahead of the crossing
    advice[jump + 1] = True  # acted on the second sample of the jump
    t = ol.Tally()
    ol.tally(trace, advice, 75.0, 10.0, t)
    assert (t.gradual, t.jumps, t.spikes) == (1, 1, 1)
    # two samples before the static line on the gradual one, one sample after it on the jump
    assert sorted(t.delays) == [-2, 1] and t.never == 0 and t.spikes_acted == 0
    assert t.share(lambda d: d < 0) == 50.0
    # two advice onsets, both followed by a crossing within the horizon
    assert (t.advice_onsets, t.advice_without_crossing) == (2, 0)
