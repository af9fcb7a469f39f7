"""bench/nab_eval.py end to end on hand-made NAB-layout corpora: the leave-one-category-out figures the
issue names are written and say what the data says, and the ``--data/--results-out`` entry point writes what
NAB's scorer reads."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np

from updraft.predict import AnomalyDetector

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import nab_corpus  # noqa: E402  (bench/ is not a package)
import nab_score  # noqa: E402


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nab_eval", ROOT / "bench" / "nab_eval.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nab_eval"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _stamps(n: int) -> list[str]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [(t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]


def _write_series(path: Path, values: list[float] | list[str]) -> list[str]:
    stamps = _stamps(len(values))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        w.writerows(zip(stamps, values, strict=True))
    return stamps


def _spiky(seed: int, at: int = 1500) -> list[float]:
    r = random.Random(seed)
    values = [50.0 + r.gauss(0.0, 2.0) for _ in range(2000)]
    values[at] = 150.0  # far above anything before: the one anomaly, inside the labelled window
    return values


def test_leave_one_category_out_scores_each_category_with_choices_made_on_the_others(tmp_path: Path) -> None:
    r = random.Random(3)
    labels: dict[str, list[list[str]]] = {}
    for cat, seed in (("a", 1), ("b", 2)):
        stamps = _write_series(tmp_path / "data" / cat / "spiky.csv", _spiky(seed))
        labels[f"{cat}/spiky.csv"] = [[stamps[1450], stamps[1550]]]
    _write_series(tmp_path / "data" / "calm" / "flat.csv", [20.0 + r.gauss(0.0, 1.0) for _ in range(2000)])
    labels["calm/flat.csv"] = []
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    out = tmp_path / "nab_eval.json"
    bench = _bench()

    assert bench.main(["--nab", str(tmp_path), "--out", str(out)]) == 0

    res = json.loads(out.read_text())
    # one fold per category with windows; the calm category only ever trains
    folds = {f["category"]: f for f in res["loco_folds"]}
    assert sorted(folds) == ["a", "b"]
    for f in folds.values():
        assert f["chosen"] in bench.CANDIDATES and f["windows"] == 1
        # the spike is found at its own row, 50 rows (of 5 minutes) into the window, and nothing else alarms
        assert f["windows_detected"] == 1 and f["mean_delay_s"] == 50 * 300.0
        assert f["false_alarms"] == 0 and f["false_alarm_rate"] == 0.0
        # found at the window's centre: well above the null detector (0), below perfect (100)
        assert 50.0 < f["standard_score"] < 100.0
    loco = res["loco"]
    assert loco["mean_standard_score"] == round((folds["a"]["standard_score"] + folds["b"]["standard_score"]) / 2, 2)
    assert loco["windows"] == 2 and loco["windows_detected"] == 2
    for key in ("nab_standard_score", "false_alarm_rate", "static_false_alarm_rate", "mean_delay_s",
                "static_mean_delay_s", "us_per_sample", "predictor_us_per_sample", "series", "shipped_config"):
        assert key in res, key
    assert res["series"] == 3 and res["windows"] == 2 and res["us_per_sample"] > 0.0


def test_results_out_scores_every_file_with_the_shipped_configuration(tmp_path: Path) -> None:
    data = tmp_path / "data"
    values = _spiky(5)
    stamps = _write_series(data / "cat1" / "one.csv", values)
    # values written as the input spells them, and a row that is not a number
    odd = [f"{v:.6g}" for v in _spiky(6, at=900)[:1200]]
    odd[10] = "nan"
    _write_series(data / "cat2" / "two.csv", odd)
    (data / "README.md").write_text("not a series")
    out = tmp_path / "results"

    assert _bench().main(["--data", str(data), "--results-out", str(out)]) == 0

    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "cat1/one.csv", "cat2/two.csv"]
    with (out / "cat1" / "one.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert [r[0] for r in rows[1:]] == stamps and [float(r[1]) for r in rows[1:]] == values
    # exactly what a fresh detector with the shipped configuration gives, row for row
    det = AnomalyDetector()
    t0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    expected = [det.update(t0 + 300.0 * i, v) for i, v in enumerate(values)]
    assert [float(r[2]) for r in rows[1:]] == expected
    assert float(rows[1 + 1500][2]) == 1.0  # the spike
    with (out / "cat2" / "two.csv").open(newline="") as fh:
        rows2 = list(csv.DictReader(fh))
    assert [r["value"] for r in rows2] == odd and len(rows2) == 1200
    scores = [float(r["anomaly_score"]) for r in rows2]
    assert scores[10] == 0.0 and all(0.0 <= s <= 1.0 for s in scores) and scores[900] == 1.0


def test_each_fold_is_chosen_without_the_held_out_category() -> None:
    bench = _bench()
    n = 1000
    t = np.arange(n, dtype=float) * 300.0

    def series(name: str) -> nab_corpus.Series:
        rw = {p.name: nab_score.row_weights(n, [(800, 850)], p) for p in nab_score.PROFILES}
        return nab_corpus.Series(name, t, np.zeros(n), rw)

    corpus = [series(f"{cat}/1.csv") for cat in "abcd"]
    hit = np.zeros(n)
    hit[810] = 0.9  # finds the window
    miss = np.zeros(n)
    miss[300] = 0.9  # a false alarm (after the probationary period), and the window is missed
    # candidate "A" finds the windows of a, b and d but not c's; "B" only c's
    runs = {"A": [hit, hit, miss, hit], "B": [miss, miss, hit, miss]}
    static = [np.zeros(n)] * 4

    folds = {f.category: f for f in bench.loco(corpus, runs, static)}

    assert sorted(folds) == ["a", "b", "c", "d"]
    # c is scored with what the others prefer, although B would have been perfect on c itself
    assert folds["c"].chosen == "A" and folds["c"].windows_detected == 0 and folds["c"].false_alarms == 1
    assert folds["c"].standard_score < 0.0 and folds["c"].own_best_score == 0.0  # A's best on c: stay silent
    for cat in "abd":
        assert folds[cat].chosen == "A" and folds[cat].windows_detected == 1 and folds[cat].false_alarms == 0
