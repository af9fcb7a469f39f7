"""The control plane under a fleet and a busy pipeline: a real ``updraft server`` and simulated clients.

Per run, against a fresh server process in its own temporary data directory (``tests.cluster``):

* **N simulated nodes** speaking the agents' wire protocol, without Docker: ``PUT /v1/nodes/{name}`` once,
  then ``POST /v1/nodes/{name}/heartbeat`` at 1 Hz (the agent's rhythm: the next beat one interval after the
  previous one was sent, at once if the answer took longer), and a long poll ``GET
  /v1/nodes/{name}/assignments?index=&wait=25`` on a second connection, as the agent holds one;
* **M submitters**, each in a closed loop: ``POST /v1/tasks`` with a fresh ``Idempotency-Key`` (also carried
  in the task's env as ``LOAD_KEY``, so the stored task says which submit made it); a 429 or 503 is waited
  out per its ``Retry-After`` (``RetryPolicy.delay_after``, the SDK's rule) and the same key sent again, as
  is a submit whose answer timed out or whose connection broke (outcome unknown);
* **a few listers** (``GET /v1/tasks?limit=100`` twice a second each) and one ``/health`` probe every
  100 ms, from a process of its own as a kubelet's or a blackbox exporter's would be (``start_prober``).

Measured: accepted submits/s (2xx answers); p50/p99/max latency per endpoint (a submit's latency is that of
the attempt that was accepted; refusals are counted apart; heartbeats are timed from the start of the load
until the fleet stops, the wait for recovery included); errors by kind, 429/503 refusals apart; false
suspicions — ``node-suspect``/``node-unreachable`` events for simulated nodes, none of which stopped beating
(read from the stopped server's store — see ``count_events`` — counting those stamped before they stopped);
server RSS (peak, psutil); seconds from the end of the load (submitters and listers stop, nodes keep beating)
until ``/health`` answers in < 50 ms; and, once the server is stopped, the stored tasks read straight from
its SQLite file (so the check does not go through the API it checks): ``lost`` = accepted submits whose task
id is not stored with their key, ``duplicated`` = keys stored in more than one task.

The load generator is one asyncio process using a minimal HTTP/1.1 client (``_http1``, why there); its own
CPU use and the server's are reported beside the figures so that a saturated generator shows.

``--quick`` runs 15 s instead of 60 s. ``--baseline`` writes ``bench/results/load_baseline.json`` instead of
``load.json`` (today's server, measured before the control-plane rewrite); the table shows both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
from _common import RESULTS, ROOT, table, write_results
from _http1 import Connection, ProtocolError, Reply

from tests.cluster import Cluster
from updraft.net import RetryPolicy
from updraft.net.retry import parse_retry_after

RUNS = [(1, 200), (200, 1000), (1000, 1000)]
DURATION_S, QUICK_DURATION_S = 60.0, 15.0
LISTERS, LIST_EVERY_S, HEALTH_EVERY_S = 4, 0.5, 0.1
HEARTBEAT_S, POLL_WAIT_S = 1.0, 25.0
REQUEST_TIMEOUT_S = 30.0
RECOVER_LIMIT_S, HEALTHY_MS = 300.0, 50.0
NODE_CAPACITY = {"cpu": "4", "memory": "8Gi"}
TASK = {"image": "busybox:1.36", "command": ["true"], "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
SUSPICIONS = ("node-suspect", "node-unreachable")
SERVER_CONFIG = {"image_policy": "off"}  # no registry round trip per submit: this measures the control plane
BACKOFF = RetryPolicy(max_retries=1_000_000, base=0.05, cap=5.0)
ERRORS = (OSError, EOFError, ProtocolError, asyncio.IncompleteReadError, TimeoutError)


class Recorder:
    """Latencies (ms) per endpoint, errors by kind, refusals by status."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.latency: dict[str, list[float]] = {}
        self.errors: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.errors_http = 0

    def took(self, route: str, started: float) -> None:
        self.latency.setdefault(route, []).append((time.perf_counter() - started) * 1000)

    def answered(self) -> int:
        """Answers received (any status), long polls included."""
        return sum(map(len, self.latency.values())) + sum(self.refused.values()) + self.errors_http

    def error(self, route: str, exc: BaseException | int) -> None:
        self.errors_http += isinstance(exc, int)
        kind = f"http_{exc}" if isinstance(exc, int) else type(exc).__name__
        self.errors[f"{route}:{kind}"] += 1


