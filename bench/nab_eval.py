"""Evaluate Updraft's streaming anomaly detector on the Numenta Anomaly Benchmark (NAB) data.

Why: the predictor must be shown to work on labelled metric streams it was *not* tuned on, scored the way
the field scores them, and compared with the static threshold it replaces. This script

1. runs :class:`updraft.predict.AnomalyDetector` over every series in ``<nab>/data``, one sample at a time,
   for each configuration of a small candidate grid (``CANDIDATES``), timing the update loop;
2. **leave-one-category-out** (the headline): for each NAB category with labelled windows, the
   configuration *and* the threshold are chosen on the other categories only (best NAB standard score
   there), and the held-out category is scored with them; the report is the mean over folds, each fold
   shown, with the false-alarm rate at the chosen threshold and the detection delay. The same is done for
   a static-threshold baseline (``(value - p50) / (max - p50)`` of the probationary period, so θ = 1 means
   "above anything seen while learning");
3. scores the shipped configuration (``DetectorConfig()``) in-sample over the whole corpus as well, with the
   threshold tuned over the corpus as NAB does, and says which candidate the same selection rule picks on
   the whole corpus (it should be the shipped one);
4. writes ``bench/results/nab_eval.json``.

A second mode is the stable entry point for data this project has never seen:
``python bench/nab_eval.py --data DIR --results-out OUT`` runs the shipped configuration (no tuning on DIR)
over every ``DIR/<category>/<name>.csv`` and writes ``OUT/<category>/<name>.csv`` with the columns
``timestamp,value,anomaly_score``, one row per input row in the same order, for NAB's own scorer (which
handles the probationary period itself).

Run: ``.venv/bin/python bench/nab_eval.py [--nab DIR] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import _common  # also sets the import path
import nab_score as nab
import numpy as np
from nab_corpus import Report, Series, at_threshold, common_delay, epoch, evaluate, fa_constrained, load_corpus

from updraft.predict import AnomalyDetector, DetectorConfig, OverloadPredictor

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
#: The hyper-parameters leave-one-category-out chooses between: the episode length (``quiet``) and how fast
#: the typical-error scales and the daily profile adapt (``scale_alpha``, ``season_alpha``). Everything else
#: is fixed at the shipped defaults (docs/predict.md shows how the fixed ones' neighbours score; an earlier
#: grid over the averaging window and the level signal chose ``avg = 20`` and no level signal in every fold).
CANDIDATES: dict[str, DetectorConfig] = {
    f"quiet={q} scale_alpha={sa} season_alpha={se}": DetectorConfig(quiet=q, scale_alpha=sa, season_alpha=se)
    for q in (0, 100, 200, 400)
    for sa in (0.0025, 0.005, 0.01)
    for se in (0.05, 0.1, 0.3)
}


def run_detector(corpus: list[Series], config: DetectorConfig | None = None) -> tuple[list[np.ndarray], float]:
    """Score every series with a fresh detector; return the scores and µs per sample of the update loop."""
    scores: list[np.ndarray] = []
    elapsed = 0.0
    n = 0
    for s in corpus:
        update = AnomalyDetector(config).update
        ts = s.t.tolist()
        vs = s.v.tolist()
        t0 = time.perf_counter()
        out = [update(t, v) for t, v in zip(ts, vs, strict=True)]
        elapsed += time.perf_counter() - t0
        n += len(out)
        scores.append(np.asarray(out))
    return scores, 1e6 * elapsed / max(n, 1)


def time_predictor(corpus: list[Series]) -> float:
    """µs per sample of :class:`OverloadPredictor.update` (detector + trend fits) over the corpus."""
    elapsed = 0.0
    n = 0
    for s in corpus:
        update = OverloadPredictor(threshold=float(np.max(s.v)), horizon_s=1800.0).update
        ts = s.t.tolist()
        vs = s.v.tolist()
        t0 = time.perf_counter()
        for t, v in zip(ts, vs, strict=True):
            update(t, v)
        elapsed += time.perf_counter() - t0
        n += len(ts)
    return 1e6 * elapsed / max(n, 1)


def static_scores(corpus: list[Series]) -> list[np.ndarray]:
    """Static threshold baseline scores: value relative to the probationary period's median and max."""
    out = []
    for s in corpus:
        head = s.v[: max(nab.probationary_length(len(s.v)), 1)]
        p50 = float(np.median(head))
        span = float(np.max(head) - p50) or 1.0
        out.append((s.v - p50) / span)
    return out


