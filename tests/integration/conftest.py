"""Integration fixtures: the real Docker engine (started by the project's scripts) and real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, ensure_docker


@pytest.fixture(scope="session", autouse=True)
def docker_engine() -> None:
    """Fail loudly (never skip) where Docker cannot be started."""
    ensure_docker()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def two_nodes(cluster: Cluster) -> Cluster:
    """A server, an 'edge' agent (half a cpu on cpu 0) and a 'cloud' agent tagged low-util (cpu 1)."""
    cluster.start_server()
    cluster.start_agent("edge", tags=["edge"], cpus="0.5", cpuset="0", memory="1Gi")
    cluster.start_agent("cloud", tags=["low-util"], cpus="1", cpuset="1", memory="2Gi")
    return cluster