class Load:
    """The clients of one run; ``stop`` ends the submitters and listers, ``halt`` everything."""

    def __init__(self, port: int, nodes: int, rec: Recorder, token: str | None) -> None:
        self.port, self.rec = port, rec
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.names = [f"sim-{i:04d}" for i in range(nodes)]
        self.accepted: dict[str, str] = {}  # key → task id, from 2xx answers
        self.registered = 0
        self.stop = asyncio.Event()
        self.halt = asyncio.Event()

    def conn(self) -> Connection:
        return Connection("127.0.0.1", self.port, self.headers)

    async def node(self, name: str, gate: asyncio.Semaphore) -> None:
        """One simulated agent: register (retried until answered), then beat and long-poll, as the agent does.

        Its beats start as soon as it is registered: a node that registered and then stayed silent while
        the rest of the fleet registers would rightly be suspected.
        """
        async with gate:
            c = self.conn()
            body = {"capacity": NODE_CAPACITY, "tags": ["edge"], "labels": {"load": "sim"}}
            while True:
                try:
                    reply = await c.request("PUT", f"/v1/nodes/{name}", body, timeout=REQUEST_TIMEOUT_S)
                    if reply.status < 300:
                        break
                except ERRORS:
                    pass
                await asyncio.sleep(0.5)
            c.close()
        self.registered += 1
        await asyncio.gather(self.heartbeats(name), self.assignments(name))

    async def heartbeats(self, name: str) -> None:
        c = self.conn()
        await asyncio.sleep(random.uniform(0, HEARTBEAT_S))
        while not self.halt.is_set():
            sent = time.perf_counter()
            body = {"cpu_pct": 10.0, "memory_pct": 20.0, "sent_at": time.time()}
            try:
                reply = await c.request("POST", f"/v1/nodes/{name}/heartbeat", body, timeout=REQUEST_TIMEOUT_S)
                self.rec.took("heartbeat", sent)
                if reply.status >= 300:
                    self._refused_or_error("heartbeat", reply)
            except ERRORS as exc:
                self.rec.error("heartbeat", exc)
            await asyncio.sleep(max(0.0, HEARTBEAT_S - (time.perf_counter() - sent)))
        c.close()

    async def assignments(self, name: str) -> None:
        c, index = self.conn(), 0
        while not self.halt.is_set():
            path = f"/v1/nodes/{name}/assignments?index={index}&wait={POLL_WAIT_S:g}"
            sent = time.perf_counter()
            try:
                reply = await c.request("GET", path, timeout=POLL_WAIT_S + REQUEST_TIMEOUT_S)
                if reply.status < 300:
                    self.rec.took("assignments", sent)
                    index = poll_index(reply)
                    continue
                self._refused_or_error("assignments", reply)
            except ERRORS as exc:
                self.rec.error("assignments", exc)
            await asyncio.sleep(1.0)
        c.close()

    async def submitter(self) -> None:
        c = self.conn()
        while not self.stop.is_set():
            key = uuid.uuid4().hex
            body = {**TASK, "env": {"LOAD_KEY": key}}
            for attempt in range(BACKOFF.max_retries):
                if self.stop.is_set():
                    break
                sent = time.perf_counter()
                try:
                    reply = await c.request(
                        "POST", "/v1/tasks", body, {"Idempotency-Key": key}, timeout=REQUEST_TIMEOUT_S
                    )
                except ERRORS as exc:
                    self.rec.error("submit", exc)
                    await asyncio.sleep(BACKOFF.delay(min(attempt, 6)))
                    continue  # the outcome is unknown: the same key again
                if reply.status < 300:
                    self.rec.took("submit", sent)
                    self.accepted[key] = reply.json()["id"]
                    break
                if not self._refused_or_error("submit", reply):
                    break  # a definite refusal of this body (4xx/5xx): next key
                after = parse_retry_after(reply.headers.get("retry-after"), time.time())
                await asyncio.sleep(BACKOFF.delay_after(min(attempt, 6), after))
        c.close()

    def _refused_or_error(self, route: str, reply: Reply) -> bool:
        """Count a non-2xx answer; True if it is backpressure (429, or 503 with Retry-After) to wait out."""
        if reply.status == 429 or (reply.status == 503 and "retry-after" in reply.headers):
            self.rec.refused[f"{route}:{reply.status}"] += 1
            return True
        self.rec.error(route, reply.status)
        return False

    async def poll(self, route: str, path: str, every: float) -> None:
        """GET ``path`` every ``every`` seconds (or back to back if slower) until the load stops."""
        c = self.conn()
        while not self.stop.is_set():
            sent = time.perf_counter()
            try:
                reply = await c.request("GET", path, timeout=REQUEST_TIMEOUT_S)
                self.rec.took(route, sent)
                if reply.status >= 300:
                    self._refused_or_error(route, reply)
            except ERRORS as exc:
                self.rec.error(route, exc)
            await asyncio.sleep(max(0.0, every - (time.perf_counter() - sent)))
        c.close()

    async def recover(self, stopped: float) -> float | None:
        """Seconds from ``stopped`` until a fresh connection's ``/health`` answers in < 50 ms."""
        while time.perf_counter() - stopped < RECOVER_LIMIT_S:
            c, sent = self.conn(), time.perf_counter()
            with contextlib.suppress(*ERRORS):
                reply = await c.request("GET", "/health", timeout=RECOVER_LIMIT_S)
                done = time.perf_counter()
                if reply.status == 200 and (done - sent) * 1000 < HEALTHY_MS:
                    c.close()
                    return done - stopped
            c.close()
            await asyncio.sleep(0.05)
        return None

    async def gc_pauses(self) -> dict[str, Any]:
        """The server's collector pauses so far, per generation, from its own metrics (count, total seconds,
        and how many lasted over 50 ms): a collection stops every thread, so they explain latency tails."""
        c = self.conn()
        try:
            reply = await c.request("GET", "/metrics", timeout=30)
        except ERRORS:
            return {}
        finally:
            c.close()
        return gc_summary(reply.body.decode() if reply.status == 200 else "")


