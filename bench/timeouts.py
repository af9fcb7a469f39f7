"""Adaptive (RFC 6298) request timeouts against fixed 1 s and 5 s, on the same request stream, through the proxy.

Set-up: a tiny in-process HTTP server answers ``GET /ping`` at once, in a single write, so every second a
request takes is the network's. Each *run* is one timeout variant under one jitter profile: its own fault
proxy in front of that server and its own ``updraft.net.HttpClient`` (one endpoint, the client's default
``RetryPolicy``: 3 retries, full jitter from 1 s) —

* ``adaptive``: the endpoint's RTT estimator sets each attempt's timeout;
* ``fixed_1s`` / ``fixed_5s``: ``timeout=1.0`` / ``timeout=5.0`` on every call (no estimator involved).

All nine runs (three profiles × three variants) go at once, from one clock: the same pre-drawn request
stream (Poisson arrivals, 4 per second for 60 s) is replayed into every run at the same instants, and the
same three blackhole windows (8 s each) partition every proxy at the same instants. Profiles (one-way delay
added to every response chunk, uniform in ``latency ± jitter``):

* ``wide``  — 600 ± 500 ms: a congested uplink; one response in ten takes more than 1 s.
* ``slow``  — 1200 ± 400 ms: a slow but steady link (satellite, bad cellular); most responses take > 1 s.
* ``spiky`` — 200 ± 100 ms, with a 4-second episode of 1500 ± 500 ms every 12 s (bufferbloat, handover).

Every profile has delays beyond 1 s: where a link never gets near 1 s a fixed 1 s timeout has no spurious
timeouts either, and the comparison with it would be empty.

Definitions (times from the attempt records of a transport wrapper under the client):

* **spurious timeout** — an attempt that timed out although the endpoint was alive: its whole span lies
  outside the blackhole windows. The proxy never loses a byte and the server always answers, so every such
  attempt would have been answered had the client waited.
* **time to notice a blackholed endpoint** (``detect_dead_s``) — from the start of a blackhole window to
  the first attempt timeout fired in it (with ``max_fails=1`` that is also when the endpoint is marked
  down); the mean over the three windows. A window with no timeout at all would count as its full length.
* **retries** — attempts beyond each request's first, over the whole stream (live and blackholed).

Prints a table and writes ``bench/results/timeouts.json`` (one object per profile). About 70 s.
"""

from __future__ import annotations

import argparse
import http.server
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from _common import table, write_results

from tests.tools.faultproxy import FaultProxy
from updraft.errors import UpdraftError
from updraft.net import HttpClient, RetryPolicy

DURATION = 60.0
RATE = 4.0  # requests per second
BLACKHOLES = [(14.0, 22.0), (30.0, 38.0), (46.0, 54.0)]
SEED = 20240601


@dataclass(frozen=True)
class Phase:
    latency: float
    jitter: float
    seconds: float | None = None  # None: for ever


PROFILES: dict[str, list[Phase]] = {
    "wide": [Phase(0.6, 0.5)],
    "slow": [Phase(1.2, 0.4)],
    "spiky": [Phase(0.2, 0.1, 8.0), Phase(1.5, 0.5, 4.0)],
}
VARIANTS: dict[str, float | None] = {"adaptive": None, "fixed_1s": 1.0, "fixed_5s": 5.0}


def describe(phases: list[Phase]) -> str:
    parts = [
        f"{p.latency * 1000:.0f} +/- {p.jitter * 1000:.0f} ms" + (f" for {p.seconds:g} s" if p.seconds else "")
        for p in phases
    ]
    return ", then ".join(parts) + (", cycling" if len(phases) > 1 else "")


class _Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops SYNs when clients reconnect in a burst


