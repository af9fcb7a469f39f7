"""What tracing costs: task throughput and API p99 latency with metrics on and tracing off vs tracing on.

Each round starts a fresh server and two agents (real processes, real dockerd) and runs a burst of short
tasks (busybox ``true``) placed anywhere, while a poller measures the latency of ordinary API calls
(``GET /v1/tasks/{id}``, ``GET /v1/nodes``) next to the submits. Rounds alternate off, on, off, on… so drift
in the machine's load hits both sides alike, and the ratio is the median over those adjacent pairs; the cpu
time of the server and agent processes per task is reported too (the cost itself, less noisy than throughput
on a shared machine). "On" exports every span over OTLP/HTTP to a local sink that
answers like a collector, so the cost includes building, batching and shipping spans. Goal: tracing costs
≤ 5 % throughput. Prints a table and writes ``bench/results/observe_overhead.json``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from _common import table, write_results

from tests.cluster import NOOP_IMAGE, Cluster, ensure_docker
from updraft.observe.tracing import Tracing, setup

TASKS = 40
CLIENT_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ROUNDS = 8  # per mode
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system cpu time of the given processes so far (their own, not their containers')."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


class OtlpSink:
    """Accepts OTLP/HTTP exports (``POST /v1/traces``) like a collector would, and counts them."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.requests += 1
                sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """The server process inherits the bench's environment; agents get it too."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def poll(url: str, ids: list[str], stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        i = 0
        while not stop.is_set() and len(out) < 20_000:
            path = f"/v1/tasks/{ids[i % len(ids)]}" if ids and i % 2 == 0 else "/v1/nodes"
            t0 = time.perf_counter()
            http.get(path).raise_for_status()
            out.append(time.perf_counter() - t0)
            i += 1
            stop.wait(0.01)


def burst(traced: bool, sink: OtlpSink) -> dict[str, float | list[float]]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_BSP_SCHEDULE_DELAY": "1000"} if traced else {
        "OTEL_TRACES_EXPORTER": "none"}
    with environment(env), Cluster() as cluster:
        cluster.start_server()
        cluster.start_agent("bench-a", cpus="1", memory="1Gi", cpuset="0")
        cluster.start_agent("bench-b", cpus="1", memory="1Gi", cpuset="1")
        with cluster.client() as c:
            c.run(image=NOOP_IMAGE, command=["true"], timeout=60)  # warm-up: image lookup, cgroups, connections
            latencies: list[float] = []
            ids: list[str] = []
            stop = threading.Event()
            poller = threading.Thread(target=poll, args=(cluster.url, ids, stop, latencies), daemon=True)
            assert cluster.server is not None
            pids = [cluster.server.pid, *(p.pid for p in cluster.agents.values())]
            cpu0, t0 = cpu_seconds(pids), time.perf_counter()
            poller.start()
            with httpx.Client(base_url=cluster.url, timeout=10) as http:
                for _ in range(TASKS):
                    s0 = time.perf_counter()
                    resp = http.post("/v1/tasks", json={"image": NOOP_IMAGE, "command": ["true"]})
                    latencies.append(time.perf_counter() - s0)
                    resp.raise_for_status()
                    ids.append(resp.json()["id"])
            done = [c.wait(i, timeout=120) for i in ids]
            elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pids) - cpu0
            stop.set()
            poller.join(5)
    failed = [t.id for t in done if t.state != "succeeded"]
    if failed:
        raise RuntimeError(f"tasks failed: {failed}")
    return {"throughput": TASKS / elapsed, "latencies": latencies, "cpu_ms_per_task": 1000 * cpu / TASKS}


def span_cpu_per_task(tracing: Tracing, tasks: int = 2000) -> float:
    """Cpu seconds to make and export one task's 11 spans, as server and agent do (this process: the export
    thread and the sink's parsing included, so it errs high)."""
    attrs: dict[str, str | int | float | bool] = {"updraft.task_id": "t-0123456789ab", "updraft.token": 7}
    t0 = time.process_time()
    for _ in range(tasks):
        with tracing.span("submit", CLIENT_TRACEPARENT, attrs, kind="server") as submit:
            pass
        tracing.record("schedule", submit.traceparent, 0.0, 0.001, attrs)
        assign = tracing.start("assign", submit.traceparent, attrs)
        with tracing.span("pull", assign.traceparent, attrs):
            pass
        run = tracing.start("run", assign.traceparent, attrs)
        with tracing.span("create", run.traceparent, attrs):
            pass
        run.end()
        assign.end()
        for _report in ("running", "exited"):
            with tracing.span("report", submit.traceparent, attrs, kind="client") as client, \
                    tracing.span("report", client.traceparent, attrs, kind="server"):
                pass
    tracing.shutdown()  # flush: the export's cost is part of it
    return (time.process_time() - t0) / tasks