def gc_summary(text: str) -> dict[str, Any]:
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith("updraft_server_gc_pause_seconds"):
            continue
        name, _, value = line.rpartition(" ")
        gen = name.split('generation="')[1].split('"')[0]
        entry = out.setdefault(gen, {})
        if name.startswith("updraft_server_gc_pause_seconds_count"):
            entry["count"] = int(float(value))
        elif name.startswith("updraft_server_gc_pause_seconds_sum"):
            entry["total_s"] = round(float(value), 2)
        elif 'le="0.05"' in name:
            entry["upto_50ms"] = int(float(value))
    return {gen: {"count": e.get("count", 0), "total_s": e.get("total_s", 0.0),
                  "over_50ms": e.get("count", 0) - e.get("upto_50ms", 0)} for gen, e in sorted(out.items())}


_INDEX = re.compile(rb'^\{"index":(\d+),')


def poll_index(reply: Reply) -> int:
    """The ``index`` of an assignments answer. The server writes it first, so it is read from the first bytes:
    1,000 simulated agents in this one process would otherwise parse every attempt of their nodes on every
    wake-up (tens of kB each once tasks pile up), and the generator's own busy loop would show up as server
    latency. Any other layout is parsed in full."""
    found = _INDEX.match(reply.body)
    return int(found.group(1)) if found else int(reply.json()["index"])


