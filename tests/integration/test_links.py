"""Resilient links end to end: real server and agent processes behind the fault-injecting proxy.

* 1,000 SDK submits over a link with 200 ± 150 ms of jitter each way and 5 % of connections dropped make
  exactly 1,000 tasks — every retry carried the same Idempotency-Key — and no error reaches the caller.
* An agent heartbeating over the same link for half a minute is never suspected, even with its connections
  cut every 2.5 s (so that it keeps opening new ones, which the proxy drops 5 % of).
* Two control planes behind one endpoint set (``A, B backup``): stopping A sends the SDK's submits and the
  agent's heartbeats to B; when A is back and its ban expires, traffic returns to A.

The proxy delays chunks in both directions, so the server itself sees late requests (not just the client
late answers), and drops a connection at accept time — the client sees it closed before any response.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.cluster import NOOP_IMAGE, Cluster, wait_for
from tests.tools.faultproxy import FaultProxy
from updraft.model import Task
from updraft.net import HttpClient
from updraft.sdk import Client

LINK = {"latency": 0.2, "jitter": 0.15, "drop": 0.05, "direction": "both"}
SUBMITS = 1000
WORKERS = 16
SUSPICION = ("node-suspect", "node-unreachable")
CHURN = 1.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Cluster]:
    """A node-less control plane: tasks stay pending, so the test is about the link, not the scheduler."""
    c = Cluster(tmp_path / "a", server_config={"image_policy": "off"})
    try:
        c.start_server()
        yield c
    finally:
        c.close()


def _events(c: Cluster) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    after = 0
    while True:
        page = httpx.get(f"{c.url}/v1/events", params={"after": after, "limit": 10000}, timeout=10,
                         headers=c.headers).json()
        if not page:
            return out
        out += page
        after = page[-1]["id"]


def _tasks(c: Cluster) -> list[dict[str, object]]:
    return list(httpx.get(f"{c.url}/v1/tasks", params={"limit": 10000}, timeout=30, headers=c.headers).json())


def test_thousand_submits_over_a_lossy_jittery_link_make_exactly_a_thousand_tasks(server: Cluster) -> None:
    with FaultProxy(("127.0.0.1", server.port), seed=7, **LINK) as proxy:  # type: ignore[arg-type]
        # No keep-alive: every attempt opens a connection, so 5 % of *requests* meet a dropped one, not 5 % of
        # the handful of pooled connections.
        no_reuse = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
        http = HttpClient(proxy.url, transport=no_reuse, token=server.admin_token)
        keys = [f"links-{i:04d}" for i in range(SUBMITS)]
        errors: list[BaseException] = []

        def submit(key: str) -> Task | None:
            try:
                return c.submit(image=NOOP_IMAGE, command=["true"], idempotency_key=key)
            except BaseException as exc:  # collected and asserted below, loudly
                errors.append(exc)
                return None

        c = Client(http=http)
        t0 = time.monotonic()
        with c, ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(submit, keys))
        took = time.monotonic() - t0
        stats = http.stats()[0]
        counters = dict(proxy.counters)

    assert not errors, f"{len(errors)} submit(s) failed; first: {errors[0]!r}"
    ids = [t.id for t in results if t is not None]
    assert len(ids) == SUBMITS and len(set(ids)) == SUBMITS
    # The faults were real: connections were dropped and requests were retried (with their original key).
    assert counters["dropped"] >= 10, counters
    assert stats.retries >= counters["dropped"], (stats, counters)

    stored = _tasks(server)
    assert len(stored) == SUBMITS, f"the server holds {len(stored)} tasks for {SUBMITS} submits"
    assert {t["id"] for t in stored} == set(ids)
    submitted = [e for e in _events(server) if e["kind"] == "submitted"]
    assert len(submitted) == SUBMITS
    db = sqlite3.connect(f"file:{server.dir / 'server' / 'updraft.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT key, task_id FROM idempotency").fetchall()
    finally:
        db.close()
    assert sorted(k for k, _ in rows) == keys
    assert {t for _, t in rows} == set(ids)
    print(
        f"\n{SUBMITS} submits in {took:.1f} s; proxy {counters}; retries {stats.retries}, "
        f"timeouts {stats.timeouts}, srtt {stats.srtt:.3f} s, rto {stats.rto:.3f} s"
    )
    assert took < 90


def test_heartbeats_over_the_same_link_raise_no_suspicion(server: Cluster) -> None:
    with FaultProxy(("127.0.0.1", server.port), seed=11, **LINK) as proxy:  # type: ignore[arg-type]
        server.start_agent("far", server=proxy.url, cpus="0.5", memory="256Mi", load_source="containers")
        started = time.monotonic()
        while time.monotonic() - started < 30:
            # Churn: cut the agent's pooled connections every few seconds (a NAT timeout, a cell handover),
            # so its requests keep opening new connections and the 5 % drop applies to them.
            time.sleep(CHURN)
            proxy.reset_all()
        node = httpx.get(f"{server.url}/v1/nodes/far", timeout=5, headers=server.headers).json()
        counters = dict(proxy.counters)
        agent = server.agents["far"]
        assert agent.alive(), agent.tail()
    suspicions = [e for e in _events(server) if e["kind"] in SUSPICION]
    assert suspicions == [], suspicions
    assert node["state"] == "ready"
    assert time.time() - node["last_heartbeat"] < 3
    assert counters["accepted"] >= 12, counters  # the churn forced new connections
    print(f"\nheartbeats for {time.monotonic() - started:.0f} s through {LINK}: proxy {counters}, no suspicion")


def test_two_servers_behind_one_endpoint_set_stopping_one_sends_traffic_to_the_other(tmp_path: Path) -> None:
    with (
        Cluster(tmp_path / "a", server_config={"image_policy": "off", "tokens_file": str(tmp_path / "tokens.json")}) as a,
        Cluster(tmp_path / "b", server_config={"image_policy": "off", "tokens_file": str(tmp_path / "tokens.json")}) as b,
    ):
        a.start_server()
        b.start_server()
        b.admin_token = a.admin_token  # the two servers share their token records: one admin, one node token
        servers = f"{a.url} fail_timeout=3s, {b.url} backup"
        a.start_agent("edge", server=servers, cpus="0.5", memory="256Mi", load_source="containers")
        with Client(servers, token=a.admin_token) as c:
            before = [
                c.submit(image=NOOP_IMAGE, command=["sleep", "600"], resources={"requests": {"cpu": "64"}}).id
                for _ in range(10)
            ]
            assert len(_tasks(a)) == 10 and _tasks(b) == []  # the backup takes nothing while A is up

            assert a.server is not None
            a.server.stop()
            t0 = time.monotonic()
            first = c.submit(image=NOOP_IMAGE, command=["true"], resources={"requests": {"cpu": "64"}})
            failover = time.monotonic() - t0
            after = [first.id] + [
                c.submit(image=NOOP_IMAGE, command=["true"], resources={"requests": {"cpu": "64"}}).id for _ in range(9)
            ]
            assert {t["id"] for t in _tasks(b)} == set(after)
            assert failover < 2.0, f"the first submit after A stopped took {failover:.2f} s"

            # The agent follows: its heartbeats reach B, which does not know it, so it registers there. (It runs
            # nothing: B would fence A's tasks, which it does not know — see docs/net.md.)
            wait_for(
                lambda: httpx.get(f"{b.url}/v1/nodes/edge", timeout=1, headers=b.headers).json()["state"] == "ready",
                15,
                what="agent registered with B",
            )

            # A comes back: once its ban (fail_timeout=3s) has expired, the next request goes to A again.
            a.server.start()
            a.wait_ready()
            time.sleep(3.5)
            back = c.submit(image=NOOP_IMAGE, command=["true"], resources={"requests": {"cpu": "64"}})
            assert back.id in {t["id"] for t in _tasks(a)}
            assert set(before) <= {t["id"] for t in _tasks(a)}  # A's own store was never touched by B