# --- leave-one-category-out ------------------------------------------------------------------------------


def _best(corpus: list[Series], scores: list[np.ndarray], idx: list[int]) -> tuple[float, float]:
    """Best standard-profile threshold over the series ``idx`` and its normalised score there."""
    pairs = [(scores[i], corpus[i].rw[nab.STANDARD.name]) for i in idx]
    thr, raw = nab.sweep(pairs, nab.STANDARD).best()
    return thr, nab.normalise(raw, nab.count_windows(pairs), nab.STANDARD)


def choose(
    corpus: list[Series], runs: dict[str, list[np.ndarray]], idx: list[int]
) -> tuple[str, float, float]:
    """The candidate and threshold with the best NAB standard score over the series ``idx`` (first on ties)."""
    best: tuple[str, float, float] | None = None
    for name, scores in runs.items():
        thr, score = _best(corpus, scores, idx)
        if best is None or score > best[2]:
            best = (name, thr, score)
    assert best is not None, "no candidates"
    return best


@dataclass
class Fold:
    """One held-out category: what was chosen without it, and how that did on it."""

    category: str
    series: int
    windows: int
    chosen: str
    threshold: float
    train_score: float
    standard_score: float  # the held-out category at the threshold chosen on the others
    own_best_score: float  # the held-out category at its own best threshold (NAB's --optimize on it alone)
    alarms: int
    false_alarms: int
    false_alarm_rate: float
    windows_detected: int
    mean_delay_s: float
    mean_delay_window_fraction: float
    static_standard_score: float
    static_false_alarm_rate: float
    static_windows_detected: int


def _sub(corpus: list[Series], scores: list[np.ndarray], idx: list[int]) -> tuple[list[Series], list[np.ndarray]]:
    return [corpus[i] for i in idx], [scores[i] for i in idx]


def loco(corpus: list[Series], runs: dict[str, list[np.ndarray]], static: list[np.ndarray]) -> list[Fold]:
    """Leave-one-category-out over every category with labelled windows (see the module docstring)."""
    folds: list[Fold] = []
    for cat in sorted({s.category for s in corpus}):
        test = [i for i, s in enumerate(corpus) if s.category == cat]
        train = [i for i, s in enumerate(corpus) if s.category != cat]
        if not sum(len(corpus[i].rw[nab.STANDARD.name].scored_windows) for i in test) or not train:
            continue  # nothing to detect (artificialNoAnomaly): it only ever trains
        name, thr, train_score = choose(corpus, runs, train)
        rep = at_threshold(*_sub(corpus, runs[name], test), thr)
        _, own = _best(corpus, runs[name], test)
        s_thr, _ = _best(corpus, static, train)
        srep = at_threshold(*_sub(corpus, static, test), s_thr)
        folds.append(Fold(
            category=cat, series=len(test), windows=rep.windows, chosen=name, threshold=thr,
            train_score=round(train_score, 2), standard_score=round(rep.nab_scores[nab.STANDARD.name], 2),
            own_best_score=round(own, 2), alarms=rep.alarms, false_alarms=rep.false_alarms,
            false_alarm_rate=round(rep.false_alarm_rate, 4), windows_detected=rep.windows_detected,
            mean_delay_s=round(rep.mean_delay_s, 1), mean_delay_window_fraction=round(rep.mean_delay_fraction, 3),
            static_standard_score=round(srep.nab_scores[nab.STANDARD.name], 2),
            static_false_alarm_rate=round(srep.false_alarm_rate, 4), static_windows_detected=srep.windows_detected,
        ))
    return folds


def loco_summary(folds: list[Fold]) -> dict[str, float | int] | None:
    """Mean over folds of the held-out scores; alarms, false alarms and windows summed over folds."""
    if not folds:
        return None  # fewer than two categories, or none with windows
    alarms = sum(f.alarms for f in folds)
    fa = sum(f.false_alarms for f in folds)
    detected = [f for f in folds if f.windows_detected]
    return {
        "mean_standard_score": round(float(np.mean([f.standard_score for f in folds])), 2),
        "mean_own_best_score": round(float(np.mean([f.own_best_score for f in folds])), 2),
        "alarms": alarms,
        "false_alarms": fa,
        "false_alarm_rate": round(fa / alarms, 4) if alarms else 0.0,
        "windows": sum(f.windows for f in folds),
        "windows_detected": sum(f.windows_detected for f in folds),
        "mean_delay_window_fraction": round(
            float(np.average([f.mean_delay_window_fraction for f in detected],
                             weights=[f.windows_detected for f in detected])), 3) if detected else math.nan,
        "static_mean_standard_score": round(float(np.mean([f.static_standard_score for f in folds])), 2),
    }


