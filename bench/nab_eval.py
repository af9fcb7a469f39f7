"""Evaluate Updraft's streaming anomaly detector on the Numenta Anomaly Benchmark (NAB) data.

Why: the predictor must be shown to work on real, labelled metric streams, scored the way the field
scores them, and compared with the static threshold it replaces. This script

1. runs :class:`updraft.predict.AnomalyDetector` (default configuration, the same for every file) over
   every series in ``<nab>/data``, one sample at a time, timing the update loop;
2. runs a static-threshold baseline on the same series: the score of a sample is
   ``(value - p50) / (p100 - p50)`` where p50 and p100 are the median and maximum of the series'
   probationary period, so a threshold ``θ`` means "alarm when the value exceeds the median by θ times
   the probationary headroom" (θ = 1: above anything seen while learning) — the per-node "92 %" line,
   expressed so one θ can be tuned across series of different units;
3. scores both with the NAB method (:mod:`updraft.predict.nab`), tuning one threshold per detector and
   profile over the whole corpus, as NAB does;
4. reports, for both at their own best standard-profile threshold:

   * ``false_alarm_rate``: alarms outside every labelled window / all alarms, where an *alarm* is the
     first row of a run of consecutive detections (a rising edge), counted after the probationary period;
   * ``mean_delay_s``: seconds from a window's start to the first detection inside it, averaged over the
     windows that detector detected (``*_delay_common_s`` averages over windows both detected);

and writes ``bench/results/nab_eval.json``.

Run: ``.venv/bin/python bench/nab_eval.py [--nab DIR] [--out FILE] [--threshold-cv]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from updraft.predict import AnomalyDetector, OverloadPredictor
from updraft.predict import nab as nab

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NAB = ROOT.parent / "shared" / "data" / "nab"
DEFAULT_OUT = ROOT / "bench" / "results" / "nab_eval.json"
PUBLISHED = {
    "windowed Gaussian": 39.6,
    "Etsy Skyline": 35.7,
    "KNN CAD": 58.0,
    "earthgecko Skyline": 58.2,
    "HTM": 70.1,
    "ARTime": 74.9,
}


@dataclass
class Series:
    name: str
    t: np.ndarray  # seconds since the epoch (timestamps read as UTC)
    v: np.ndarray
    rw: dict[str, nab.RowWeights]  # per profile


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.strip()).replace(tzinfo=UTC).timestamp()


def load_corpus(nab_dir: Path) -> list[Series]:
    """Read every labelled series and map its windows (timestamps) to rows."""
    labels = json.loads((nab_dir / "labels" / "combined_windows.json").read_text())
    out: list[Series] = []
    for name in sorted(labels):
        path = nab_dir / "data" / name
        if not path.exists():
            continue
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        t = np.array([_epoch(r["timestamp"]) for r in rows])
        v = np.array([float(r["value"]) for r in rows])
        win = nab.window_rows(t, [(_epoch(a), _epoch(b)) for a, b in labels[name]])
        rw = {p.name: nab.row_weights(len(v), win, p) for p in nab.PROFILES}
        out.append(Series(name, t, v, rw))
    return out


def run_detector(corpus: list[Series]) -> tuple[list[np.ndarray], float]:
    """Score every series with a fresh detector; return the scores and µs per sample of the update loop."""
    scores: list[np.ndarray] = []
    elapsed = 0.0
    n = 0
    for s in corpus:
        det = AnomalyDetector()
        update = det.update
        ts = s.t.tolist()
        vs = s.v.tolist()
        t0 = time.perf_counter()
        out = [update(t, v) for t, v in zip(ts, vs, strict=True)]
        elapsed += time.perf_counter() - t0
        n += len(out)
        scores.append(np.asarray(out))
    return scores, 1e6 * elapsed / n


def time_predictor(corpus: list[Series]) -> float:
    """µs per sample of :class:`OverloadPredictor.update` (detector + trend fits) over the corpus."""
    elapsed = 0.0
    n = 0
    for s in corpus:
        p = OverloadPredictor(threshold=float(np.max(s.v)), horizon_s=1800.0)
        update = p.update
        ts = s.t.tolist()
        vs = s.v.tolist()
        t0 = time.perf_counter()
        for t, v in zip(ts, vs, strict=True):
            update(t, v)
        elapsed += time.perf_counter() - t0
        n += len(ts)
    return 1e6 * elapsed / n


def static_scores(corpus: list[Series], two_sided: bool = False) -> list[np.ndarray]:
    """Static threshold baseline scores: value relative to the probationary period's median and max."""
    out = []
    for s in corpus:
        prob = nab.probationary_length(len(s.v))
        head = s.v[: max(prob, 1)]
        p50 = float(np.median(head))
        if two_sided:
            span = float(np.max(np.abs(head - p50))) or 1.0
            out.append(np.abs(s.v - p50) / span)
        else:
            span = float(np.max(head) - p50) or 1.0
            out.append((s.v - p50) / span)
    return out


