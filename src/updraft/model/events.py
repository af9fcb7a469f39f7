"""What happened, as data: the kind of every event, and the reason codes that travel beside human messages.

Code that reacts to events (metrics, tracing, the plan applier, the CLI) switches on these values, never on
message text; the message is for people and may change wording freely.
"""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    # task lifecycle
    SUBMITTED = "submitted"
    PLACED = "placed"  # no origin: best node anywhere
    PLACED_LOCAL = "placed-local"
    OFFLOADED = "offloaded"
    MIGRATED = "migrated"  # placed again after a drift
    DEFERRED = "deferred"
    DRIFTED = "drifted"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY = "retry"
    CANCELLED = "cancelled"
    STALE_REPORT = "stale-report"
    READY = "ready"
    NOT_READY = "not-ready"
    RESTARTED = "restarted"
    IMAGE_PINNED = "image-pinned"
    IMAGE_PIN_DEFERRED = "image-pin-deferred"
    IMAGE_PIN_FAILED = "image-pin-failed"
    IMAGE_UNVERIFIED = "image-unverified"
    IMAGE_UNPINNED = "image-unpinned"
    # nodes
    NODE_REGISTERED = "node-registered"
    NODE_READY = "node-ready"
    NODE_SUSPECT = "node-suspect"
    NODE_UNREACHABLE = "node-unreachable"
    NODE_CORDONED = "node-cordoned"
    NODE_UNCORDONED = "node-uncordoned"
    NODE_DRAINING = "node-draining"
    NODE_LABELLED = "node-labelled"
    NODE_TAINTED = "node-tainted"
    OFFLOAD_MODE = "offload-mode"

    @classmethod
    def node_state(cls, state: str) -> EventKind:
        """The event recorded when a node enters ``state`` (ready, suspect, unreachable)."""
        return cls(f"node-{state}")


PLACEMENT_KINDS = frozenset({EventKind.PLACED, EventKind.PLACED_LOCAL, EventKind.OFFLOADED, EventKind.MIGRATED})


class DriftCause(StrEnum):
    """Why a task was taken off its node (``Task.drifted_from`` keeps the node, this the cause)."""

    UNREACHABLE = "node-unreachable"
    DRAINED = "node-drained"
