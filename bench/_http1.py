"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generation only.

Why not httpx here: on this 2-core machine the load generator shares the CPU with the server it measures.
httpx's async client spends several hundred microseconds of Python per request (its request and response
models, header normalisation, the anyio layers); 1,000 simulated nodes beating once a second plus hundreds of
submits a second would then take a large share of a core away from the server. This client writes a request
line and a few headers, reads a status line, headers and a ``Content-Length`` body — the whole of what the
control plane sends back (JSON, never chunked) — and nothing else: no TLS, no redirects, no chunked bodies
(refused loudly), no pooling beyond one connection per caller. The product's clients stay on httpx.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


class ProtocolError(Exception):
    """The server's answer was not an HTTP/1.1 message this client can read."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive connection; requests on it are sequential. Reconnects lazily after any failure."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.headers = dict(headers or {})  # sent with every request (e.g. Authorization)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        """Send one request and read its answer; on any failure the connection is closed and the error raised."""
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(method, path, body, headers)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, method: str, path: str, body: Any, headers: dict[str, str] | None) -> Reply:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(payload)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in {**self.headers, **(headers or {})}.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        status_line = await self._reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {status_line[:80]!r}")
        got: dict[str, str] = {}
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            got[name.strip().lower()] = value.strip()
        if "chunked" in got.get("transfer-encoding", ""):
            raise ProtocolError("chunked responses are not supported by this load generator")
        data = await self._reader.readexactly(int(got.get("content-length", "0")))
        if got.get("connection", "").lower() == "close":
            self.close()
        return Reply(int(parts[1]), got, data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
