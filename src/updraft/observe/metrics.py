"""Prometheus metrics of the agent, and the pieces both processes share.

Names follow Prometheus conventions: ``updraft_`` prefix, ``_total`` on counters, base units
(``_seconds``, ``_bytes``, ``_ratio`` for 0–1 fractions). Every agent series carries a ``node`` label so that
dashboards work whatever the scrape configuration adds. Values that already live in the agent (containers
followed, load, outbox length) are read at scrape time, not copied on every change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from updraft.agent.runner import Agent

VERSION = "0.1.0"
# Latency buckets from 1 ms to 2 min: API calls and Docker operations at the low end, pulls and
# scheduling waits under load at the high end.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
PULL_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def new_registry() -> CollectorRegistry:
    """A private registry with the process and platform collectors (never the global one)."""
    disable_created_metrics()  # the ``_created`` twin of every counter only doubles the series
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST


class AgentMetrics:
    """What an agent counts and times. Thread-safe (prometheus_client's metrics are)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.registry = new_registry()
        r = self.registry
        Gauge("updraft_build_info", "Updraft version of this process", ["version", "component"], registry=r).labels(
            VERSION, "agent"
        ).set(1)
        self.docker_ops = Histogram(
            "updraft_agent_docker_operation_duration_seconds",
            "Time taken by calls to the Docker engine, by operation and outcome",
            ["node", "operation", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pulls = Histogram(
            "updraft_agent_image_pull_duration_seconds",
            "Time to pull an image that was not present on the node",
            ["node"],
            buckets=PULL_BUCKETS,
            registry=r,
        )
        self.heartbeat_rtt = Histogram(
            "updraft_agent_heartbeat_rtt_seconds",
            "Round-trip time of heartbeats to the control plane",
            ["node"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.heartbeat_failures = Counter(
            "updraft_agent_heartbeat_failures_total", "Heartbeats that got no answer", ["node"], registry=r
        )
        self.attempts = Counter(
            "updraft_agent_attempts_total",
            "Attempts this agent finished, by result (succeeded, failed, error, timeout)",
            ["node", "result"],
            registry=r,
        )
        self.probe_checks = Counter(
            "updraft_agent_probe_checks_total",
            "Task probe checks, by probe (liveness, readiness) and result (success, failure)",
            ["node", "probe", "result"],
            registry=r,
        )
        self.restarts = Counter(
            "updraft_agent_container_restarts_total",
            "Containers restarted because their liveness probe failed",
            ["node"],
            registry=r,
        )
        self.reports = Counter(
            "updraft_agent_reports_total",
            "Outbox entries delivered to the control plane, by kind and outcome",
            ["node", "kind", "outcome"],
            registry=r,
        )
        for outcome in ("ok", "error"):
            for op in ("pull", "create", "start"):
                self.docker_ops.labels(node, op, outcome)
        self.pulls.labels(node)
        self.heartbeat_rtt.labels(node)
        self.heartbeat_failures.labels(node)
        self.restarts.labels(node)

    def bind(self, agent: Agent) -> None:
        """Read the agent's own state at scrape time."""
        node, r = self.node, self.registry

        def gauge(name: str, doc: str, read: object) -> None:
            g = Gauge(name, doc, ["node"], registry=r)
            g.labels(node).set_function(read)  # type: ignore[arg-type]

        gauge("updraft_agent_containers", "Containers this agent follows (running or being started)",
              lambda: len(agent.watched))
        gauge("updraft_agent_cpu_ratio", "Measured cpu load of the node, 0–1 of its capacity",
              lambda: agent.cpu_pct / 100)
        gauge("updraft_agent_memory_ratio", "Measured memory load of the node, 0–1 of its capacity",
              lambda: agent.memory_pct / 100)
        gauge("updraft_agent_cpu_capacity_cores", "Declared cpu capacity of the node", lambda: agent.cpu_millis / 1000)
        gauge("updraft_agent_memory_capacity_bytes", "Declared memory capacity of the node",
              lambda: agent.memory_bytes)
        gauge("updraft_agent_outbox_entries", "Reports and log batches waiting for the control plane",
              lambda: len(agent.outbox))
        gauge("updraft_agent_registered", "1 while the node is registered with the control plane",
              lambda: 1.0 if agent.registered.is_set() else 0.0)
        gauge("updraft_agent_cut_off", "1 while the agent cannot reach the control plane",
              lambda: 1.0 if agent.cut_off else 0.0)

    # -- hooks the agent calls -------------------------------------------------------------------------
    def docker_op(self, operation: str, seconds: float, ok: bool) -> None:
        self.docker_ops.labels(self.node, operation, "ok" if ok else "error").observe(seconds)
        if operation == "pull" and ok:
            self.pulls.labels(self.node).observe(seconds)

    def heartbeat(self, seconds: float | None) -> None:
        if seconds is None:
            self.heartbeat_failures.labels(self.node).inc()
        else:
            self.heartbeat_rtt.labels(self.node).observe(seconds)

    def attempt(self, result: str) -> None:
        self.attempts.labels(self.node, result).inc()

    def probe(self, probe: str, ok: bool) -> None:
        self.probe_checks.labels(self.node, probe, "success" if ok else "failure").inc()

    def restarted(self) -> None:
        self.restarts.labels(self.node).inc()

    def report(self, kind: str, outcome: str) -> None:
        self.reports.labels(self.node, kind, outcome).inc()


def agent_exposition(agent: Agent) -> tuple[bytes, str]:
    return exposition(agent.metrics.registry)
