"""Overload prediction for Updraft agents.

Why: offloading should start *before* a node is overloaded and should not be triggered by one noisy
sample. This package turns each node metric stream into an anomaly score and a probability of crossing
the overload threshold within a horizon, online, in a few microseconds per sample.

* :class:`OverloadPredictor` — what the scheduler uses: ``update(t, value) -> Prediction``.
* :class:`AnomalyDetector` — the generic streaming anomaly score, evaluated on NAB (``bench/nab_eval.py``).
"""

from updraft.predict.detector import AnomalyDetector, DetectorConfig, Score
from updraft.predict.overload import OverloadPredictor, Prediction

__all__ = ["AnomalyDetector", "DetectorConfig", "OverloadPredictor", "Prediction", "Score"]