# --- the entry point for unseen data ---------------------------------------------------------------------


def write_results(data_dir: Path, out_dir: Path, config: DetectorConfig | None = None) -> int:
    """Score every ``data_dir/<category>/<name>.csv`` with a fresh detector; write ``out_dir/<category>/<name>.csv``.

    The columns are ``timestamp,value,anomaly_score``; timestamp and value are copied as they were read, one
    output row per input row, in order. A row whose value is not a finite number scores 0 and is not fed to
    the detector. Returns the number of files written.
    """
    files = sorted(p for p in data_dir.glob("*/*.csv") if p.is_file())
    for path in files:
        det = AnomalyDetector(config)
        target = out_dir / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with path.open(newline="") as fin, target.open("w", newline="") as fout:
            w = csv.writer(fout, lineterminator="\n")
            w.writerow(["timestamp", "value", "anomaly_score"])
            for row in csv.DictReader(fin):
                ts, raw = row["timestamp"], row["value"]
                try:
                    x = float(raw)
                except (TypeError, ValueError):
                    x = math.nan
                score = det.update(epoch(ts), x) if math.isfinite(x) else 0.0
                w.writerow([ts, raw, repr(score)])
    return len(files)


# --- main ------------------------------------------------------------------------------------------------


def static_sweep(
    corpus: list[Series], ours: Report, static: list[np.ndarray], thetas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
) -> list[dict[str, float | int]]:
    """The static threshold at lower θ than its NAB optimum: more windows, earlier, at what false-alarm cost."""
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


def _report(rep: Report, prefix: str = "") -> dict[str, object]:
    return {
        f"{prefix}nab_standard_score": round(rep.nab_scores["standard"], 2),
        f"{prefix}threshold": rep.threshold,
        f"{prefix}false_alarm_rate": round(rep.false_alarm_rate, 4),
        f"{prefix}alarms": rep.alarms,
        f"{prefix}false_alarms": rep.false_alarms,
        f"{prefix}row_false_alarm_rate": round(rep.row_false_alarm_rate, 4),
        f"{prefix}windows_detected": rep.windows_detected,
        f"{prefix}mean_delay_s": round(rep.mean_delay_s, 1),
        f"{prefix}mean_delay_window_fraction": round(rep.mean_delay_fraction, 3),
    }


