"""Replay real CPU traces through the predictive and the static offload decision.

Why: ``bench/nab_eval.py`` shows that the anomaly detector finds labelled anomalies, but the offload
decision of ``policy.predictive`` rests on :class:`updraft.predict.OverloadPredictor`: offload when a
crossing of ``threshold_cpu`` is predicted within the horizon, hold back when the excursion over it looks
like a one-sample spike. NAB has no overload labels, but its CPU series (Amazon CloudWatch, percent) do cross
75 % and 90 %, so this benchmark asks of every crossing what the two policies would have done:

* **static** (``cpu >= threshold``): acts on the first sample over the line, never before, and acts on
  every one-sample spike;
* **predictive** (as the scheduler uses it: over the line and not transient, or ``should_offload``):
  did it advise an offload *before* the first sample over the line, and for how many samples; did it hold
  back on one-sample spikes; how often did its advice start with no crossing within the horizon.

The trace is replayed at one sample per second, the agents' heartbeat interval, with the predictor's
defaults (8 s and 30 s fits, 30 s horizon). NAB's samples are 5-minute averages, so the traces are
smoother and coarser than a node's own 1 s samples: the figures are about the decision logic on real
shapes, not about minutes of lead time.

Run: ``.venv/bin/python bench/overload_lead.py [--nab DIR]``; writes ``bench/results/overload_lead.json``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import _common  # noqa: F401  (import path)
from _common import table, write_results
from nab_eval import DEFAULT_NAB

from updraft.predict import OverloadPredictor
from updraft.scheduler import Policy

THRESHOLDS = (75.0, 90.0)
HORIZON = 30  # samples (seconds at one sample per heartbeat); the policy's default horizon_seconds
WARMUP = 30  # crossings before the fits have seen this many samples are not counted


@dataclass
class Tally:
    """What the two policies did at the overload episodes of one threshold, summed over series."""

    gradual: int = 0  # sustained episodes approached from within the hysteresis band (a trend could see them)
    jumps: int = 0  # sustained episodes entered in one step from below the band
    spikes: int = 0  # episodes whose next sample is already back below the band
    #: per sustained episode: samples from the first sample over the line to the predictive policy's first
    #: advice (negative: advised that many samples before; the static policy is 0 by definition)
    delays: list[int] = field(default_factory=list)
    never: int = 0  # sustained episodes the predictive policy never advised on
    spikes_acted: int = 0  # spikes the predictive policy acted on
    advice_onsets: int = 0  # rising edges of the predictive advice
    advice_without_crossing: int = 0  # of those, no sample over the threshold within the horizon

    def share(self, pred: Callable[[int], bool]) -> float | None:
        n = len(self.delays) + self.never
        return round(100.0 * sum(pred(d) for d in self.delays) / n, 1) if n else None


def runs(flags: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs of True as (start, length)."""
    out: list[tuple[int, int]] = []
    start = None
    for i, o in enumerate([*flags, False]):
        if o and start is None:
            start = i
        elif not o and start is not None:
            out.append((start, i - start))
            start = None
    return out


def episodes(values: list[float], threshold: float, hysteresis: float) -> list[int]:
    """Rows where an overload episode starts, with the scheduler's hysteresis.

    An episode starts at the first sample at or over ``threshold`` and ends when the value falls below
    ``threshold - hysteresis``; a node hovering around the line is one episode, not a crossing per sample.
    """
    starts = []
    armed = True
    for i, v in enumerate(values):
        if armed and v >= threshold:
            starts.append(i)
            armed = False
        elif not armed and v < threshold - hysteresis:
            armed = True
    return starts


def predictive_advice(values: list[float], threshold: float) -> list[bool]:
    """The predictive policy's offload advice per sample (the scheduler's rule for one cpu stream)."""
    p = OverloadPredictor(threshold=threshold, horizon_s=float(HORIZON))
    advice = []
    for i, v in enumerate(values):
        pred = p.update(float(i), v)
        advice.append((v >= threshold and not pred.transient) or pred.should_offload)
    return advice