class _Pong(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b'{"ok": true}'
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    def do_GET(self) -> None:
        self.wfile.write(self.response)  # one write, so the proxy delays it as one chunk

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Attempt:
    start: float
    end: float
    outcome: str  # ok | timeout | error


class Recording(httpx.BaseTransport):
    """Wraps the real transport and records every attempt's span and outcome (the body is read inside)."""

    def __init__(self, record: Callable[[Attempt], None]) -> None:
        self._inner = httpx.HTTPTransport()
        self._record = record

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        start = time.monotonic()
        try:
            response = self._inner.handle_request(request)
            response.read()
        except httpx.TimeoutException:
            self._record(Attempt(start, time.monotonic(), "timeout"))
            raise
        except httpx.HTTPError:
            self._record(Attempt(start, time.monotonic(), "error"))
            raise
        self._record(Attempt(start, time.monotonic(), "ok"))
        return response

    def close(self) -> None:
        self._inner.close()


@dataclass
class Run:
    profile: str
    variant: str
    timeout: float | None
    proxy: FaultProxy
    attempts: list[Attempt] = field(default_factory=list)
    failed: int = 0
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = HttpClient(self.proxy.url, retry=RetryPolicy(), transport=Recording(self._record))
        self.pool = ThreadPoolExecutor(96, thread_name_prefix=f"{self.profile}-{self.variant}")

    def _record(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)

    def request(self) -> None:
        try:
            self.client.get("/ping", timeout=self.timeout)
        except UpdraftError:
            with self.lock:
                self.failed += 1
        with self.lock:
            self.done += 1

    def figures(self, t0: float) -> dict[str, Any]:
        spans = [(a.start - t0, a.end - t0, a.outcome) for a in self.attempts]
        timeouts = [(s, e) for s, e, o in spans if o == "timeout"]
        spurious = [(s, e) for s, e in timeouts if not any(s < w1 and e > w0 for w0, w1 in BLACKHOLES)]
        noticed = []
        for w0, w1 in BLACKHOLES:
            fired = [e for _, e in timeouts if w0 <= e <= w1]
            noticed.append(min(fired) - w0 if fired else w1 - w0)
        stats = self.client.stats()[0]
        return {
            "spurious_timeouts": len(spurious),
            "detect_dead_s": round(sum(noticed) / len(noticed), 3),
            "retries": stats.retries,
            "detect_dead_each_s": [round(x, 3) for x in noticed],
            "timeouts": len(timeouts),
            "attempts": len(spans),
            "requests": self.done,
            "failed_requests": self.failed,
            "final_rto_s": round(stats.rto, 3),
        }


def timeline(profiles: list[str]) -> list[tuple[float, str, str, Phase | bool]]:
    """(at, what, profile, value): latency phase changes per profile, blackholes for everyone."""
    events: list[tuple[float, str, str, Phase | bool]] = []
    for name in profiles:
        phases = PROFILES[name]
        if len(phases) > 1:
            at, i = 0.0, 0
            while at < DURATION:
                phase = phases[i % len(phases)]
                events.append((at, "phase", name, phase))
                at += phase.seconds or DURATION
                i += 1
    for w0, w1 in BLACKHOLES:
        events += [(w0, "blackhole", "*", True), (w1, "blackhole", "*", False)]
    return sorted(events, key=lambda e: e[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--profiles", default=",".join(PROFILES), help="comma-separated subset of " + ", ".join(PROFILES)
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    args = parser.parse_args()
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]

    upstream = _Upstream(("127.0.0.1", 0), _Pong)
    threading.Thread(target=upstream.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    address = (str(upstream.server_address[0]), int(upstream.server_address[1]))

    rng = random.Random(SEED)
    arrivals, t = [], rng.expovariate(RATE)
    while t < DURATION:
        arrivals.append(t)
        t += rng.expovariate(RATE)

    runs: list[Run] = []
    for p_index, name in enumerate(profiles):
        first = PROFILES[name][0]
        for variant, timeout in VARIANTS.items():
            proxy = FaultProxy(address, latency=first.latency, jitter=first.jitter, seed=SEED + p_index).start()
            runs.append(Run(name, variant, timeout, proxy))
    events = timeline(profiles)
    print(
        f"{len(arrivals)} requests over {DURATION:.0f} s into {len(runs)} runs; blackholes at "
        + ", ".join(f"{a:g}–{b:g} s" for a, b in BLACKHOLES),
        flush=True,
    )

    t0 = time.monotonic()

    def control() -> None:
        for at, what, profile, value in events:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            for run in runs:
                if what == "blackhole":
                    run.proxy.set_blackhole(bool(value))
                elif run.profile == profile and isinstance(value, Phase):
                    run.proxy.set_latency(value.latency, value.jitter)

    controller = threading.Thread(target=control, name="timeline", daemon=True)
    controller.start()
    futures: list[Future[None]] = []
    for at in arrivals:
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        futures += [run.pool.submit(run.request) for run in runs]
    for f in futures:
        f.result()
    controller.join()
    took = time.monotonic() - t0

    results: dict[str, dict[str, Any]] = {}
    rows = []
    for run in runs:
        figs = run.figures(t0)
        results.setdefault(run.profile, {"link": describe(PROFILES[run.profile])})[run.variant] = figs
        rows.append(
            [
                run.profile,
                run.variant,
                figs["spurious_timeouts"],
                f"{figs['detect_dead_s']:.2f}",
                figs["retries"],
                figs["failed_requests"],
                f"{figs['final_rto_s']:.2f}",
            ]
        )
        run.pool.shutdown()
        run.client.close()
        run.proxy.stop()
    upstream.shutdown()
    upstream.server_close()

    print(
        table(
            [
                "profile",
                "timeout",
                "spurious timeouts",
                "notice dead (s)",
                "retries",
                "failed requests",
                "final RTO (s)",
            ],
            rows,
        )
    )
    goals = []
    for name, r in results.items():
        fewer = r["adaptive"]["spurious_timeouts"] < r["fixed_1s"]["spurious_timeouts"]
        faster = r["adaptive"]["detect_dead_s"] < r["fixed_5s"]["detect_dead_s"]
        goals.append(
            f"{name}: fewer spurious than fixed 1 s: {'yes' if fewer else 'NO'}; "
            f"notices dead faster than fixed 5 s: {'yes' if faster else 'NO'}"
        )
    print("\n".join(goals))
    print(f"took {took:.0f} s")
    if not args.no_write:
        print(f"wrote {write_results('timeouts', results)}")


if __name__ == "__main__":
    main()
