"""Chaos tests use the same real-process fixtures as the integration tests."""

from tests.integration.conftest import cluster, docker_engine

__all__ = ["cluster", "docker_engine"]