def p99_ms(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] * 1000


def main() -> None:
    ensure_docker()
    sink = OtlpSink()
    noop_us = span_cpu_per_task(setup("bench", env={})) * 1e6
    with environment({"OTEL_BSP_MAX_QUEUE_SIZE": "100000"}):  # export every span, drop none
        otel_us = span_cpu_per_task(setup("bench", env={"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url})) * 1e6
    print(f"spans of one task: {noop_us:.1f} µs cpu with tracing off, {otel_us:.1f} µs on (OTLP export)", flush=True)
    runs: dict[bool, list[dict[str, float | list[float]]]] = {False: [], True: []}
    try:
        for r in range(ROUNDS):
            for _attempt in range(3):  # a shared machine's dockerd may restart under us: redo the whole pair
                try:
                    pair = {traced: burst(traced, sink) for traced in (False, True)}
                    break
                except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
                    print(f"round {r + 1} failed ({type(exc).__name__}: {str(exc)[:120]}); again", flush=True)
            else:
                raise RuntimeError("three failed attempts at one round")
            for traced, result in pair.items():
                runs[traced].append(result)
                print(f"round {r + 1} tracing {'on ' if traced else 'off'}: {result['throughput']:.2f} tasks/s, "
                      f"{result['cpu_ms_per_task']:.1f} ms cpu/task", flush=True)
    finally:
        sink.close()

    def median(traced: bool, key: str) -> float:
        return statistics.median(float(run[key]) for run in runs[traced])  # type: ignore[arg-type]

    def pooled_p99(traced: bool) -> float:
        return p99_ms([x for run in runs[traced] for x in run["latencies"]])  # type: ignore[union-attr]

    t_off, t_on = median(False, "throughput"), median(True, "throughput")
    p_off, p_on = pooled_p99(False), pooled_p99(True)
    # each "on" round against the "off" round just before it: the machine's drift cancels within a pair
    pairs = [float(on["throughput"]) / float(off["throughput"])  # type: ignore[arg-type]
             for off, on in zip(runs[False], runs[True], strict=True)]
    figures = {
        "throughput_off": round(t_off, 3),
        "throughput_on": round(t_on, 3),
        "throughput_ratio": round(statistics.median(pairs), 3),
        "p99_off_ms": round(p_off, 2),
        "p99_on_ms": round(p_on, 2),
        "cpu_ms_per_task_off": round(median(False, "cpu_ms_per_task"), 2),
        "cpu_ms_per_task_on": round(median(True, "cpu_ms_per_task"), 2),
        "pair_ratios": [round(r, 3) for r in pairs],
        "tasks_per_round": TASKS,
        "rounds_per_mode": ROUNDS,
        "otlp_exports": sink.requests,
        "otlp_bytes": sink.bytes,
        "span_cpu_us_per_task_off": round(noop_us, 2),
        "span_cpu_us_per_task_on": round(otel_us, 2),
    }
    print(table(["tracing", "throughput (tasks/s, median)", "API p99 (ms)", "updraft cpu per task (ms)"], [
        ["off (metrics on)", f"{t_off:.2f}", f"{p_off:.1f}", f"{figures['cpu_ms_per_task_off']:.1f}"],
        ["on (OTLP export)", f"{t_on:.2f}", f"{p_on:.1f}", f"{figures['cpu_ms_per_task_on']:.1f}"],
    ]))
    print(f"throughput on / off (median of paired rounds): {figures['throughput_ratio']:.3f} "
          "(goal ≥ 0.95: tracing costs ≤ 5 %)")
    print(f"direct cost of one task's 11 spans: {otel_us:.0f} µs cpu against "
          f"{figures['cpu_ms_per_task_off']:.0f} ms of updraft cpu per task")
    print(f"wrote {write_results('observe_overhead', figures)}")


if __name__ == "__main__":
    main()
