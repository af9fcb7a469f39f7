"""Decisions as data: a stable code for every placement, deferral and node rejection, with the human text beside it.

Codes are what programs match on (metrics, ``updraft inspect``, tests); the text is what people read and may
change wording. Rejections are never one string per node: a deferral carries a :class:`RejectionSummary`, the
count of candidate nodes per first failing filter, rendered as kube-scheduler does::

    0/5000 nodes fit: 4,990 insufficient cpu (requested 2, largest free 1500m), 10 cordoned
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Code(StrEnum):
    """Why a task was placed where it was, or why it waits."""

    # placements
    LOCAL_UNDER_THRESHOLD = "local-under-threshold"
    LOCAL_OFFLOAD_DISABLED = "local-offload-disabled"
    HELD_BACK_TRANSIENT = "held-back-transient"
    OFFLOADED_CPU = "offloaded-cpu"
    OFFLOADED_MEMORY = "offloaded-memory"
    OFFLOADED_PREDICTED = "offloaded-predicted"
    ORIGIN_UNAVAILABLE = "origin-unavailable"
    KEPT_LOCAL_NO_TARGET = "kept-local-no-target"
    PINNED = "pinned"
    ANYWHERE_BEST = "anywhere-best"
    MADE_ROOM = "made-room"
    MOVED_FOR_ROOM = "moved-for-room"
    # deferrals
    NO_NODE_FITS = "no-node-fits"
    PINNED_ORIGIN_UNAVAILABLE = "pinned-origin-unavailable"
    PINNED_ORIGIN_BLOCKED = "pinned-origin-blocked"
    WAITING_FOR_ORIGIN = "waiting-for-origin"
    WAITING_NO_TARGET = "waiting-no-target"


class Reject(StrEnum):
    """Why one node cannot take a task: the first filter it fails, in this order."""

    NOT_READY = "not-ready"
    CORDONED = "cordoned"
    DRAINING = "draining"
    EXCLUDED = "excluded"
    SELECTOR = "node-selector"
    AFFINITY = "node-affinity"
    TAINT = "untolerated-taint"
    CPU = "insufficient-cpu"
    MEMORY = "insufficient-memory"
    EXTENDED = "insufficient-extended"


_TEXT = {
    Reject.NOT_READY: "not ready",
    Reject.CORDONED: "cordoned",
    Reject.DRAINING: "draining",
    Reject.EXCLUDED: "excluded for this task",
    Reject.SELECTOR: "node_selector mismatch",
    Reject.AFFINITY: "node affinity mismatch",
    Reject.TAINT: "untolerated taint",
    Reject.CPU: "insufficient cpu",
    Reject.MEMORY: "insufficient memory",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """One node's rejection: ``resource`` names the extended resource for ``EXTENDED``; ``text`` is for people."""

    code: Reject
    text: str
    resource: str | None = None

    @property
    def key(self) -> str:
        return f"{self.code}:{self.resource}" if self.resource else str(self.code)


@dataclass(frozen=True, slots=True)
class RejectionSummary:
    """How many of ``total`` candidate nodes failed each filter first. ``counts`` is sorted by count, largest
    first; its keys are :class:`Reject` values, ``insufficient-extended:<name>`` for extended resources.
    ``details`` adds the numbers behind a resource shortage (``requested 2, largest free 1500m``)."""

    total: int
    counts: tuple[tuple[str, int], ...] = ()
    details: tuple[tuple[str, str], ...] = ()
    scope: str = "nodes"

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)

    def text(self) -> str:
        if self.total == 0:
            return f"no {self.scope}"
        detail = dict(self.details)
        parts = []
        for key, n in self.counts:
            code, _, resource = key.partition(":")
            label = f"insufficient {resource}" if resource else _TEXT[Reject(code)]
            extra = f" ({detail[key]})" if key in detail else ""
            parts.append(f"{n:,} {label}{extra}")
        return f"0/{self.total} {self.scope} fit: " + ", ".join(parts)

    def __str__(self) -> str:
        return self.text()


def summarise(total: int, counts: dict[str, int], details: dict[str, str], scope: str = "nodes") -> RejectionSummary:
    ordered = tuple(sorted(((k, n) for k, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0])))
    return RejectionSummary(total, ordered, tuple(sorted((k, v) for k, v in details.items() if k in counts)), scope)