@dataclass
class Report:
    threshold: float
    nab_scores: dict[str, float]
    thresholds: dict[str, float]
    alarms: int
    false_alarms: int
    false_alarm_rate: float
    fp_rows: int
    detected_rows: int
    row_false_alarm_rate: float
    windows: int
    windows_detected: int
    mean_delay_s: float
    mean_delay_fraction: float
    first_detection: list[list[int | None]]


def evaluate(corpus: list[Series], scores: list[np.ndarray]) -> Report:
    """NAB scores for every profile, then alarm statistics at the best standard-profile threshold."""
    nab_scores: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    for prof in nab.PROFILES:
        pairs = [(sc, s.rw[prof.name]) for sc, s in zip(scores, corpus, strict=True)]
        thr, raw = nab.sweep(pairs, prof).best()
        nab_scores[prof.name] = nab.normalise(raw, nab.count_windows(pairs), prof)
        thresholds[prof.name] = thr
    return at_threshold(corpus, scores, thresholds[nab.STANDARD.name], nab_scores, thresholds)


def at_threshold(
    corpus: list[Series],
    scores: list[np.ndarray],
    thr: float,
    nab_scores: dict[str, float] | None = None,
    thresholds: dict[str, float] | None = None,
) -> Report:
    """Alarm, false-alarm and delay statistics of one detector at one threshold."""
    alarms = fa = fp_rows = det_rows = windows = detected = 0
    raw = 0.0
    delays: list[float] = []
    fracs: list[float] = []
    firsts: list[list[int | None]] = []
    for sc, s in zip(scores, corpus, strict=True):
        rw = s.rw[nab.STANDARD.name]
        det = (sc >= thr) & rw.scored
        rising = det & ~np.concatenate(([False], det[:-1]))
        alarms += int(rising.sum())
        fa += int((rising & (rw.window_id < 0)).sum())
        det_rows += int(det.sum())
        fp_rows += int((det & (rw.window_id < 0)).sum())
        fs = nab.score_detections(det, rw, nab.STANDARD)
        raw += fs.score
        firsts.append(list(fs.first_detection))
        for k, (a, b) in enumerate(rw.windows):
            if k not in rw.scored_windows:
                continue
            windows += 1
            first = fs.first_detection[k]
            if first is not None:
                detected += 1
                delays.append(float(s.t[first] - s.t[a]))
                fracs.append((first - a) / (b - a + 1))
    if nab_scores is None:
        nab_scores = {nab.STANDARD.name: nab.normalise(raw, windows, nab.STANDARD)}
    return Report(
        threshold=thr,
        nab_scores=nab_scores,
        thresholds=thresholds or {nab.STANDARD.name: thr},
        alarms=alarms,
        false_alarms=fa,
        false_alarm_rate=fa / alarms if alarms else 0.0,
        fp_rows=fp_rows,
        detected_rows=det_rows,
        row_false_alarm_rate=fp_rows / det_rows if det_rows else 0.0,
        windows=windows,
        windows_detected=detected,
        mean_delay_s=float(np.mean(delays)) if delays else math.nan,
        mean_delay_fraction=float(np.mean(fracs)) if fracs else math.nan,
        first_detection=firsts,
    )


