"""The HTTP edge: Docker's routes over a unix socket or loopback TCP, with version negotiation and hijack.

The stdlib's threaded server, one thread per connection, as the agent's own endpoint: ``attach`` must take
over the raw connection after its response line (``Upgrade: tcp`` → ``101 UPGRADED``, then the multiplexed
stream until the container ends), which is a few lines here and a fight with an ASGI server. Each handler
blocks on the control plane's long polls, never on a lock.

Versions: every route is served both bare and under ``/v1.NN``; a version above :data:`API_VERSION` or below
:data:`MIN_API_VERSION` is answered 400 as Docker does, and every response carries ``Api-Version`` so that
clients negotiate (``docker`` and docker-py both pick the lower of the two).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from updraft.dockerapi import views
from updraft.dockerapi.address import Address
from updraft.dockerapi.containers import Engine
from updraft.dockerapi.frames import MULTIPLEXED, RAW, encode_lines, parse_since, parse_tail, select
from updraft.dockerapi.images import ImageCatalog
from updraft.dockerapi.system import System
from updraft.errors import NotFound, UpdraftError, ValidationError

API_VERSION = "1.43"
MIN_API_VERSION = "1.24"
_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
log = logging.getLogger("updraft.dockerapi")


def _ver(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    version: tuple[int, int]
    body: bytes
    headers: Any

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.query.get(name)
        return default if value is None else value.lower() in ("1", "true", "yes")

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except ValueError:
            raise ValidationError("the request body is not JSON", field="body") from None
        if not isinstance(data, dict):
            raise ValidationError("the request body must be a JSON object", field="body")
        return data


def docker_status(exc: UpdraftError) -> int:
    """Docker's statuses: a bad request is 400 (Updraft's validation errors are 422)."""
    return 400 if exc.status == 422 else exc.status


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Updraft"
    sys_version = ""
    api: DockerApi  # set on the subclass the server builds
    responded = False  # the status line of this request's response is out

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.path, *args)

    def address_string(self) -> str:  # unix sockets have no client address
        return str(self.client_address[0]) if self.client_address else "unix"

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_HEAD = do_GET

    # -- response helpers ---------------------------------------------------------------------------
    def _headers(self, status: int, ctype: str | None, length: int | None, extra: dict[str, str] | None = None) -> None:
        self.responded = True
        self.send_response(status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        if ctype:
            self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def send_json(self, status: int, payload: Any) -> None:
        body = (json.dumps(payload) + "\n").encode()
        self._headers(status, "application/json", len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_empty(self, status: int) -> None:
        self.responded = True
        self.send_response(status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        if status not in (204, 304):
            self.send_header("Content-Length", "0")
        self.end_headers()

    def send_text(self, status: int, text: str, extra: dict[str, str] | None = None) -> None:
        body = text.encode()
        self._headers(status, "text/plain; charset=utf-8", len(body), extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def begin_chunked(self, ctype: str) -> None:
        self._headers(200, ctype, None)
        self.wfile.flush()

    def chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def hijack(self, ctype: str) -> None:
        """Take the connection over: ``101 UPGRADED`` when the client asked to upgrade, else a raw 200."""
        upgrade = (self.headers.get("Upgrade") or "").lower() == "tcp"
        self.responded = True
        self.send_response_only(101 if upgrade else 200, "UPGRADED" if upgrade else None)
        self.send_header("Content-Type", ctype)
        self.send_header("Api-Version", API_VERSION)
        if upgrade:
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "tcp")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    # -- dispatch -----------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        self.responded = False
        try:
            req = self._request()
            route = self.api.route(req.method, req.path)
            if route is None:
                raise NotFound(f"page not found: Updraft's Docker API does not serve {req.method} {req.path} "
                               "(docs/docker-api.md lists what it does)")
            handler, params = route
            handler(self, req, *params)
        except UpdraftError as exc:
            self._error(docker_status(exc), exc.message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug: answer as Docker would rather than drop the connection
            log.exception("docker api: %s %s failed", self.command, self.path)
            self._error(500, f"Updraft's Docker API failed: {exc}")

    def _error(self, status: int, message: str) -> None:
        if self.responded:  # mid-stream: a second response would corrupt it; ending the connection says it all
            log.warning("docker api: %s %s ended early: %s", self.command, self.path, message)
            self.close_connection = True
            return
        with contextlib.suppress(OSError):
            self.send_json(status, {"message": message})

    def _request(self) -> Request:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        version = _ver(API_VERSION)
        m = _VERSIONED.match(path)
        if m:
            version, path = (int(m.group(1)), int(m.group(2))), m.group(3)
            asked = f"{version[0]}.{version[1]}"
            if version > _ver(API_VERSION):
                raise ValidationError(f"client version {asked} is too new. Maximum supported API version is "
                                      f"{API_VERSION}")
            if version < _ver(MIN_API_VERSION):
                raise ValidationError(f"client version {asked} is too old. Minimum supported API version is "
                                      f"{MIN_API_VERSION}, please upgrade your client to a newer version")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return Request(self.command, path.rstrip("/") or "/", query, version, self._body(), self.headers)

    def _body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


Handler = Callable[..., None]


class DockerApi:
    """The routes, bound to an engine (containers), a system view (ping, version, info) and an image catalog."""

    def __init__(self, engine: Engine, system: System, images: ImageCatalog) -> None:
        self.engine, self.system, self.images = engine, system, images
        c = r"/containers/([^/]+)"
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/_ping", self.ping), ("HEAD", "/_ping", self.ping),
            ("GET", "/version", self.version), ("GET", "/info", self.info),
            ("POST", "/containers/create", self.create), ("GET", "/containers/json", self.list),
            ("GET", c + "/json", self.inspect), ("POST", c + "/start", self.start),
            ("POST", c + "/attach", self.attach), ("POST", c + "/wait", self.wait),
            ("GET", c + "/logs", self.logs), ("POST", c + "/kill", self.kill),
            ("POST", c + "/stop", self.stop), ("DELETE", c, self.remove),
            ("POST", "/images/create", self.pull), ("GET", "/images/(.+)/json", self.image),
        ]
        self.routes = [(m, re.compile(p + "$"), h) for m, p, h in table]

    def route(self, method: str, path: str) -> tuple[Handler, tuple[str, ...]] | None:
        for m, pattern, handler in self.routes:
            match = pattern.match(path)
            if m == method and match:
                return handler, match.groups()
        return None

    # -- system -------------------------------------------------------------------------------------
    def ping(self, h: _Handler, req: Request) -> None:
        h.send_text(200, "OK", {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
                                "Builder-Version": "1", "Swarm": "inactive"})

    def version(self, h: _Handler, req: Request) -> None:
        h.send_json(200, self.system.version(API_VERSION, MIN_API_VERSION))

    def info(self, h: _Handler, req: Request) -> None:
        h.send_json(200, self.system.info(self.engine.list(all=True)))

    # -- containers ---------------------------------------------------------------------------------
    def create(self, h: _Handler, req: Request) -> None:
        c = self.engine.create(req.json(), req.query.get("name", ""), req.query.get("platform", ""))
        h.send_json(201, {"Id": c.id, "Warnings": []})

    def list(self, h: _Handler, req: Request) -> None:
        filters = views.parse_filters(req.query.get("filters"))
        limit = int(req.query.get("limit") or -1)
        found = self.engine.list(all=req.flag("all"), filters=filters, limit=limit)
        now = self.engine.clock.now()
        h.send_json(200, [views.summary(c, now) for c in found])

    def inspect(self, h: _Handler, req: Request, ref: str) -> None:
        c = self.engine.refresh(self.engine.find(ref))
        if c.removed:
            raise NotFound(f"No such container: {ref}")
        h.send_json(200, views.inspect(c))

    def start(self, h: _Handler, req: Request, ref: str) -> None:
        if req.query.get("checkpoint"):
            raise ValidationError("--checkpoint: checkpoints are not supported")
        h.send_empty(204 if self.engine.start(ref) else 304)

    def wait(self, h: _Handler, req: Request, ref: str) -> None:
        failed = self.engine.find(ref).failed_starts  # a 404 before the 200 headers; a start failing from now on
        h.begin_chunked("application/json")  # as Docker: the headers now, the result when it comes
        try:
            result = self.engine.wait(ref, req.query.get("condition", ""), failed)
        except UpdraftError as exc:
            result = {"StatusCode": views.EXIT_DAEMON_ERROR, "Error": {"Message": exc.message}}
        h.chunk((json.dumps(result) + "\n").encode())
        h.end_chunked()

    def attach(self, h: _Handler, req: Request, ref: str) -> None:
        if req.flag("stdin"):
            raise ValidationError("stdin: a task has no standard input (attach without stdin)", field="stdin")
        c = self.engine.find(ref)
        streams = frozenset(s for s in ("stdout", "stderr") if req.flag(s))
        after = 0 if req.flag("logs") else self.engine.log_end(c)
        failed = c.failed_starts  # a start failing after the upgrade ends this stream
        h.hijack(MULTIPLEXED if req.version >= (1, 42) else RAW)  # framed either way: there is never a terminal
        if not req.flag("stream") and not req.flag("logs"):
            return
        for lines in self.engine.log_lines(c, follow=req.flag("stream"), after=after, failed=failed):
            h.wfile.write(encode_lines(lines, streams, timestamps=False))
            h.wfile.flush()
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_WR)

    def logs(self, h: _Handler, req: Request, ref: str) -> None:
        streams = frozenset(s for s in ("stdout", "stderr") if req.flag(s))
        if not streams:
            raise ValidationError("Bad parameters: you must choose at least one stream")
        c = self.engine.find(ref)
        tail, since, until = parse_tail(req.query.get("tail")), parse_since(req.query.get("since")), \
            parse_since(req.query.get("until"))
        stamps, follow = req.flag("timestamps"), req.flag("follow")
        h.begin_chunked(MULTIPLEXED if req.version >= (1, 42) else RAW)
        lines, after = self.engine.backlog(c)
        backlog = select([ln for ln in lines if ln.get("stream") in streams], since, until)
        if tail is not None:
            backlog = backlog[len(backlog) - tail:] if tail else []
        h.chunk(encode_lines(backlog, streams, stamps))
        if follow and until is None:
            for lines in self.engine.log_lines(c, follow=True, after=after):
                h.chunk(encode_lines(select(lines, since, None), streams, stamps))
        h.end_chunked()

    def kill(self, h: _Handler, req: Request, ref: str) -> None:
        self.engine.kill(ref, req.query.get("signal", ""))
        h.send_empty(204)

    def stop(self, h: _Handler, req: Request, ref: str) -> None:
        if req.query.get("signal"):
            self.engine.kill(ref, req.query["signal"])
        h.send_empty(204 if self.engine.stop(ref) else 304)

    def remove(self, h: _Handler, req: Request, ref: str) -> None:
        if req.flag("link"):
            raise ValidationError("--link: links between containers are not supported")
        self.engine.remove(ref, force=req.flag("force"))
        h.send_empty(204)

    # -- images -------------------------------------------------------------------------------------
    def pull(self, h: _Handler, req: Request) -> None:
        messages = self.images.pull(req.query, req.headers.get("X-Registry-Auth"))
        h.begin_chunked("application/json")
        for message in messages:
            h.chunk((json.dumps(message) + "\n").encode())
        h.end_chunked()

    def image(self, h: _Handler, req: Request, name: str) -> None:
        h.send_json(200, self.images.inspect(name))


class _Threaded(socketserver.ThreadingMixIn):
    daemon_threads = True
    allow_reuse_address = True


class _TCPServer(_Threaded, socketserver.TCPServer):
    pass


class _UnixServer(_Threaded, socketserver.UnixStreamServer):
    pass


class DockerApiServer:
    """Serves :class:`DockerApi` at an address in a background thread; ``close()`` stops it."""

    def __init__(self, api: DockerApi, address: Address) -> None:
        handler = type("Handler", (_Handler,), {"api": api})
        self.address = address
        self._server: socketserver.BaseServer
        if address.scheme == "unix":
            if os.path.exists(address.path):  # a socket left by an earlier run: as dockerd, replace it
                if not _is_socket(address.path):
                    raise ValidationError(f"--docker-api: {address.path} exists and is not a socket")
                os.unlink(address.path)
            os.makedirs(os.path.dirname(address.path) or "/", exist_ok=True)
            self._server = _UnixServer(address.path, handler)
            os.chmod(address.path, 0o660)
        else:
            self._server = _TCPServer((address.host, address.port), handler)
            if address.port == 0:
                self.address = Address("tcp", host=address.host, port=self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="docker-api", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self.address.scheme == "unix":
            with contextlib.suppress(OSError):
                os.unlink(self.address.path)


def _is_socket(path: str) -> bool:
    import stat

    return stat.S_ISSOCK(os.stat(path).st_mode)
