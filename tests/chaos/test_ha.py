"""Chaos for high availability: real etcd (3 members), 3 real servers, nginx in front, real agents, real Docker.

* kill -9 of the leader during a burst of submits through nginx: no submit that got a 2xx is lost, no task has
  two attempts running at once (the tasks' own ledger), tokens are never issued twice and the new leader's are
  above every earlier one, and placements resume under the new leader;
* the leader stopped (SIGSTOP): another server takes over; when it resumes it does not lead again and the
  tokens stay unique; a task submitted meanwhile runs exactly once;
* one etcd member killed: service continues; two killed (quorum lost): submits answer 503 with a clear error,
  a running container keeps running, and everything resumes when quorum returns.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.test_chaos import assert_no_overlap, ledger, ledger_task, read_ledger
from tests.cluster import BASE_IMAGE, wait_for
from tests.ha_cluster import EtcdCluster, HaCluster
from updraft.errors import UpdraftError
from updraft.net import RetryPolicy
from updraft.sdk import Client

__all__ = ["ledger"]  # the tasks' ledger directory, a fixture shared with test_chaos


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


def revive(etcd: EtcdCluster) -> None:
    """Bring every member back and wait for a healthy cluster. A member restarted right after a kill -9 can exit at
    once on a busy machine (its old sockets not yet released); it is started again until the cluster is whole."""

    def whole() -> bool:
        down = [m for m in range(3) if not etcd.healthy(m)]
        for m in down:
            etcd.start_member(m)  # a no-op while its process still runs
        return not down

    wait_for(whole, 180, interval=2.0, what="etcd healthy, all three members")


@pytest.fixture
def ha(tmp_path: Path, etcd: EtcdCluster) -> Iterator[HaCluster]:
    revive(etcd)  # a previous test may have left members down
    cluster = HaCluster(tmp_path, etcd)
    try:
        cluster.start_servers()
        yield cluster
    finally:
        cluster.close()


def all_tasks(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/v1/tasks", params={"limit": 10000}, timeout=10).json()  # type: ignore[no-any-return]


def assert_tokens_unique(tasks: list[dict[str, Any]]) -> list[tuple[float, int]]:
    """No token issued twice; each task's attempts in increasing token order. Returns (created_at, token)."""
    issued = [(a["created_at"], a["token"]) for t in tasks for a in t["attempts"]]
    twice = [tok for tok, n in Counter(tok for _, tok in issued).items() if n > 1]
    assert not twice, f"tokens issued twice: {twice[:5]}"
    for t in tasks:
        tokens = [a["token"] for a in t["attempts"]]
        assert tokens == sorted(tokens), (t["id"], tokens)
        assert sum(1 for a in t["attempts"] if a["finished_at"] is None) <= 1, t["id"]
    return sorted(issued)


