"""bench/nab_eval.py end to end on a hand-made two-series corpus: the figures the issue names are written,
and they say what the data says."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nab_eval", ROOT / "bench" / "nab_eval.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nab_eval"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _write_series(path: Path, values: list[float]) -> list[str]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [(t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(len(values))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        w.writerows(zip(stamps, values, strict=True))
    return stamps


def test_writes_the_named_figures_for_a_corpus_with_one_clear_anomaly(tmp_path: Path) -> None:
    r = random.Random(3)
    spiky = [50.0 + r.gauss(0.0, 2.0) for _ in range(2000)]
    spiky[1500] = 150.0  # far above anything before: the one anomaly, inside the labelled window
    calm = [20.0 + r.gauss(0.0, 1.0) for _ in range(2000)]
    stamps = _write_series(tmp_path / "data" / "x" / "spiky.csv", spiky)
    _write_series(tmp_path / "data" / "x" / "calm.csv", calm)
    labels = {"x/spiky.csv": [[stamps[1450], stamps[1550]]], "x/calm.csv": []}
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    out = tmp_path / "nab_eval.json"

    assert _bench().main(["--nab", str(tmp_path), "--out", str(out)]) == 0

    res = json.loads(out.read_text())
    for key in ("nab_standard_score", "false_alarm_rate", "static_false_alarm_rate", "mean_delay_s",
                "static_mean_delay_s", "us_per_sample", "series"):
        assert key in res, key
    assert res["series"] == 2 and res["windows"] == 1
    # the spike is found at its own row, 50 rows (of 5 minutes) into the window, by both detectors
    assert res["windows_detected"] == 1 and res["static_windows_detected"] == 1
    assert res["mean_delay_s"] == res["static_mean_delay_s"] == 50 * 300.0
    assert res["false_alarm_rate"] == round(res["false_alarms"] / res["alarms"], 4)
    assert res["static_false_alarm_rate"] == round(res["static_false_alarms"] / res["static_alarms"], 4)
    assert res["us_per_sample"] > 0.0
    # finding the only window at its centre scores well above the null detector (0), below perfect (100)
    assert 50.0 < res["nab_standard_score"] < 100.0