class Sampler:
    """Peak RSS of the server (once a second), and CPU seconds of the server and of this process in a window."""

    def __init__(self, server_pid: int) -> None:
        self.server, self.me = psutil.Process(server_pid), psutil.Process()
        self.peak_rss = self.rss_start = self.server.memory_info().rss
        self._mark = (0.0, 0.0, 0.0)

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    async def run(self, until: asyncio.Event) -> None:
        while not until.is_set():
            self.peak_rss = max(self.peak_rss, self.server.memory_info().rss)
            await asyncio.sleep(1.0)

    def begin(self) -> None:
        self._mark = (self._cpu(self.server), self._cpu(self.me), time.perf_counter())

    def end(self) -> tuple[float, float, float]:
        """(server CPU s, server % of one core, load generator % of one core) since :meth:`begin`."""
        s0, m0, t0 = self._mark
        wall, server = time.perf_counter() - t0, self._cpu(self.server) - s0
        return server, 100 * server / wall, 100 * (self._cpu(self.me) - m0) / wall


# -- the /health probe, in a process of its own ---------------------------------------------------------------
# A liveness probe comes from outside the server (a kubelet, a blackbox exporter), not from a process that
# also drives 2,000 connections: in this generator's busy loop (see ``loop_lag``) its own pauses, up to
# ~100 ms a few times a minute, would be timed as the server's. So the probe is a small process of its own,
# started with the clients and stopped with them; it prints what it measured as JSON.


async def start_prober(port: int, token: str | None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--probe", str(port), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "LOAD_PROBE_TOKEN": token or ""},
    )


async def stop_prober(proc: asyncio.subprocess.Process, rec: Recorder) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    out, _ = await proc.communicate()
    found = json.loads(out or b"{}")
    rec.latency["health"] = found.get("latency", [])
    for kind, n in found.get("errors", {}).items():
        rec.errors[f"health:{kind}"] += n


