"""The fault proxy on real 127.0.0.1 sockets: passthrough, latency, drop, blackhole, reset, re-pointing."""

from __future__ import annotations

import contextlib
import http.server
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests` is a namespace package rooted at the repo, not on sys.path by default
    sys.path.insert(0, str(ROOT))

from tests.tools.faultproxy import FaultProxy  # noqa: E402
from updraft.net import Endpoint, EndpointSet, HttpClient, RetryPolicy, RttEstimator  # noqa: E402


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        prefix: bytes = self.server.prefix  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            while data := self.request.recv(65536):
                self.request.sendall(prefix + data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@contextlib.contextmanager
def echo_server(prefix: bytes = b"") -> Iterator[tuple[str, int]]:
    srv = _Server(("127.0.0.1", 0), _Echo)
    srv.prefix = prefix  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        host, port = srv.server_address[:2]
        yield str(host), int(port)
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    with echo_server() as addr:
        yield addr


def _connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(proxy.address, timeout=timeout)


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _expect_reset(proxy: FaultProxy) -> None:
    """The RST may beat connect() back to the caller on loopback, so either call may raise."""
    with pytest.raises(ConnectionResetError), _connect(proxy) as s:
        s.recv(10)


def test_passthrough(echo: tuple[str, int]) -> None:
    with FaultProxy(echo) as proxy, _connect(proxy) as s:
        assert _roundtrip(s, b"hello") == b"hello"
        big = bytes(range(256)) * 4096  # 1 MiB, many chunks
        assert _roundtrip(s, big) == big
        assert proxy.counters["accepted"] == 1


def test_latency_is_added_downstream_then_both_ways(echo: tuple[str, int]) -> None:
    with FaultProxy(echo, latency=0.2) as proxy, _connect(proxy) as s:
        t0 = time.monotonic()
        assert _roundtrip(s, b"ping") == b"ping"
        assert 0.2 <= time.monotonic() - t0 < 1.0
        proxy.configure(direction="both")
        t0 = time.monotonic()
        assert _roundtrip(s, b"ping") == b"ping"
        assert 0.4 <= time.monotonic() - t0 < 1.5
        proxy.heal()
        t0 = time.monotonic()
        assert _roundtrip(s, b"ping") == b"ping"
        assert time.monotonic() - t0 < 0.15


def test_per_chunk_jitter_never_reorders(echo: tuple[str, int]) -> None:
    with FaultProxy(echo, latency=0.02, jitter=0.02, seed=1) as proxy, _connect(proxy) as s:
        for i in range(30):
            s.sendall(f"<{i}>".encode())
            time.sleep(0.002)
        expected = "".join(f"<{i}>" for i in range(30)).encode()
        got = b""
        while len(got) < len(expected):
            got += s.recv(65536)
        assert got == expected


def test_drop_closes_new_connections(echo: tuple[str, int]) -> None:
    with FaultProxy(echo, drop=1.0) as proxy:
        with _connect(proxy) as s, contextlib.suppress(ConnectionResetError):
            assert s.recv(10) == b""  # closed at once (or reset, if our bytes raced the close)
        proxy.set_drop(0.0)
        with _connect(proxy) as s:
            assert _roundtrip(s, b"ok") == b"ok"
        assert proxy.counters["dropped"] == 1


def test_drop_rate_is_a_fraction(echo: tuple[str, int]) -> None:
    with FaultProxy(echo, drop=0.5, seed=3) as proxy:
        for _ in range(40):
            with _connect(proxy), contextlib.suppress(OSError):
                pass
        deadline = time.monotonic() + 2
        while proxy.counters["accepted"] < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert 8 <= proxy.counters["dropped"] <= 32


def test_blackhole_holds_new_and_existing_connections_until_healed(echo: tuple[str, int]) -> None:
    with FaultProxy(echo) as proxy, _connect(proxy, timeout=0.3) as before:
        assert _roundtrip(before, b"a") == b"a"
        proxy.set_blackhole(True)
        with _connect(proxy, timeout=0.3) as during:  # accepted, then silence
            for sock in (before, during):
                sock.sendall(b"held")
                with pytest.raises(TimeoutError):
                    sock.recv(10)
            assert proxy.counters["held"] == 1
            proxy.set_blackhole(False)
            for sock in (before, during):
                sock.settimeout(2.0)
                assert sock.recv(10) == b"held"  # nothing was lost


def test_reset_sends_rst_to_new_and_existing_connections(echo: tuple[str, int]) -> None:
    with FaultProxy(echo) as proxy, _connect(proxy) as existing:
        assert _roundtrip(existing, b"x") == b"x"
        proxy.set_reset(True)
        _expect_reset(proxy)
        existing.sendall(b"y")
        with pytest.raises(ConnectionResetError):
            existing.recv(10)
        assert proxy.counters["reset"] == 2


def test_reset_all_aborts_open_connections(echo: tuple[str, int]) -> None:
    with FaultProxy(echo) as proxy, _connect(proxy) as s:
        assert _roundtrip(s, b"x") == b"x"
        proxy.reset_all()
        with pytest.raises(ConnectionResetError):
            s.recv(10)


def test_upstream_can_change_at_runtime(echo: tuple[str, int]) -> None:
    with echo_server(prefix=b"2:") as other, FaultProxy(echo) as proxy, _connect(proxy) as old:
        assert _roundtrip(old, b"x") == b"x"
        proxy.set_upstream(f"{other[0]}:{other[1]}")
        with _connect(proxy) as new:
            new.sendall(b"x")
            assert new.recv(10) == b"2:x"
        assert _roundtrip(old, b"y") == b"y"  # existing connections keep their upstream


def test_unreachable_upstream_resets_the_client() -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with FaultProxy(("127.0.0.1", port)) as proxy:
        _expect_reset(proxy)


def test_cli_runs_and_accepts_runtime_commands(echo: tuple[str, int]) -> None:
    cmd = [sys.executable, "-m", "tests.tools.faultproxy", "--listen", "127.0.0.1:0"]
    cmd += ["--upstream", f"{echo[0]}:{echo[1]}", "--latency-ms", "0", "--control-stdin"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:")
        port = int(line.split()[2].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            assert _roundtrip(s, b"cli") == b"cli"
            proc.stdin.write("latency 150\n")
            proc.stdin.flush()
            assert proc.stdout.readline().startswith("ok ")
            t0 = time.monotonic()
            assert _roundtrip(s, b"slow") == b"slow"
            assert time.monotonic() - t0 >= 0.15
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_http_client_fails_over_from_a_blackholed_endpoint() -> None:
    """End to end: the adaptive timeout detects the partition and the client moves on."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    upstream = (str(srv.server_address[0]), int(srv.server_address[1]))
    try:
        with FaultProxy(upstream, blackhole=True) as dead, FaultProxy(upstream) as live:
            eps = EndpointSet([Endpoint(p.url, rtt=RttEstimator(initial_rto=0.3)) for p in (dead, live)])
            with HttpClient(eps, retry=RetryPolicy(base=0.05)) as client:
                t0 = time.monotonic()
                assert client.get("/health").json() == {"ok": True}
                assert 0.3 <= time.monotonic() - t0 < 2.0
                d, live_stats = client.stats()
                assert d.timeouts == 1 and d.down
                assert live_stats.srtt is not None and live_stats.srtt < 0.3
    finally:
        srv.shutdown()
        srv.server_close()