def fa_constrained(
    corpus: list[Series], scores: list[np.ndarray], start: float, max_rate: float = 0.13
) -> Report | None:
    """The lowest threshold (at or above ``start``) whose false-alarm rate is at most ``max_rate``.

    NAB's standard profile tolerates false positives (0.11 each), so its optimal threshold is not the
    operating point with the fewest false alarms; this reports the trade-off instead of hiding it.
    """
    allv = np.concatenate(scores)
    cands = np.unique(np.quantile(allv[allv >= start], np.linspace(0.0, 1.0, 201)))
    for thr in cands:
        rep = at_threshold(corpus, scores, float(thr))
        if rep.alarms and rep.false_alarm_rate <= max_rate:
            return rep
    return None


@dataclass
class HeadToHead:
    """Two detectors' delays over the windows that both detected."""

    windows: int
    mean_delay_a: float
    mean_delay_b: float
    a_earlier: int  # windows where detector a's first detection came first
    same: int
    b_earlier: int


def common_delay(corpus: list[Series], a: Report, b: Report) -> HeadToHead:
    """Mean delay of each detector over the windows that both detected, and who was first in each."""
    da: list[float] = []
    db: list[float] = []
    for s, fa, fb in zip(corpus, a.first_detection, b.first_detection, strict=True):
        for k, (start, _) in enumerate(s.rw[nab.STANDARD.name].windows):
            if fa[k] is not None and fb[k] is not None:
                da.append(float(s.t[fa[k]] - s.t[start]))
                db.append(float(s.t[fb[k]] - s.t[start]))
    if not da:
        return HeadToHead(0, math.nan, math.nan, 0, 0, 0)
    earlier = sum(x < y for x, y in zip(da, db, strict=True))
    later = sum(x > y for x, y in zip(da, db, strict=True))
    return HeadToHead(len(da), float(np.mean(da)), float(np.mean(db)), earlier, len(da) - earlier - later, later)


def static_sweep(
    corpus: list[Series], ours: Report, static: list[np.ndarray], thetas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
) -> list[dict[str, float | int]]:
    """The static threshold at lower θ than its NAB optimum: more windows, earlier, at what false-alarm cost.

    Why: "earlier detection than a static threshold" depends on where that threshold is set. At its best NAB
    θ the static line finds few windows; set lower, it finds more and earlier, and this shows the price.
    """
    out: list[dict[str, float | int]] = []
    for theta in thetas:
        r = at_threshold(corpus, static, theta)
        h = common_delay(corpus, ours, r)
        out.append({
            "theta": theta,
            "nab_standard_score": round(r.nab_scores[nab.STANDARD.name], 1),
            "false_alarm_rate": round(r.false_alarm_rate, 4),
            "windows_detected": r.windows_detected,
            "common_windows": h.windows,
            "mean_delay_common_s": round(h.mean_delay_a, 1),
            "static_mean_delay_common_s": round(h.mean_delay_b, 1),
            "updraft_earlier": h.a_earlier,
            "same_row": h.same,
            "static_earlier": h.b_earlier,
        })
    return out


