"""Pure placement decisions: filters, scores, the offload policy, ``schedule(snapshot, policy, now)``.

:class:`NodeIndex` keeps the fleet in arrays across passes (see :mod:`updraft.scheduler.index` for how to
maintain it); every decision carries a :class:`Code`, and a task no node takes carries a
:class:`RejectionSummary`.
"""

from updraft.scheduler.filters import Demand, Usage
from updraft.scheduler.index import NodeIndex
from updraft.scheduler.plan import Deferral, Placement, Plan, Snapshot, queue_order, schedule
from updraft.scheduler.policy import Policy
from updraft.scheduler.reasons import Code, Reject, Rejection, RejectionSummary

__all__ = [
    "Code",
    "Deferral",
    "Demand",
    "NodeIndex",
    "Placement",
    "Plan",
    "Policy",
    "Reject",
    "Rejection",
    "RejectionSummary",
    "Snapshot",
    "Usage",
    "queue_order",
    "schedule",
]