class Burst:
    """Clients submitting through nginx with Idempotency-Keys, resending a key until it is answered."""

    def __init__(self, url: str, ledger: Path, clients: int = 8) -> None:
        self.url, self.ledger, self.clients = url, ledger, clients
        self.lock = threading.Lock()
        self.sent: set[str] = set()
        self.acked: dict[str, str] = {}
        self.failures = 0
        self.stop = threading.Event()

    def run_client(self, per_client: int) -> None:
        retry = RetryPolicy(max_retries=1, base=0.05, cap=0.2)
        with Client(self.url, retry=retry) as client:
            for _ in range(per_client):
                key = uuid.uuid4().hex
                with self.lock:
                    self.sent.add(key)
                while not self.stop.is_set():
                    try:
                        task = client.submit_json({**ledger_task(self.ledger, 0.3), "env": {"SUBMIT_KEY": key}},
                                                  idempotency_key=key)
                    except UpdraftError:
                        with self.lock:
                            self.failures += 1
                        self.stop.wait(0.1)
                        continue
                    with self.lock:
                        assert self.acked.setdefault(key, task["id"]) == task["id"]
                    break

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def test_kill9_of_the_leader_during_a_burst_loses_no_submit_and_runs_nothing_twice(ha: HaCluster, ledger: Path) -> None:
    url = ha.start_nginx()
    ha.start_agent("a", server=url, cpus="2", memory="4Gi", load_source="containers")
    ha.start_agent("b", server=url, cpus="2", memory="4Gi", load_source="containers")
    old = ha.wait_leader()
    burst = Burst(url, ledger)
    with ThreadPoolExecutor(burst.clients) as pool:
        futures = [pool.submit(burst.run_client, 6) for _ in range(burst.clients)]
        try:
            wait_for(lambda: burst.count() >= 15, 120, what="15 acknowledged submits")
            wait_for(lambda: any(t["attempts"] for t in all_tasks(ha.urls[old])), 60, what="a placement before the kill")
            proc = ha.servers[old]
            assert proc is not None
            killed_at = time.time()
            proc.kill9()
            new = ha.wait_leader(exclude=(old,), timeout=30)
            wait_for(lambda: all(f.done() for f in futures), 180, interval=0.2, what="every client done")
        finally:
            burst.stop.set()
        for f in futures:
            f.result()
    assert new != old
    live = ha.urls[new]

    def settled() -> bool:
        tasks = all_tasks(live)
        return len(tasks) >= len(burst.acked) and all(t["state"] == "succeeded" for t in tasks)

    wait_for(settled, 180, interval=0.5, what="every acknowledged task succeeded under the new leader")
    tasks = all_tasks(live)
    key_of = {t["id"]: t["spec"]["env"].get("SUBMIT_KEY") for t in tasks}
    lost = {k: tid for k, tid in burst.acked.items() if key_of.get(tid) != k}
    assert not lost, f"{len(lost)} acknowledged submits lost, e.g. {list(lost.items())[:3]}"
    assert not {k: n for k, n in Counter(key_of.values()).items() if n > 1}, "a key stored twice"
    assert set(key_of.values()) <= burst.sent
    issued = assert_tokens_unique(tasks)
    before = [token for at, token in issued if at < killed_at]
    after = [token for at, token in issued if at > killed_at]
    assert before and after and min(after) > max(before), "the new leader's tokens are above every earlier one"
    assert_no_overlap(ledger)
    ran = {task for task, _ in read_ledger(ledger)}
    assert ran == set(key_of), "every stored task ran"
    view = ha.cluster_view(new)
    assert view is not None and view["leader"]["id"] == f"s{new}"
    with Client(url) as c:  # long-polls and a followed log stream through nginx, whichever server answers
        echo = c.submit({"image": BASE_IMAGE, "command": ["sh", "-c", "echo one; sleep 1; echo two"],
                         "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}})
        lines = [line["data"].strip() for line in c.logs(echo.id, follow=True)]
        assert lines == ["one", "two"] and c.wait(echo.id, timeout=60).state == "succeeded"


def test_a_stopped_leader_is_replaced_and_does_not_lead_again_when_it_resumes(ha: HaCluster, ledger: Path) -> None:
    ha.start_agent("a", server=ha.live_urls(), cpus="2", memory="4Gi")
    old = ha.wait_leader()
    term_before = ha.cluster_view(old)["leader"]["term"]  # type: ignore[index]
    with Client(ha.urls[(old + 1) % 3]) as c:
        before = c.submit(ledger_task(ledger, 0.3))
        wait_for(lambda: c.get(before.id).state == "succeeded", 60, what="a task before the stop")
    ha.pause(old)
    try:
        new = ha.wait_leader(exclude=(old,), timeout=30)
        term_after = ha.cluster_view(new)["leader"]["term"]  # type: ignore[index]
        assert term_after > term_before, "terms strictly increase"
        with Client(ha.urls[new]) as c:
            during = c.submit(ledger_task(ledger, 0.3))
            wait_for(lambda: c.get(during.id).state == "succeeded", 60, what="a task placed by the new leader")
    finally:
        ha.resume(old)
    with Client(ha.urls[new]) as c:
        after = [c.submit(ledger_task(ledger, 0.3)).id for _ in range(3)]  # the old leader sees them on resume
        wait_for(lambda: all(c.get(t).state == "succeeded" for t in after), 60, what="tasks after the resume")

    def stepped_down() -> bool:
        view = ha.cluster_view(old)
        return view is not None and not view["self"]["leader"] and view["leader"]["id"] == f"s{new}"

    wait_for(stepped_down, 30, what="the resumed server follows the new leader")
    assert ha.leader() == new and ha.cluster_view(new)["leader"]["term"] == term_after  # type: ignore[index]
    tasks = all_tasks(ha.urls[new])
    issued = assert_tokens_unique(tasks)
    assert len(issued) == 5 and all(t["state"] == "succeeded" for t in tasks)
    assert_no_overlap(ledger)
    assert set(Counter(task for task, _ in read_ledger(ledger)).values()) == {1}, "each task ran once"


def resent(c: Client, spec: dict[str, Any]) -> Any:
    """Submit with one Idempotency-Key until answered: a member just killed may have been etcd's Raft leader, and
    a write in flight then answers 503 until the others have elected one (≈ 1 s)."""
    key = uuid.uuid4().hex

    def attempt() -> dict[str, Any] | None:
        try:
            return c.submit_json(spec, idempotency_key=key)
        except UpdraftError:
            return None

    return c.get(wait_for(attempt, 30, interval=0.2, what="a submit answered")["id"])


def test_etcd_members_lost_one_then_quorum_then_back(ha: HaCluster, etcd: EtcdCluster, ledger: Path) -> None:
    ha.start_agent("a", server=ha.live_urls(), cpus="2", memory="4Gi")
    leader = ha.wait_leader()
    c = Client(ha.urls[leader], retry=RetryPolicy(max_retries=0))
    try:
        etcd.kill_member(2)
        one_down = resent(c, ledger_task(ledger, 0.3))
        wait_for(lambda: c.get(one_down.id).state == "succeeded", 60, what="a task with one etcd member down")

        long = resent(c, ledger_task(ledger, 12))
        wait_for(lambda: c.get(long.id).state == "running", 60, what="a long task running")
        long = c.get(long.id)
        etcd.kill_member(1)

        def refused() -> httpx.Response | None:  # the first submits may still be in flight; soon each is refused
            r = httpx.post(ha.urls[leader] + "/v1/tasks", json=ledger_task(ledger, 0.3), timeout=30)
            return r if r.status_code == 503 else None

        answer = wait_for(refused, 60, interval=0.2, what="a submit refused without quorum")
        error = answer.json()
        assert error["code"] == "unavailable" and "etcd" in error["message"], error
        ticks = len((ledger / "ledger.txt").read_text().splitlines())
        wait_for(lambda: len((ledger / "ledger.txt").read_text().splitlines()) > ticks + 5, 20,
                 what="the running container keeps running without quorum")
        assert not read_ledger(ledger)[(long.id, long.token)][2], "still running, not ended"
    finally:
        etcd.start_member(1)
        etcd.start_member(2)
    revive(etcd)
    leader = ha.wait_leader(timeout=30)
    with Client(ha.urls[leader]) as c2:
        back = c2.submit(ledger_task(ledger, 0.3))
        wait_for(lambda: c2.get(back.id).state == "succeeded", 60, what="a task after quorum returned")
        wait_for(lambda: c2.get(long.id).state == "succeeded", 60, what="the long task's result recorded")
        assert [a.token for a in c2.get(long.id).attempts] == [long.token], "the long task was never moved"
    c.close()
    assert_no_overlap(ledger)