def threshold_cv(corpus: list[Series], scores: list[np.ndarray], seeds: int = 5) -> float:
    """Two-fold cross-validation of the threshold only: tune on half the files, score the other half.

    The detector configuration is fixed (it was chosen on the whole corpus), so this guards against an
    over-tuned threshold, not against an over-tuned configuration; see docs/predict.md.
    """
    prof = nab.STANDARD
    results = []
    for seed in range(seeds):
        idx = list(range(len(corpus)))
        random.Random(seed).shuffle(idx)
        folds = (idx[0::2], idx[1::2])
        raw_total = 0.0
        n_total = 0
        for train, test in (folds, folds[::-1]):
            pairs = [(scores[i], corpus[i].rw[prof.name]) for i in train]
            thr, _ = nab.sweep(pairs, prof).best()
            for i in test:
                rw = corpus[i].rw[prof.name]
                raw_total += nab.score_detections(scores[i] >= thr, rw, prof).score
                n_total += len(rw.scored_windows)
        results.append(nab.normalise(raw_total, n_total, prof))
    return float(np.mean(results))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--nab", type=Path, default=DEFAULT_NAB, help="NAB directory with data/ and labels/")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--threshold-cv", action="store_true", help="also run a 2-fold threshold CV")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    corpus = load_corpus(args.nab)
    if not corpus:
        print(f"no NAB series found under {args.nab}", file=sys.stderr)
        return 2
    n_rows = int(sum(len(s.v) for s in corpus))
    scores, us = run_detector(corpus)
    us_pred = time_predictor(corpus)
    ours = evaluate(corpus, scores)
    static_sc = static_scores(corpus)
    static = evaluate(corpus, static_sc)
    static2 = evaluate(corpus, static_scores(corpus, two_sided=True))
    h2h = common_delay(corpus, ours, static)
    our_common, static_common, n_common = h2h.mean_delay_a, h2h.mean_delay_b, h2h.windows
    sweep = static_sweep(corpus, ours, static_sc)
    strict = fa_constrained(corpus, scores, ours.threshold)
    cv = threshold_cv(corpus, scores) if args.threshold_cv else None

    result: dict[str, object] = {
        "nab_standard_score": round(ours.nab_scores["standard"], 2),
        "nab_reward_low_fp_score": round(ours.nab_scores["reward_low_FP_rate"], 2),
        "nab_reward_low_fn_score": round(ours.nab_scores["reward_low_FN_rate"], 2),
        "threshold": ours.threshold,
        "false_alarm_rate": round(ours.false_alarm_rate, 4),
        "alarms": ours.alarms,
        "false_alarms": ours.false_alarms,
        "row_false_alarm_rate": round(ours.row_false_alarm_rate, 4),
        "windows": ours.windows,
        "windows_detected": ours.windows_detected,
        "mean_delay_s": round(ours.mean_delay_s, 1),
        "mean_delay_window_fraction": round(ours.mean_delay_fraction, 3),
        "static_nab_standard_score": round(static.nab_scores["standard"], 2),
        "static_threshold": static.threshold,
        "static_false_alarm_rate": round(static.false_alarm_rate, 4),
        "static_alarms": static.alarms,
        "static_false_alarms": static.false_alarms,
        "static_row_false_alarm_rate": round(static.row_false_alarm_rate, 4),
        "static_windows_detected": static.windows_detected,
        "static_mean_delay_s": round(static.mean_delay_s, 1),
        "static_mean_delay_window_fraction": round(static.mean_delay_fraction, 3),
        "common_windows_detected": n_common,
        "mean_delay_common_s": round(our_common, 1),
        "static_mean_delay_common_s": round(static_common, 1),
        "common_updraft_earlier_same_static_earlier": [h2h.a_earlier, h2h.same, h2h.b_earlier],
        "static_sweep": sweep,
        "static_two_sided_nab_standard_score": round(static2.nab_scores["standard"], 2),
        "static_two_sided_false_alarm_rate": round(static2.false_alarm_rate, 4),
        "fa_le_13pct_operating_point": None
        if strict is None
        else {
            "threshold": strict.threshold,
            "nab_standard_score": round(strict.nab_scores["standard"], 2),
            "false_alarm_rate": round(strict.false_alarm_rate, 4),
            "alarms": strict.alarms,
            "windows_detected": strict.windows_detected,
            "mean_delay_s": round(strict.mean_delay_s, 1),
        },
        "record_floor": AnomalyDetector().config.record_floor,
        "us_per_sample": round(us, 2),
        "predictor_us_per_sample": round(us_pred, 2),
        "series": len(corpus),
        "rows": n_rows,
        "threshold_cv_standard_score": None if cv is None else round(cv, 2),
        "published_standard_scores": PUBLISHED,
        "definitions": {
            "alarm": "first row of a run of consecutive detections (score >= threshold), after probation",
            "false_alarm_rate": "alarms outside every labelled window / all alarms",
            "row_false_alarm_rate": "detecting rows outside every window / all detecting rows",
            "mean_delay_s": "seconds from window start to first detection in it, over detected windows",
            "static": "score = (value - p50) / (max - p50) of the probationary period; upper threshold",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    rows = [
        ("NAB standard score", f"{ours.nab_scores['standard']:.1f}", f"{static.nab_scores['standard']:.1f}"),
        (
            "NAB low-FP / low-FN",
            f"{ours.nab_scores['reward_low_FP_rate']:.1f} / {ours.nab_scores['reward_low_FN_rate']:.1f}",
            f"{static.nab_scores['reward_low_FP_rate']:.1f} / {static.nab_scores['reward_low_FN_rate']:.1f}",
        ),
        (
            "false-alarm rate (alarms)",
            f"{ours.false_alarm_rate:.1%} ({ours.false_alarms}/{ours.alarms})",
            f"{static.false_alarm_rate:.1%} ({static.false_alarms}/{static.alarms})",
        ),
        ("false-alarm rate (rows)", f"{ours.row_false_alarm_rate:.1%}", f"{static.row_false_alarm_rate:.1%}"),
        (
            "windows detected",
            f"{ours.windows_detected}/{ours.windows}",
            f"{static.windows_detected}/{static.windows}",
        ),
        ("mean delay (s)", f"{ours.mean_delay_s:.0f}", f"{static.mean_delay_s:.0f}"),
        (f"mean delay, {n_common} common windows (s)", f"{our_common:.0f}", f"{static_common:.0f}"),
        ("µs per sample", f"{us:.1f} (predictor {us_pred:.1f})", "-"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"NAB evaluation: {len(corpus)} series, {n_rows} rows, {ours.windows} windows")
    print(f"{'':{w0}}  {'updraft':>{w1}}  static threshold")
    for name, a, b in rows:
        print(f"{name:{w0}}  {a:>{w1}}  {b}")
    if strict is not None:
        print(
            f"stricter threshold {strict.threshold:.3f} (false-alarm rate <= 13%): "
            f"NAB {strict.nab_scores['standard']:.1f}, false alarms {strict.false_alarm_rate:.1%} "
            f"({strict.false_alarms}/{strict.alarms}), windows {strict.windows_detected}/{strict.windows}, "
            f"mean delay {strict.mean_delay_s:.0f} s"
        )
    print(f"two-sided static threshold: NAB {static2.nab_scores['standard']:.1f}")
    print(f"common windows: updraft first in {h2h.a_earlier}, same row {h2h.same}, static first {h2h.b_earlier}")
    print("static threshold set lower (θ: NAB, false alarms, windows; on the windows both find: mean delays,")
    print("  updraft first / same row / static first):")
    for r in sweep:
        print(
            f"  θ={r['theta']:<4} NAB {r['nab_standard_score']:7.1f}, {r['false_alarm_rate']:.1%} false alarms, "
            f"{r['windows_detected']} windows; {r['common_windows']} common: {r['mean_delay_common_s']:.0f} s vs "
            f"{r['static_mean_delay_common_s']:.0f} s, {r['updraft_earlier']}/{r['same_row']}/{r['static_earlier']}"
        )
    if cv is not None:
        print(f"2-fold threshold CV (5 seeds), standard score: {cv:.1f}")
    print("published (full 58-file corpus): " + ", ".join(f"{k} {v}" for k, v in PUBLISHED.items()))
    print(f"wrote {args.out} in {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
