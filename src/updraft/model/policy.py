"""The scheduler's configuration. The seed's JSON is accepted as written::

{"scheduler": "offload", "enable_offload": true, "threshold_cpu": 75,
 "threshold_memory": 80, "target_node_tags": ["edge", "low-util"]}

``scoring`` picks how feasible nodes are ranked (docs/scheduling.md says when to pick which):

* ``spread`` (the default, Kubernetes' LeastAllocated): the least loaded node, fewest tasks; it keeps headroom
  everywhere and suits edge peers, whose owners feel the load.
* ``binpack`` (MostAllocated): the node whose committed requests will be fullest; it keeps whole nodes free
  for large tasks and lets idle cloud targets be scaled away.

``scoring_by_tag`` chooses per node pool: a node carrying one of its tags is ranked with that tag's strategy
(the first tag listed wins), e.g. ``{"cloud": "binpack"}`` with spread elsewhere. The seed's ``scheduler`` key
still names the decision (offload); ``"binpack"`` there is shorthand for ``scoring: binpack``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Strategy = Literal["spread", "binpack"]


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler: Literal["offload", "spread", "binpack"] = "offload"
    enable_offload: bool = True
    threshold_cpu: float = Field(default=75.0, gt=0, le=100)
    threshold_memory: float = Field(default=80.0, gt=0, le=100)
    target_node_tags: list[str] = Field(default_factory=lambda: ["edge", "low-util"])
    hysteresis: float = Field(
        default=10.0,
        ge=0,
        lt=100,
        description="percentage points below a threshold an origin must fall to leave offload mode",
    )
    predictive: bool = Field(default=False, description="offload on a predicted crossing (see predict)")
    horizon_seconds: float = Field(default=30.0, gt=0)
    scoring: Strategy | None = Field(default=None, description="spread | binpack; default: spread")
    scoring_by_tag: dict[str, Strategy] = Field(
        default_factory=dict, description="per node pool: nodes carrying the tag are ranked with its strategy"
    )
    weight_load: float = Field(default=0.6, ge=0)
    weight_image: float = Field(default=0.25, ge=0)
    weight_spread: float = Field(default=0.15, ge=0)
    weight_affinity: float = Field(
        default=0.5, ge=0, description="weight of a task's preferred node affinity terms, beside the others"
    )
    percentage_of_nodes_to_score: int = Field(
        default=0,
        ge=0,
        le=100,
        description="share of feasible nodes scored per decision; 0: adaptive as kube-scheduler; 100: all",
    )
    min_nodes_to_score: int = Field(default=100, ge=1, description="sampling never scores fewer nodes than this")
    repair_moves: int = Field(
        default=200,
        ge=0,
        description="placements of one pass that may move to make room for a task the pass could not place; 0: off",
    )
    default_bandwidth: float = Field(
        default=12.5e6, gt=0, description="bytes/s assumed for a node that has not measured a pull yet"
    )
    pull_time_scale: float = Field(
        default=30.0, gt=0, description="seconds of estimated pull that forfeit the whole image-locality score"
    )

    @property
    def strategy(self) -> Strategy:
        if self.scoring is not None:
            return self.scoring
        return "binpack" if self.scheduler == "binpack" else "spread"

    def nodes_to_score(self, feasible: int, fleet: int) -> int:
        """How many of ``feasible`` nodes one decision scores, kube-scheduler's rule: all of a small fleet;
        otherwise ``percentage_of_nodes_to_score`` of the fleet or, when 0, 50 % minus 1 % per 125 nodes
        (never under 5 %), and never fewer than ``min_nodes_to_score``."""
        pct = self.percentage_of_nodes_to_score
        if pct >= 100 or feasible <= self.min_nodes_to_score:
            return feasible
        if pct == 0:
            pct = max(5, 50 - fleet // 125)
        return min(feasible, max(self.min_nodes_to_score, fleet * pct // 100))
