"""The real agent driver over the in-memory runtime and an in-process fake control plane: the wiring between
the state machine, the workers and the outbox, with no Docker and no sockets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from updraft.agent.cgroup import ParentCgroup
from updraft.agent.fake_runtime import FakeRuntime
from updraft.agent.runner import Agent
from updraft.net import HttpClient, RetryPolicy
from updraft.observe import tracing
from updraft.settings import AgentSettings

IMAGE = "registry.local/app:1"


class FakeServer:
    """Answers the agent's calls; holds one assignment until its result arrives."""

    def __init__(self) -> None:
        self.assignments: list[dict[str, Any]] = []
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        with self.lock:
            if path.endswith("/heartbeat"):
                return httpx.Response(200, json={"stale": [], "known": True})
            if path.endswith("/assignments"):
                index = int(request.url.params.get("index", 0))
                if index:
                    time.sleep(0.05)  # a (short) long poll
                return httpx.Response(200, json={"index": index + 1, "assignments": self.assignments})
            if "/attempts/" in path:
                self.reports.append((path.rsplit("/", 1)[1], body))
                if path.endswith("/status") and body["state"] != "running":
                    self.assignments = []
                return httpx.Response(200, json={})
            return httpx.Response(200, json={})

    def statuses(self) -> list[dict[str, Any]]:
        with self.lock:
            return [b for kind, b in self.reports if kind == "status"]


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met")


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def make_agent(tmp_path: Path, server: FakeServer, runtime: FakeRuntime) -> Agent:
    settings = AgentSettings(server="http://control.test", name="n1", data_dir=tmp_path / "data", cpus="1",
                             memory="1Gi", heartbeat_interval=0.2)
    client = HttpClient(settings.server, transport=httpx.MockTransport(server.handler),
                        retry=RetryPolicy(max_retries=0))
    return Agent(settings, runtime=runtime, client=client, tracing=tracing.NOOP,
                 cgroup=ParentCgroup("updraft-n1", root=tmp_path / "cgroup"))


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()


def test_an_assignment_runs_and_its_result_and_logs_reach_the_server(
    tmp_path: Path, server: FakeServer, agents: list[Agent]
) -> None:
    runtime = FakeRuntime({IMAGE: None})
    server.assignments = [{"task_id": "t1", "token": 1, "spec": {"image": IMAGE, "command": ["run"]}}]
    agent = make_agent(tmp_path, server, runtime)
    agents.append(agent)
    agent.start()
    [cid] = wait_for(runtime.running)
    request = runtime.by_id[cid].request
    assert request.command == ["run"] and request.labels["updraft.task"] == "t1"
    assert request.hardening.cap_add and request.hardening.no_new_privileges
    runtime.say(cid, "hello")
    wait_for(lambda: ("logs", {"lines": [{"stream": "stdout", "at": runtime.clock_now, "data": "hello"}]}) in server.reports)
    runtime.exit(cid, 0)
    wait_for(lambda: len(server.statuses()) == 2)
    running, exited = server.statuses()
    assert running["state"] == "running" and running["container_id"] == cid
    assert exited["state"] == "exited" and exited["exit_code"] == 0 and exited["log_tail"] == "hello"
    wait_for(lambda: cid not in runtime.by_id)  # removed once its result is queued
    wait_for(lambda: len(agent.outbox) == 0)


def test_a_new_agent_adopts_the_container_its_predecessor_left(
    tmp_path: Path, server: FakeServer, agents: list[Agent]
) -> None:
    runtime = FakeRuntime({IMAGE: None})
    server.assignments = [{"task_id": "t1", "token": 7, "spec": {"image": IMAGE}}]
    first = make_agent(tmp_path, server, runtime)
    agents.append(first)
    first.start()
    [cid] = wait_for(runtime.running)
    first.stop()  # its container runs on, as after kill -9
    time.sleep(0.3)
    second = make_agent(tmp_path, server, runtime)
    agents.append(second)
    second.start()
    wait_for(lambda: second.watched.get(("t1", 7)) == cid)
    runtime.exit(cid, 5)
    wait_for(lambda: any(s["state"] == "exited" for s in server.statuses()))
    assert [c for op, c in runtime.calls if op == "create"] == [cid]  # never created again
    assert [s["exit_code"] for s in server.statuses() if s["state"] == "exited"] == [5]
