"""Per-node overload forecasts for the predictive offload policy.

The server feeds each node's heartbeat metrics to a pair of streaming predictors (cpu, memory) and keeps,
per origin, what the pure scheduler needs to know: a predicted crossing (offload early) or a transient spike
(hold back).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from updraft.scheduler import Policy

if TYPE_CHECKING:
    from updraft.predict import OverloadPredictor


class Forecaster:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.forecasts: dict[str, str] = {}
        self.transients: dict[str, str] = {}
        self._predictors: dict[str, tuple[OverloadPredictor, OverloadPredictor]] = {}

    def observe(self, node: str, now: float, cpu: float, memory: float) -> bool:
        """Feed one heartbeat; True when the node's forecast appeared or went away."""
        from updraft.predict import OverloadPredictor

        horizon = self.policy.horizon_seconds
        pair = self._predictors.setdefault(
            node,
            (
                OverloadPredictor(threshold=self.policy.threshold_cpu, horizon_s=horizon),
                OverloadPredictor(threshold=self.policy.threshold_memory, horizon_s=horizon),
            ),
        )
        preds = [
            (what, p.update(t=now, value=v)) for what, p, v in (("cpu", pair[0], cpu), ("memory", pair[1], memory))
        ]
        forecast = "; ".join(f"{what} {p.reason}" for what, p in preds if p.should_offload)
        transient = "; ".join(f"{what} {p.reason}" for what, p in preds if p.transient)
        had = node in self.forecasts
        for table, value in ((self.forecasts, forecast), (self.transients, transient)):
            if value:
                table[node] = value
            else:
                table.pop(node, None)
        return had != bool(forecast)
