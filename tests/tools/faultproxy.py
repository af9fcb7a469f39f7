"""A fault-injecting TCP proxy for tests, chaos runs and benchmarks.

Why: the test kernel has no ``netem`` (and CI containers rarely have CAP_NET_ADMIN), yet the net layer's
whole point is behaviour under latency, jitter, loss and partitions. This proxy sits between a client and
a server on 127.0.0.1 and injects those faults at the TCP-stream level::

    with FaultProxy(upstream=("127.0.0.1", 8080), latency=0.2) as proxy:
        client = HttpClient(proxy.url)
        proxy.set_blackhole(True)          # partition: everything stalls
        proxy.set_upstream("127.0.0.1:8081")  # new connections go elsewhere

or from a shell (prints ``listening on HOST:PORT`` once ready; ``--control-stdin`` accepts runtime
commands such as ``latency 300``, ``blackhole on``, ``upstream 127.0.0.1:9000``, ``heal``)::

    python -m tests.tools.faultproxy --listen 127.0.0.1:P --upstream 127.0.0.1:Q \\
        --latency-ms 200 --jitter-ms 150 --drop 0.05

Faults (all changeable at runtime from any thread; a change applies to the next chunk or connection):

* ``latency`` — one-way delay added to every chunk flowing in ``direction``: ``"downstream"`` (server →
  client, the default, so a request/response exchange gains about ``latency`` like ``ping`` through
  netem), ``"upstream"`` or ``"both"``. Delivery order is preserved; throughput is not throttled.
* ``jitter`` — the delay is ``latency + u·jitter`` (clamped at 0) with ``u`` uniform in [-1, 1], drawn per
  chunk (``jitter_mode="chunk"``, default; order still preserved, so a late chunk delays those behind it)
  or once per connection (``"connection"``, a stable but different path per connection).
* ``drop`` — that fraction of *new* connections is accepted and closed at once (the client sees a
  disconnect before any response).
* ``blackhole`` — a partition: new connections are accepted but not connected upstream, and data on
  existing connections is held. Nothing is lost: turning it off releases what was held, like a healed
  partition under TCP retransmission.
* ``reset`` — new connections, and existing ones at their next chunk, are aborted with an RST
  (``SO_LINGER`` 0).
* ``set_upstream`` — where *new* connections go.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self

Address = tuple[str, int]


def parse_address(value: str | Address) -> Address:
    if isinstance(value, tuple):
        return value
    host, _, port = value.rpartition(":")
    return (host or "127.0.0.1", int(port))


@dataclass(frozen=True)
class Faults:
    latency: float = 0.0
    jitter: float = 0.0
    jitter_mode: str = "chunk"
    direction: str = "downstream"
    drop: float = 0.0
    blackhole: bool = False
    reset: bool = False

    def __post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0 or not 0 <= self.drop <= 1:
            raise ValueError("latency and jitter must be >= 0 and drop within [0, 1]")
        if self.jitter_mode not in ("chunk", "connection"):
            raise ValueError(f"jitter_mode must be 'chunk' or 'connection', not {self.jitter_mode!r}")
        if self.direction not in ("downstream", "upstream", "both"):
            raise ValueError(f"direction must be downstream, upstream or both, not {self.direction!r}")


class _Reset(Exception):
    """Raised inside a pipe when the reset fault is switched on for existing connections."""


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """The proxy; runs its own asyncio loop in a daemon thread between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        upstream: str | Address,
        *,
        listen: str | Address = ("127.0.0.1", 0),
        latency: float = 0.0,
        jitter: float = 0.0,
        jitter_mode: str = "chunk",
        direction: str = "downstream",
        drop: float = 0.0,
        blackhole: bool = False,
        reset: bool = False,
        seed: int | None = None,
    ) -> None:
        self._upstream = parse_address(upstream)
        self._listen = parse_address(listen)
        self._faults = Faults(latency, jitter, jitter_mode, direction, drop, blackhole, reset)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.address: Address = self._listen
        self.counters = {"accepted": 0, "dropped": 0, "reset": 0, "held": 0, "active": 0}

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def start(self) -> Self:
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._flowing = asyncio.Event()
            self._apply_flow()
            server = loop.run_until_complete(asyncio.start_server(self._serve, *self._listen))
            self.address = server.sockets[0].getsockname()[:2]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.close()

    # -- runtime configuration (thread-safe) ---------------------------------------------------------

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    @property
    def upstream(self) -> Address:
        with self._lock:
            return self._upstream

    def configure(self, **changes: object) -> Faults:
        """Change any fault fields at once (see :class:`Faults`); returns the new settings."""
        with self._lock:
            self._faults = replace(self._faults, **changes)  # type: ignore[arg-type]
            faults = self._faults
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # not running (yet, or any more): start() applies it
                self._loop.call_soon_threadsafe(self._apply_flow)
        return faults

    def set_latency(self, latency: float, jitter: float | None = None) -> None:
        self.configure(latency=latency, **({} if jitter is None else {"jitter": jitter}))

    def set_jitter(self, jitter: float, mode: str | None = None) -> None:
        self.configure(jitter=jitter, **({} if mode is None else {"jitter_mode": mode}))

    def set_drop(self, rate: float) -> None:
        self.configure(drop=rate)

    def set_blackhole(self, on: bool = True) -> None:
        self.configure(blackhole=on)

    def set_reset(self, on: bool = True) -> None:
        self.configure(reset=on)

    def set_upstream(self, upstream: str | Address) -> None:
        with self._lock:
            self._upstream = parse_address(upstream)

    def heal(self) -> None:
        """Remove every fault (the upstream stays as it is)."""
        self.configure(latency=0.0, jitter=0.0, drop=0.0, blackhole=False, reset=False)

    def reset_all(self) -> None:
        """Abort every open connection with an RST, now."""

        def abort_all() -> None:
            for writer in list(self._writers):
                _abort_with_rst(writer)

        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(abort_all)

    # -- the proxy itself (loop thread) --------------------------------------------------------------

    def _apply_flow(self) -> None:
        assert self._flowing is not None
        if self.faults.blackhole:
            self._flowing.clear()
        else:
            self._flowing.set()

    def _delay(self, direction: str, u_conn: float) -> float:
        f = self.faults
        if f.direction not in (direction, "both"):
            return 0.0
        u = u_conn if f.jitter_mode == "connection" else self._rng.uniform(-1.0, 1.0)
        return max(0.0, f.latency + u * f.jitter)

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        # Swallow the shutdown cancellation: Python 3.11's stream callback logs a spurious traceback for
        # every cancelled connection task otherwise.
        with contextlib.suppress(asyncio.CancelledError):
            await self._proxy(c_reader, c_writer)

    async def _proxy(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.counters["accepted"] += 1
        faults = self.faults
        if faults.reset:
            self.counters["reset"] += 1
            _abort_with_rst(c_writer)
            return
        if faults.drop and self._rng.random() < faults.drop:
            self.counters["dropped"] += 1
            c_writer.close()
            return
        self._writers.add(c_writer)
        self.counters["active"] += 1
        u_writer: asyncio.StreamWriter | None = None
        try:
            if not self._flowing.is_set():
                self.counters["held"] += 1
                await self._flowing.wait()
            try:
                u_reader, u_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _abort_with_rst(c_writer)  # the closest a proxy can get to "connection refused"
                return
            self._writers.add(u_writer)
            u_conn = self._rng.uniform(-1.0, 1.0)
            try:
                async with asyncio.TaskGroup() as tg:
                    for reader, writer, direction in (
                        (c_reader, u_writer, "upstream"),
                        (u_reader, c_writer, "downstream"),
                    ):
                        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
                        tg.create_task(self._pump(reader, queue, direction, u_conn))
                        tg.create_task(self._deliver(queue, writer))
            except* _Reset:
                self.counters["reset"] += 1
                _abort_with_rst(c_writer)
                _abort_with_rst(u_writer)
            except* (ConnectionError, OSError):
                pass  # one side went away; the finally block closes the other
        finally:
            self.counters["active"] -= 1
            for w in (c_writer, u_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        direction: str,
        u_conn: float,
    ) -> None:
        """Read one direction and stamp each chunk with its delivery time (never earlier than the last)."""
        assert self._flowing is not None
        loop = asyncio.get_running_loop()
        last = 0.0
        while data := await reader.read(65536):
            await self._flowing.wait()
            if self.faults.reset:
                raise _Reset
            last = max(last, loop.time() + self._delay(direction, u_conn))
            queue.put_nowait((last, data))
        queue.put_nowait(None)

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter) -> None:
        """Write chunks when they are due; on end of stream, half-close so the peer sees EOF."""
        assert self._flowing is not None
        loop = asyncio.get_running_loop()
        while (item := await queue.get()) is not None:
            at, data = item
            if (wait := at - loop.time()) > 0:
                await asyncio.sleep(wait)
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    # -- CLI control -------------------------------------------------------------------------------

    def command(self, line: str) -> str:
        """Apply one text command (``latency MS``, ``jitter MS``, ``drop RATE``, ``blackhole on|off``,
        ``reset on|off``, ``upstream HOST:PORT``, ``heal``); returns a short acknowledgement."""
        word, _, arg = line.strip().partition(" ")
        flag = arg.strip().lower() in ("on", "1", "true", "yes")
        actions = {
            "latency": lambda: self.set_latency(float(arg) / 1000),
            "jitter": lambda: self.set_jitter(float(arg) / 1000),
            "drop": lambda: self.set_drop(float(arg)),
            "blackhole": lambda: self.set_blackhole(flag),
            "reset": lambda: self.set_reset(flag),
            "upstream": lambda: self.set_upstream(arg.strip()),
            "heal": self.heal,
        }
        if word not in actions:
            return f"error: unknown command {word!r}"
        try:
            actions[word]()
        except ValueError as exc:
            return f"error: {exc}"
        return f"ok {self.faults} upstream={self.upstream}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tools.faultproxy", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (port 0 = any)")
    parser.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--jitter-mode", choices=("chunk", "connection"), default="chunk")
    parser.add_argument("--direction", choices=("downstream", "upstream", "both"), default="downstream")
    parser.add_argument("--drop", type=float, default=0.0, help="fraction of new connections to close")
    parser.add_argument("--blackhole", action="store_true")
    parser.add_argument("--reset", action="store_true")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--control-stdin", action="store_true", help="read runtime commands from stdin")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    proxy = FaultProxy(
        args.upstream, listen=args.listen, seed=args.seed, latency=args.latency_ms / 1000,
        jitter=args.jitter_ms / 1000, jitter_mode=args.jitter_mode, direction=args.direction,
        drop=args.drop, blackhole=args.blackhole, reset=args.reset,
    )  # fmt: skip
    with proxy:
        host, port = proxy.address
        print(f"listening on {host}:{port} -> {args.upstream}", flush=True)
        try:
            if args.control_stdin:
                for line in sys.stdin:
                    if line.strip():
                        print(proxy.command(line), flush=True)
            else:
                while not stop.wait(0.5):
                    pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
