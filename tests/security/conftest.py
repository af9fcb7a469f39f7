"""A real ``updraft server`` for the attacker tests of this folder (no agent, no Docker), and its admin."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Cluster


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One server per test module, started as users start it (authentication on by default)."""
    cluster = Cluster(tmp_path_factory.mktemp("server"))
    try:
        cluster.start_server()
        yield cluster
    finally:
        cluster.close()


def admin_token(cluster: Cluster) -> str:
    """The first-start admin token, read from its file as an operator would."""
    return (cluster.dir / "server" / "admin.token").read_text().strip()


@pytest.fixture(scope="module")
def admin(server: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin_token(server)}"},
                      timeout=10) as client:
        yield client
