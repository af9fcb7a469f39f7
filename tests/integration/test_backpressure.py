"""429 and ``Retry-After`` end to end: a real server admitting one submit at a time, many SDK clients at once.

The server (``max_pending_submits = 1``) must refuse most of a burst with 429 and ``Retry-After``; the SDK must
wait and send the same submit again with the same ``Idempotency-Key``, until every submit is answered. Then
each submit's task is stored exactly once, under the id its answer carried. The burst is made certain by
stopping the server (SIGSTOP) while the clients connect and send, then letting it read them all at once.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.cluster import Cluster, wait_for
from updraft.net import RetryPolicy
from updraft.sdk import Client

CLIENTS = 40
SUBMITS_EACH = 5
TASK = {"image": "busybox:1.36", "command": ["true"], "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}


def accept_queue(port: int) -> int:
    """Connections waiting to be accepted on the loopback listener ``port`` (/proc/net/tcp, LISTEN rx_queue)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "0A" and local.endswith(f":{port:04X}"):
            return int(queues.split(":")[1], 16)
    return 0


def test_sdk_waits_out_429_and_every_submit_is_stored_once(tmp_path: Path) -> None:
    with Cluster(tmp_path, server_config={"image_policy": "off", "max_pending_submits": 1}) as cluster:
        server = cluster.start_server()
        ready = threading.Barrier(CLIENTS + 1)
        retry = RetryPolicy(max_retries=200, base=0.05, cap=2.0)

        def submitter() -> tuple[dict[str, str], int]:
            answered: dict[str, str] = {}
            with Client(cluster.url, token=cluster.admin_token, retry=retry) as client:
                ready.wait()
                for _ in range(SUBMITS_EACH):
                    key = uuid.uuid4().hex
                    task = client.submit_json({**TASK, "env": {"SUBMIT_KEY": key}}, idempotency_key=key)
                    answered[key] = task["id"]
                return answered, sum(s.refused for s in client.http.stats())

        with ThreadPoolExecutor(CLIENTS) as pool:
            server.signal(signal.SIGSTOP)
            try:
                futures = [pool.submit(submitter) for _ in range(CLIENTS)]
                ready.wait()
                wait_for(lambda: accept_queue(cluster.port) >= CLIENTS, 30, what="every client queued")
            finally:
                server.signal(signal.SIGCONT)
            results = [f.result(timeout=240) for f in futures]

        answered = {k: tid for got, _ in results for k, tid in got.items()}
        refused = sum(n for _, n in results)
        assert len(answered) == CLIENTS * SUBMITS_EACH
        assert refused > 0, "the server never answered 429: the admission limit was not exercised"

        with Client(cluster.url, token=cluster.admin_token) as client:
            stored = client.http.get("/v1/tasks", params={"limit": 10000}).json()
        key_of = {t["id"]: t["spec"]["env"]["SUBMIT_KEY"] for t in stored}
        assert Counter(key_of.values()) == Counter(answered.keys())  # each key once, no stray task
        assert all(key_of[tid] == key for key, tid in answered.items())  # under the id its answer carried