async def probe(port: int, token: str) -> None:
    """The prober's body: ``GET /health`` every ``HEALTH_EVERY_S`` until its stdin closes."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), done.set)  # closed (or written to): stop
    c = Connection("127.0.0.1", port, {"Authorization": f"Bearer {token}"} if token else {})
    latency: list[float] = []
    errors: Counter[str] = Counter()
    while not done.is_set():
        sent = time.perf_counter()
        try:
            reply = await c.request("GET", "/health", timeout=REQUEST_TIMEOUT_S)
            latency.append((time.perf_counter() - sent) * 1000)
            if reply.status != 200:
                errors[f"http_{reply.status}"] += 1
        except ERRORS as exc:
            errors[type(exc).__name__] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(0.0, HEALTH_EVERY_S - (time.perf_counter() - sent)))
    c.close()
    print(json.dumps({"latency": latency, "errors": dict(errors)}), flush=True)


async def loop_lag(out: list[float], until: asyncio.Event, every: float = 0.01) -> None:
    """How late this generator's own event loop runs (ms, every 10 ms): every latency measured here includes
    it, so a busy generator shows in the results instead of passing for a slow server."""
    loop = asyncio.get_running_loop()
    while not until.is_set():
        asked = loop.time()
        await asyncio.sleep(every)
        out.append(1000 * (loop.time() - asked - every))


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


async def drive(cluster: Cluster, submitters: int, nodes: int, duration: float) -> dict[str, Any]:
    rec = Recorder()
    # Authentication is on by default: every simulated client acts with the admin token the server wrote at
    # its first start (a server from before authentication has none).
    load = Load(cluster.port, nodes, rec, getattr(cluster, "admin_token", None))
    assert cluster.server is not None
    sampler = Sampler(cluster.server.pid)
    t_reg, gate = time.perf_counter(), asyncio.Semaphore(50)
    fleet = [asyncio.create_task(load.node(n, gate)) for n in load.names]
    while load.registered < nodes:
        await asyncio.sleep(0.1)
    register_s = time.perf_counter() - t_reg
    await asyncio.sleep(3 * HEARTBEAT_S)  # every node has beaten a few times before the clients come
    rec.reset()  # count from here: the load window
    sampler.begin()
    sampling = asyncio.create_task(sampler.run(load.halt))
    own_lag: list[float] = []
    lagging = asyncio.create_task(loop_lag(own_lag, load.stop))
    clients = [asyncio.create_task(load.submitter()) for _ in range(submitters)]
    clients += [asyncio.create_task(load.poll("list", "/v1/tasks?limit=100", LIST_EVERY_S)) for _ in range(LISTERS)]
    prober = await start_prober(cluster.port, getattr(cluster, "admin_token", None))
    started = time.perf_counter()
    await asyncio.sleep(duration)
    load.stop.set()
    stopped = time.perf_counter()
    server_cpu_s, server_cpu, own_cpu = sampler.end()
    await stop_prober(prober, rec)
    answered = rec.answered()
    gc_pauses = await load.gc_pauses()  # since the server started: registration included
    await lagging
    for t in clients:
        t.cancel()  # answers still in flight are abandoned: neither accepted nor errors
    await asyncio.gather(*clients, return_exceptions=True)
    recover_s = await load.recover(stopped)
    load.halt.set()
    halted = time.time()  # the server's clock too (same machine): events before this are from beating nodes
    for t in fleet:
        t.cancel()
    await asyncio.gather(*fleet, sampling, return_exceptions=True)
    lat = rec.latency
    return {
        "submitters": submitters,
        "nodes": nodes,
        "duration_s": duration,
        "accepted": len(load.accepted),
        "accepted_per_s": round(len(load.accepted) / (stopped - started), 1),
        **{f"{r}_{q}_ms": percentile(lat.get(r, []), p)
           for r in ("submit", "heartbeat", "health", "list") for q, p in (("p50", 0.5), ("p99", 0.99))},
        **{f"{r}_max_ms": percentile(lat.get(r, []), 1.0) for r in ("submit", "heartbeat", "health", "list")},
        "heartbeats": len(lat.get("heartbeat", [])),
        "errors": sum(rec.errors.values()),
        "errors_by_kind": dict(rec.errors),
        "refused": dict(rec.refused),
        "recover_s": None if recover_s is None else round(recover_s, 2),
        "rss_mb": round(sampler.peak_rss / 2**20, 1),
        "rss_start_mb": round(sampler.rss_start / 2**20, 1),
        "server_cpu_pct": round(server_cpu),
        "answered": answered,
        "server_cpu_ms_per_answer": round(1000 * server_cpu_s / max(answered, 1), 2),
        "loadgen_cpu_pct": round(own_cpu),
        "gc_pauses": gc_pauses,
        "loadgen_lag_p99_ms": percentile(own_lag, 0.99),
        "loadgen_lag_max_ms": percentile(own_lag, 1.0),
        "loadgen_lag_over_50ms": sum(1 for x in own_lag if x > 50),
        "register_s": round(register_s, 1),
        "loadavg_1m": round(os.getloadavg()[0], 1),  # the whole machine's, others' work included
        "_accepted": load.accepted,
        "_halted": halted,
        "_names": load.names,
    }


def check_store(db: Path, accepted: dict[str, str]) -> tuple[int, int, int]:
    """(lost, duplicated keys, tasks stored), read from the stopped server's SQLite file."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        rows = con.execute("SELECT id, json_extract(data, '$.spec.env.LOAD_KEY') FROM tasks").fetchall()
    key_of = {task_id: key for task_id, key in rows}
    per_key = Counter(key for key in key_of.values() if key is not None)
    lost = sum(key_of.get(task_id) != key for key, task_id in accepted.items())
    return lost, sum(n > 1 for n in per_key.values()), len(rows)


def count_events(db: Path, names: list[str], before: float) -> tuple[int, int]:
    """(false suspicions, drifts) stamped before ``before``, when every simulated node was still beating.

    Read from the stopped server's file, not ``GET /v1/events``: today's server, after a run at 1,000 nodes,
    holds ~160,000 events, many of them "no node fits" decisions naming every node, and took longer than the
    300 s limit to serve one page of them.
    """
    marks = ",".join("?" * len(SUSPICIONS))
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        rows = con.execute(f"SELECT node FROM events WHERE kind IN ({marks}) AND at < ?", (*SUSPICIONS, before))
        sim = set(names)
        suspicions = sum(node in sim for (node,) in rows)
        (drifts,) = con.execute("SELECT COUNT(*) FROM events WHERE kind = 'drifted' AND at < ?", (before,)).fetchone()
    return suspicions, int(drifts)


