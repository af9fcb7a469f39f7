"""The agent's own small HTTP endpoint: ``/health``, ``/ready`` and ``/metrics``.

The stdlib server keeps the agent's resident memory small; nothing here is on a hot path. On loopback (the
default) it is open, like the server's probes. Anywhere else it must say who may read ``/metrics`` (a bearer
token from ``metrics_token_file``, compared in constant time; Prometheus sends it with ``credentials_file``)
and speak HTTPS (``endpoint_tls_cert``/``endpoint_tls_key``) unless ``insecure_http`` says the network is
trusted; ``/health`` and ``/ready`` stay open for orchestrators and say nothing but a status.
"""

from __future__ import annotations

import hmac
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from updraft.errors import ValidationError
from updraft.images.reference import is_loopback

if TYPE_CHECKING:
    from updraft.agent.runner import Agent


def _exposure(host: str, token: str | None, tls: bool, insecure_http: bool) -> None:
    """Refuse an endpoint off loopback without a metrics token, or over plain HTTP unless explicitly allowed."""
    if is_loopback(host) or host == "localhost":
        return
    if token is None:
        raise ValidationError(
            f"refusing to serve /metrics on {host} without metrics_token_file (only loopback may be open)",
            field="host",
        )
    if not tls and not insecure_http:
        raise ValidationError(
            f"refusing plain HTTP on {host}: give endpoint_tls_cert/endpoint_tls_key, or insecure_http",
            field="host",
        )


def serve(
    agent: Agent,
    host: str,
    port: int,
    metrics_token_file: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    insecure_http: bool = False,
) -> ThreadingHTTPServer:
    token = metrics_token_file.read_text().strip().splitlines()[0] if metrics_token_file is not None else None
    _exposure(host, token, tls is not None, insecure_http)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                dead = agent.liveness_problems()
                health: dict[str, object] = {"status": "failing", "problems": dead} if dead else {"status": "ok"}
                self._send(503 if dead else 200, json.dumps(health).encode())
            elif self.path == "/ready":
                problems = agent.readiness_problems()
                payload = {"status": "not ready" if problems else "ready", "problems": problems}
                self._send(503 if problems else 200, json.dumps(payload).encode())
            elif self.path == "/metrics":
                from updraft.observe.metrics import agent_exposition

                given = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                if token is not None and not hmac.compare_digest(given.encode(), token.encode()):
                    self._send(401, b'{"code": "unauthorized", "message": "a metrics token is required"}')
                    return
                body, ctype = agent_exposition(agent)
                self._send(200, body, ctype)
            else:
                self._send(404, b'{"code": "not_found", "message": "no such path"}')

    server = ThreadingHTTPServer((host, port), Handler)
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="agent-http", daemon=True).start()
    return server
