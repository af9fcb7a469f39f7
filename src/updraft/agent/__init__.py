"""The agent: an I/O-free reconciler plus the Docker executor, outbox and loops that drive it."""

from __future__ import annotations

import logging

from updraft.agent.reconcile import Action, Observed, Start, Stop, Watch, reconcile
from updraft.agent.runner import Agent
from updraft.settings import AgentSettings

__all__ = ["Action", "Agent", "Observed", "Start", "Stop", "Watch", "reconcile", "serve_agent"]


def serve_agent(settings: AgentSettings) -> None:
    import signal

    from updraft.agent.http import serve

    agent = Agent(settings)
    # SIGTERM ends the agent but not its containers: they run on and are re-adopted by the next agent.
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    http = serve(agent, settings.host, settings.port)
    logging.getLogger("updraft.agent").info(
        "agent %s probes and metrics on %s:%s", settings.name, *http.server_address[:2]
    )
    agent.run_forever()