def tally(values: list[float], advice: list[bool], threshold: float, hysteresis: float, into: Tally) -> None:
    """Add one series' overload episodes and the predictive advice around them to ``into``."""
    band = threshold - hysteresis
    for s in episodes(values, threshold, hysteresis):
        if s < WARMUP or s + 1 >= len(values):
            continue
        if values[s + 1] < band:
            into.spikes += 1
            into.spikes_acted += advice[s]
            continue
        if values[s - 1] >= band:
            into.gradual += 1
        else:
            into.jumps += 1
        lead = 0
        while lead < HORIZON and advice[s - lead - 1]:
            lead += 1
        if lead:
            into.delays.append(-lead)
            continue
        i = s
        while i < len(values) and values[i] >= band and not advice[i]:
            i += 1
        if i < len(values) and values[i] >= band:
            into.delays.append(i - s)
        else:
            into.never += 1
    over = [v >= threshold for v in values]
    for start, _ in runs(advice):
        if start < WARMUP:
            continue
        into.advice_onsets += 1
        into.advice_without_crossing += not any(over[start : start + HORIZON + 1])


def load_cpu_series(nab_dir: Path) -> dict[str, list[float]]:
    out = {}
    for path in sorted((nab_dir / "data").glob("*/*cpu_utilization*.csv")):
        with path.open(newline="") as fh:
            out[f"{path.parent.name}/{path.name}"] = [float(r["value"]) for r in csv.DictReader(fh)]
    return out


def _pct(a: int, b: int) -> float | None:
    return round(100.0 * a / b, 1) if b else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--nab", type=Path, default=DEFAULT_NAB, help="NAB directory with data/")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    series = load_cpu_series(args.nab)
    if not series:
        print(f"no cpu_utilization series under {args.nab}/data", file=sys.stderr)
        return 2
    hysteresis = Policy().hysteresis
    per_threshold: dict[str, dict[str, object]] = {}
    rows = []
    for thr in THRESHOLDS:
        t = Tally()
        for values in series.values():
            tally(values, predictive_advice(values, thr), thr, hysteresis, t)
        mean = sum(t.delays) / len(t.delays) if t.delays else 0.0
        fig: dict[str, object] = {
            "episodes_gradual": t.gradual,
            "episodes_jump": t.jumps,
            "spikes": t.spikes,
            "predictive_earlier_pct": t.share(lambda d: d < 0),
            "predictive_same_pct": t.share(lambda d: d == 0),
            "predictive_later_pct": t.share(lambda d: d > 0),
            "predictive_never_pct": _pct(t.never, len(t.delays) + t.never),
            "predictive_mean_delay_samples": round(mean, 2),
            "static_mean_delay_samples": 0.0,
            "predictive_spikes_acted": t.spikes_acted,
            "static_spikes_acted": t.spikes,
            "spike_offload_ratio": round(t.spikes_acted / t.spikes, 3) if t.spikes else None,
            "predictive_advice_onsets": t.advice_onsets,
            "predictive_advice_without_crossing": t.advice_without_crossing,
        }
        per_threshold[f"{thr:g}"] = fig
        rows.append([
            f"{thr:g} %",
            f"{t.gradual} / {t.jumps} / {t.spikes}",
            f"{fig['predictive_earlier_pct']} / {fig['predictive_same_pct']} / {fig['predictive_later_pct']} / "
            f"{fig['predictive_never_pct']} %",
            f"{mean:+.2f} s",
            f"{t.spikes_acted} of {t.spikes}",
            f"{t.advice_without_crossing} of {t.advice_onsets}",
        ])
    figures = {
        "series": len(series),
        "horizon_samples": HORIZON,
        "hysteresis": hysteresis,
        "thresholds": per_threshold,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"Predictive vs static offload on NAB's {len(series)} CPU series (1 sample/s, horizon {HORIZON} s,")
    print(f"episodes end {hysteresis:g} points below the threshold; the static policy acts on the first sample over)")
    print(table(
        ["threshold", "episodes gradual / jump / spike", "vs static: earlier / same / later / never",
         "mean delay (static 0)", "spikes acted on (static: all)", "advice, no crossing in horizon"],
        rows,
    ))
    print(f"wrote {write_results('overload_lead', figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
