"""The scheduler's configuration. The seed's JSON is accepted as written::

{"scheduler": "offload", "enable_offload": true, "threshold_cpu": 75,
 "threshold_memory": 80, "target_node_tags": ["edge", "low-util"]}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler: Literal["offload", "spread"] = "offload"
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
    weight_load: float = Field(default=0.6, ge=0)
    weight_image: float = Field(default=0.25, ge=0)
    weight_spread: float = Field(default=0.15, ge=0)
    default_bandwidth: float = Field(
        default=12.5e6, gt=0, description="bytes/s assumed for a node that has not measured a pull yet"
    )
    pull_time_scale: float = Field(
        default=30.0, gt=0, description="seconds of estimated pull that forfeit the whole image-locality score"
    )