def run_one(submitters: int, nodes: int, duration: float) -> dict[str, Any]:
    with Cluster(server_config=SERVER_CONFIG) as cluster:
        cluster.start_server()
        result = asyncio.run(drive(cluster, submitters, nodes, duration))
        assert cluster.server is not None
        cluster.server.stop(timeout=60)
        db = cluster.dir / "server" / "updraft.db"
        lost, duplicated, stored = check_store(db, result.pop("_accepted"))
        suspicions, drifts = count_events(db, result.pop("_names"), result.pop("_halted"))
    return {**result, "false_suspicions": suspicions, "drifted": drifts, "lost": lost, "duplicated": duplicated,
            "stored": stored}


def server_commit() -> str:
    """The code the server ran: this checkout's commit, or the tree PYTHONPATH points it at (a baseline)."""
    src = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
    where = Path(src).parent if src else ROOT
    out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return f"{where}: " + (out.stdout.strip() if where == ROOT else "see its COMMIT file")


ROW = ["label", "M", "N", "accepted/s", "submit p50/p99/max ms", "heartbeat p99/max ms", "health p99 ms",
       "false susp.", "errors", "429/503", "lost/dup", "recover s", "RSS MB", "CPU srv/gen %"]


def row(label: str, r: dict[str, Any]) -> list[Any]:
    return [label, r["submitters"], r["nodes"], r["accepted_per_s"],
            f"{r['submit_p50_ms']}/{r['submit_p99_ms']}/{r['submit_max_ms']}",
            f"{r['heartbeat_p99_ms']}/{r['heartbeat_max_ms']}", r["health_p99_ms"], r["false_suspicions"],
            r["errors"], sum(r["refused"].values()), f"{r['lost']}/{r['duplicated']}", r["recover_s"],
            r["rss_mb"], f"{r['server_cpu_pct']}/{r['loadgen_cpu_pct']}"]


def main() -> None:
    if sys.argv[1:2] == ["--probe"]:
        asyncio.run(probe(int(sys.argv[2]), os.environ.get("LOAD_PROBE_TOKEN", "")))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_DURATION_S:g} s per run instead of {DURATION_S:g}")
    ap.add_argument("--baseline", action="store_true", help="write load_baseline.json (today's server)")
    ap.add_argument("--runs", help="M:N,M:N,... instead of the issue's three runs")
    ap.add_argument("--out", default="load", help="results name (bench/results/OUT.json); e.g. for a settings sweep")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the server on the way out, as on ^C
    duration = QUICK_DURATION_S if args.quick else DURATION_S
    runs = RUNS if not args.runs else [tuple(map(int, r.split(":"))) for r in args.runs.split(",")]
    results = []
    for m, n in runs:
        print(f"run: {m} submitters, {n} nodes, {duration:g} s ...", flush=True)
        results.append(run_one(m, n, duration))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "errors_by_kind"}), flush=True)
    name = "load_baseline" if args.baseline else args.out
    settings = {k: v for k, v in os.environ.items() if k.startswith("UPDRAFT_") and k.isupper()
                and not any(secret in k for secret in ("TOKEN", "PASSWORD", "KEY"))}
    figures = {"server": server_commit(), "server_env": settings, "quick": args.quick, "duration_s": duration,
               "runs": results}
    path = write_results(name, figures)
    rows = []
    base = RESULTS / "load_baseline.json"
    if not args.baseline and base.exists():
        rows += [row("baseline", r) for r in json.loads(base.read_text())["runs"]]
    rows += [row({"load": "now", "load_baseline": "baseline"}.get(name, name), r) for r in results]
    print(table(ROW, rows))
    for r in results:
        if r["errors_by_kind"]:
            print(f"errors at ({r['submitters']}, {r['nodes']}): {r['errors_by_kind']}")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