def evaluate_corpus(corpus: list[Series]) -> dict[str, object]:
    """Every figure of ``nab_eval.json`` for a labelled corpus."""
    shipped = DetectorConfig()
    runs: dict[str, list[np.ndarray]] = {}
    cost: dict[str, float] = {}
    for name, cfg in CANDIDATES.items():
        runs[name], cost[name] = run_detector(corpus, cfg)
    shipped_name = next((n for n, c in CANDIDATES.items() if c == shipped), None)
    if shipped_name is None:
        shipped_name = "shipped"
        runs[shipped_name], cost[shipped_name] = run_detector(corpus, shipped)
    scores = runs[shipped_name]
    static = static_scores(corpus)
    grid = {n: r for n, r in runs.items() if n in CANDIDATES}
    folds = loco(corpus, grid, static)
    chosen_all, _, _ = choose(corpus, grid, list(range(len(corpus))))
    summary = loco_summary(folds)
    ours = evaluate(corpus, scores)
    st = evaluate(corpus, static)
    h2h = common_delay(corpus, ours, st)
    strict = fa_constrained(corpus, scores, ours.threshold)
    low_fp = at_threshold(corpus, scores, ours.thresholds[nab.REWARD_LOW_FP.name])
    return {
        "loco": summary,
        "goals": {
            "loco_mean_standard_score_ge_60": None if summary is None else summary["mean_standard_score"] >= 60.0,
            "us_per_sample_le_50": cost[shipped_name] <= 50.0,
        },
        "loco_folds": [asdict(f) for f in folds],
        "candidates": list(CANDIDATES),
        "shipped_config": shipped_name,
        "chosen_on_all_categories": chosen_all,
        **_report(ours),
        "nab_reward_low_fp_score": round(ours.nab_scores["reward_low_FP_rate"], 2),
        "nab_reward_low_fn_score": round(ours.nab_scores["reward_low_FN_rate"], 2),
        "windows": ours.windows,
        "low_fp_operating_point": _report(low_fp),
        "fa_le_13pct_operating_point": None if strict is None else _report(strict),
        "distinct_scores_at_or_above_0.5": int(np.unique(np.concatenate(scores)[np.concatenate(scores) >= 0.5]).size),
        **_report(st, "static_"),
        "common_windows_detected": h2h.windows,
        "mean_delay_common_s": round(h2h.mean_delay_a, 1),
        "static_mean_delay_common_s": round(h2h.mean_delay_b, 1),
        "common_updraft_earlier_same_static_earlier": [h2h.a_earlier, h2h.same, h2h.b_earlier],
        "static_sweep": static_sweep(corpus, ours, static),
        "us_per_sample": round(cost[shipped_name], 2),
        "predictor_us_per_sample": round(time_predictor(corpus), 2),
        "series": len(corpus),
        "rows": int(sum(len(s.v) for s in corpus)),
        "published_standard_scores": PUBLISHED,
        "definitions": {
            "loco": "per category with windows: candidate and threshold chosen on the other categories "
            "(best NAB standard score there), held-out category scored with them; mean over folds",
            "own_best_score": "held-out category at its own best threshold (what NAB's --optimize gives on it alone)",
            "alarm": "first row of a run of consecutive detections (score >= threshold), after probation",
            "false_alarm_rate": "alarms outside every labelled window / all alarms",
            "row_false_alarm_rate": "detecting rows outside every window / all detecting rows",
            "mean_delay_s": "seconds from window start to first detection in it, over detected windows",
            "static": "score = (value - p50) / (max - p50) of the probationary period; upper threshold",
        },
    }


def print_table(res: dict[str, object]) -> None:
    folds = res["loco_folds"]
    assert isinstance(folds, list)
    keys = ("category", "windows", "chosen", "threshold", "standard_score", "own_best_score",
            "false_alarm_rate", "windows_detected", "mean_delay_window_fraction", "static_standard_score")
    rows = [[f[k] if not isinstance(f[k], float) else f"{f[k]:.3f}" if k == "threshold" else f[k] for k in keys]
            for f in folds]
    summ = res["loco"]
    if isinstance(summ, dict):
        rows.append(["MEAN", summ["windows"], "", "", summ["mean_standard_score"], summ["mean_own_best_score"],
                     summ["false_alarm_rate"], summ["windows_detected"], summ["mean_delay_window_fraction"],
                     summ["static_mean_standard_score"]])
    print("leave-one-category-out (configuration and threshold chosen on the other categories):")
    print(_common.table(list(keys), rows))
    print(f"shipped configuration {res['shipped_config']}; chosen on all categories: {res['chosen_on_all_categories']}")
    print(
        f"in-sample (shipped, threshold tuned on all): NAB {res['nab_standard_score']} at θ={res['threshold']:.4f}, "
        f"false alarms {res['false_alarms']}/{res['alarms']}, windows {res['windows_detected']}/{res['windows']}; "
        f"static threshold {res['static_nab_standard_score']}"
    )
    print(f"µs per sample: detector {res['us_per_sample']}, OverloadPredictor {res['predictor_us_per_sample']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--nab", type=Path, default=DEFAULT_NAB, help="NAB directory with data/ and labels/")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--data", type=Path, help="score DIR/<category>/<name>.csv with the shipped configuration")
    ap.add_argument("--results-out", type=Path, help="with --data: where to write <category>/<name>.csv")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    if args.data is not None or args.results_out is not None:
        if args.data is None or args.results_out is None:
            ap.error("--data and --results-out go together")
        n = write_results(args.data, args.results_out)
        print(f"scored {n} files from {args.data} into {args.results_out} in {time.perf_counter() - t_start:.1f} s")
        return 0 if n else 2
    corpus = load_corpus(args.nab)
    if not corpus:
        print(f"no NAB series found under {args.nab}", file=sys.stderr)
        return 2
    res = evaluate_corpus(corpus)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)
    print(f"wrote {args.out} in {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
