"""The agent's own small HTTP endpoint: ``/health``, ``/ready`` and ``/metrics``.

The stdlib server keeps the agent's resident memory small; nothing here is on a hot path.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from updraft.agent.runner import Agent


def serve(agent: Agent, host: str, port: int) -> ThreadingHTTPServer:
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

                body, ctype = agent_exposition(agent)
                self._send(200, body, ctype)
            else:
                self._send(404, b'{"code": "not_found", "message": "no such path"}')

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="agent-http", daemon=True).start()
    return server
