"""The agent: an I/O-free state machine (:mod:`~updraft.agent.state`), driven by a thin I/O loop
(:mod:`~updraft.agent.runner`) over a typed container runtime (:mod:`~updraft.agent.runtime`).

Imports: model, net, observe, images, errors, clock, settings; never the SDK, the control plane or the CLI.
"""

from __future__ import annotations

import logging

from updraft.agent.runner import Agent
from updraft.agent.runtime import ContainerInfo, ContainerRuntime, CreateRequest
from updraft.agent.state import AgentState, Config
from updraft.settings import AgentSettings

__all__ = ["Agent", "AgentState", "Config", "ContainerInfo", "ContainerRuntime", "CreateRequest", "serve_agent"]


def serve_agent(settings: AgentSettings) -> None:
    import signal

    from updraft.agent.http import serve

    agent = Agent(settings)
    # SIGTERM ends the agent but not its containers: they run on and are re-adopted by the next agent.
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    tls = (settings.endpoint_tls_cert, settings.endpoint_tls_key) if settings.endpoint_tls_cert else None
    http = serve(
        agent, settings.host, settings.port, settings.metrics_token_file, tls, settings.insecure_http  # type: ignore[arg-type]
    )
    logging.getLogger("updraft.agent").info(
        "agent %s probes and metrics on %s:%s", settings.name, *http.server_address[:2]
    )
    agent.run_forever()
