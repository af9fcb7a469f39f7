"""The scheduler's configuration lives in the model (``updraft.model.policy``), so the settings of every process can
hold it without depending on the scheduler; it is re-exported here, where the scheduler reads it."""

from updraft.model.policy import Policy, Strategy

__all__ = ["Policy", "Strategy"]
