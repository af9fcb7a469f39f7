"""Observability: Prometheus metrics, OpenTelemetry tracing and JSON logs (task probes are the agent's:
:mod:`updraft.agent.probes`).

The submodules are imported where they are used, so a process pays only for what it uses (``tracing``
imports OpenTelemetry only when it is switched on):

* :mod:`~updraft.observe.metrics` — ``AgentMetrics``, ``agent_exposition`` and the shared registry helpers;
* :mod:`~updraft.observe.server_metrics` — ``ServerMetrics`` (a service listener + scrape-time collector),
  ``RequestMetrics`` (ASGI), ``decision`` (outcome and reason of a placement);
* :mod:`~updraft.observe.tracing` — ``setup``, ``Tracing``/``NOOP``, ``Span``, ``PlacementSpans``;
* :mod:`~updraft.observe.logs` — ``setup_logging``, ``log_context``, ``JsonFormatter``, ``EventLog``.

See docs/observability.md.
"""

__all__ = ["logs", "metrics", "server_metrics", "tracing"]
