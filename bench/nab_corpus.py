"""The labelled NAB corpus and the alarm statistics of one detector at one threshold (shared by the NAB benches).

Why a module of its own: ``bench/nab_eval.py`` scores the detector in-sample, leave-one-category-out and
against a static baseline, and all three need the same corpus, the same definition of an *alarm* (the first
row of a run of consecutive detections after the probationary period), of the *false-alarm rate* (alarms
outside every labelled window / all alarms) and of the *detection delay* (seconds from a window's start to
its first detection). They are defined once, here.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import _common  # noqa: F401  (import path)
import nab_score as nab
import numpy as np


@dataclass
class Series:
    name: str  # "<category>/<file>.csv", as in NAB's labels
    t: np.ndarray  # seconds since the epoch (timestamps read as UTC)
    v: np.ndarray
    rw: dict[str, nab.RowWeights]  # per profile

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]


def epoch(ts: str) -> float:
    """A NAB timestamp (``2014-04-10 00:02:00``, read as UTC) in seconds since the epoch."""
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
        t = np.array([epoch(r["timestamp"]) for r in rows])
        v = np.array([float(r["value"]) for r in rows])
        win = nab.window_rows(t, [(epoch(a), epoch(b)) for a, b in labels[name]])
        rw = {p.name: nab.row_weights(len(v), win, p) for p in nab.PROFILES}
        out.append(Series(name, t, v, rw))
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

