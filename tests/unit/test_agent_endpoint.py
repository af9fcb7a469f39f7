"""The agent's own endpoint: open on loopback, a metrics token and HTTPS (or an explicit flag) anywhere else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from updraft.agent.http import _exposure, serve
from updraft.errors import ValidationError


def test_off_loopback_the_endpoint_needs_a_token_and_tls_or_an_explicit_flag() -> None:
    _exposure("127.0.0.1", None, tls=False, insecure_http=False)  # loopback: open, as the server's probes
    with pytest.raises(ValidationError, match="metrics_token_file"):
        _exposure("0.0.0.0", None, tls=True, insecure_http=True)
    with pytest.raises(ValidationError, match="plain HTTP"):
        _exposure("0.0.0.0", "t0ken", tls=False, insecure_http=False)
    _exposure("0.0.0.0", "t0ken", tls=True, insecure_http=False)
    _exposure("0.0.0.0", "t0ken", tls=False, insecure_http=True)


class _Probe:
    """Only what /health and /ready ask of an agent."""

    def liveness_problems(self) -> dict[str, str]:
        return {}

    def readiness_problems(self) -> dict[str, str]:
        return {}


def test_metrics_answer_only_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "metrics.token"
    token_file.write_text("s3cret-metrics\n")
    agent: Any = _Probe()
    server = serve(agent, "127.0.0.1", 0, token_file)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert httpx.get(url + "/metrics", timeout=5).status_code == 401
        wrong = httpx.get(url + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        assert httpx.get(url + "/health", timeout=5).status_code == 200  # probes stay open
    finally:
        server.shutdown()
