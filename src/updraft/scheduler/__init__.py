"""Pure placement decisions: filters, scores, the offload policy, ``schedule(snapshot, policy, now)``."""

from updraft.scheduler.filters import Usage
from updraft.scheduler.plan import Deferral, Placement, Plan, Snapshot, queue_order, schedule
from updraft.scheduler.policy import Policy

__all__ = ["Deferral", "Placement", "Plan", "Policy", "Snapshot", "Usage", "queue_order", "schedule"]
