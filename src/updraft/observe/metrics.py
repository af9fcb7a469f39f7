"""Prometheus metrics (placeholder exposition; the observability issue fills in the full set)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from updraft.agent.runner import Agent


def agent_exposition(agent: Agent) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    Gauge("updraft_agent_containers", "Containers this agent follows", registry=registry).set(len(agent.watched))
    return generate_latest(registry), CONTENT_TYPE_LATEST
