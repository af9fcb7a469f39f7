"""The Docker API's HTTP edge against an in-memory control plane: versions, errors, the hijacked attach
stream, and docker-py 7 driving it end to end (no dockerd needed)."""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import docker
import httpx
import pytest

from updraft.dockerapi import DockerApiServer, build, parse_address
from updraft.dockerapi.frames import read_frames

TERMINAL = ("succeeded", "failed", "cancelled")


class FakeControlPlane:
    """Tasks in memory. ``on_submit`` decides what a submitted task does (default: it keeps running)."""

    def __init__(self, on_submit: Callable[[FakeControlPlane, str, dict[str, Any]], None] | None = None) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.lines: dict[str, list[dict[str, Any]]] = {}
        self.keys: dict[str, str] = {}
        self.changed = threading.Condition()
        self.ids = itertools.count(1)
        self.on_submit = on_submit

    def submit(self, spec: dict[str, Any], key: str) -> dict[str, Any]:
        with self.changed:
            if key in self.keys:
                return dict(self.tasks[self.keys[key]])
            tid = f"t-{next(self.ids)}"
            attempt = {"node": "edge", "placement": "local", "reason": "local: origin idle", "token": 1,
                       "exit_code": None, "started_at": 1.0}
            self.tasks[tid] = {"id": tid, "spec": spec, "state": "running", "attempts": [attempt]}
            self.lines[tid], self.keys[key] = [], tid
        if self.on_submit:
            self.on_submit(self, tid, spec)
        return dict(self.tasks[tid])

    def emit(self, tid: str, stream: str, data: str) -> None:
        with self.changed:
            seq = len(self.lines[tid]) + 1
            self.lines[tid].append({"seq": seq, "stream": stream, "at": 1.0 + seq, "data": data})
            self.changed.notify_all()

    def finish(self, tid: str, exit_code: int | None, state: str | None = None) -> None:
        with self.changed:
            task = self.tasks[tid]
            task["state"] = state or ("succeeded" if exit_code == 0 else "failed")
            task["attempts"][-1] = {**task["attempts"][-1], "exit_code": exit_code, "finished_at": 9.0}
            self.changed.notify_all()

    def task(self, task_id: str) -> dict[str, Any]:
        with self.changed:
            return dict(self.tasks[task_id])

    def wait(self, task_id: str, timeout: float) -> dict[str, Any]:
        with self.changed:
            self.changed.wait_for(lambda: self.tasks[task_id]["state"] in TERMINAL, timeout)
            return dict(self.tasks[task_id])

    def logs(self, task_id: str, after: int, wait: float) -> dict[str, Any]:
        def ready() -> bool:
            return len(self.lines[task_id]) > after or self.tasks[task_id]["state"] in TERMINAL

        with self.changed:
            self.changed.wait_for(ready, wait)
            lines = [dict(ln) for ln in self.lines[task_id][after:]]
            done = self.tasks[task_id]["state"] in TERMINAL
        return {"lines": lines, "next": lines[-1]["seq"] if lines else after, "done": done}

    def cancel(self, task_id: str) -> dict[str, Any]:
        if self.tasks[task_id]["state"] not in TERMINAL:
            self.finish(task_id, None, "cancelled")
        return self.task(task_id)

    def nodes(self) -> list[dict[str, Any]]:
        return [{"name": "edge", "capacity": {"cpu_millis": 2000, "memory_bytes": 2**30}, "state": "ready",
                 "images": ["updraft/base:bookworm"], "labels": {}, "tags": ["edge"], "metrics": {"cpu_pct": 5.0}}]


def python_print(control: FakeControlPlane, tid: str, spec: dict[str, Any]) -> None:
    """Run ``python3 -c "print(...)"``-style tasks at once: echo the last argument, exit 0 (or 2 for 'fail')."""
    text = (spec.get("command") or ["true"])[-1]
    control.emit(tid, "stdout", text)
    control.finish(tid, 2 if text == "fail" else 0)


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[FakeControlPlane, str]]]:
    servers: list[DockerApiServer] = []

    def start(on_submit: Any = None) -> tuple[FakeControlPlane, str]:
        control = FakeControlPlane(on_submit)
        server = DockerApiServer(build(control, "edge"), parse_address("tcp://127.0.0.1:0"))
        servers.append(server)
        return control, f"http://127.0.0.1:{server.address.port}"

    yield start
    for server in servers:
        server.close()


def test_ping_and_version_negotiation(serve: Callable[..., tuple[FakeControlPlane, str]]) -> None:
    _, url = serve()
    for method in ("GET", "HEAD"):
        r = httpx.request(method, url + "/_ping")
        assert r.status_code == 200 and r.headers["Api-Version"] == "1.43" and r.headers["Ostype"] == "linux"
    assert httpx.get(url + "/_ping").text == "OK"
    assert httpx.get(url + "/v1.41/version").json()["MinAPIVersion"] == "1.24"
    assert httpx.get(url + "/version").json()["ApiVersion"] == "1.43"
    too_new = httpx.get(url + "/v1.99/version")
    assert too_new.status_code == 400 and "too new. Maximum supported API version is 1.43" in too_new.json()["message"]
    too_old = httpx.get(url + "/v1.12/containers/json")
    assert too_old.status_code == 400 and "too old" in too_old.json()["message"]


def test_errors_are_docker_shaped(serve: Callable[..., tuple[FakeControlPlane, str]]) -> None:
    _, url = serve()
    refused = httpx.post(url + "/v1.43/containers/create", json={"Image": "x", "Tty": True})
    assert refused.status_code == 400 and "-t/--tty" in refused.json()["message"]
    assert httpx.get(url + "/containers/nope/json").json() == {"message": "No such container: nope"}
    unknown = httpx.post(url + "/containers/abc/exec")
    assert unknown.status_code == 404 and "does not serve POST /containers/abc/exec" in unknown.json()["message"]
    assert httpx.post(url + "/containers/create?name=dup", json={"Image": "x"}).status_code == 201
    dup = httpx.post(url + "/containers/create?name=dup", json={"Image": "x"})
    assert dup.status_code == 409 and 'name "/dup" is already in use' in dup.json()["message"]


def _attach(url: str, cid: str) -> socket.socket:
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST /v1.43/containers/{cid}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: docker\r\n"
                 "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
    return sock


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_attach_hijacks_the_connection_and_streams_until_the_container_ends(
    serve: Callable[..., tuple[FakeControlPlane, str]],
) -> None:
    control, url = serve()
    cid = httpx.post(url + "/containers/create", json={"Image": "img", "Cmd": ["x"]}).json()["Id"]
    sock = _attach(url, cid)  # before start, as docker run does
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert b"Content-Type: application/vnd.docker.multiplexed-stream" in head and b"Upgrade: tcp" in head
    waiter = threading.Thread(target=lambda: results.append(httpx.post(url + f"/containers/{cid}/wait?condition=next-exit",
                                                                         timeout=30).json()))
    results: list[dict[str, Any]] = []
    waiter.start()
    assert httpx.post(url + f"/containers/{cid}/start").status_code == 204
    assert httpx.post(url + f"/containers/{cid}/start").status_code == 304  # already started
    tid = control.keys[cid]
    control.emit(tid, "stdout", "out")
    control.emit(tid, "stderr", "err")
    control.finish(tid, 3)
    assert read_frames(_read_all(sock)) == [(1, b"out\n"), (2, b"err\n")]
    waiter.join(30)
    assert results == [{"StatusCode": 3}]
    assert control.tasks[tid]["spec"]["origin"] == "edge"
    assert control.tasks[tid]["spec"]["labels"] == {"updraft.docker/container": cid[:12]}


def test_auto_remove_and_wait_removed(serve: Callable[..., tuple[FakeControlPlane, str]]) -> None:
    _, url = serve(python_print)
    cid = httpx.post(url + "/containers/create", json={"Image": "img", "Cmd": ["hi"],
                                                       "HostConfig": {"AutoRemove": True}}).json()["Id"]
    assert httpx.post(url + f"/containers/{cid}/start").status_code == 204
    assert httpx.post(url + f"/containers/{cid}/wait?condition=removed", timeout=30).json() == {"StatusCode": 0}
    assert httpx.get(url + f"/containers/{cid}/json").status_code == 404


def test_docker_py_end_to_end(serve: Callable[..., tuple[FakeControlPlane, str]]) -> None:
    control, url = serve(python_print)
    client = docker.DockerClient(base_url=url.replace("http://", "tcp://"))
    assert client.api.api_version == "1.43"
    assert client.containers.run("updraft/base:bookworm", ["python3", "-c", "hello"], remove=True) == b"hello\n"
    with pytest.raises(docker.errors.ContainerError) as failed:
        client.containers.run("updraft/base:bookworm", ["fail"], labels={"app": "x"})
    assert failed.value.exit_status == 2
    (listed,) = client.containers.list(all=True, filters={"label": "app=x"})
    assert listed.status == "exited" and listed.labels["updraft.placement"] == "local"
    assert listed.logs(timestamps=True).endswith(b"Z fail\n")
    assert client.images.get("updraft/base:bookworm").attrs["Updraft"] == {"Nodes": ["edge"]}
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("updraft/elsewhere:1")
    assert client.info()["Name"] == "edge"
    listed.remove()
    assert client.containers.list(all=True) == []
    assert [t["state"] for t in control.tasks.values()] == ["succeeded", "failed"]


def test_kill_stop_and_remove_running(serve: Callable[..., tuple[FakeControlPlane, str]]) -> None:
    control, url = serve()
    client = docker.DockerClient(base_url=url.replace("http://", "tcp://"))
    ctr = client.containers.run("img", ["sleep"], detach=True)
    with pytest.raises(docker.errors.APIError, match="cannot remove a running container"):
        ctr.remove()
    ctr.stop()
    ctr.reload()
    assert ctr.status == "exited" and ctr.attrs["State"]["ExitCode"] == 137
    with pytest.raises(docker.errors.APIError, match="is not running"):
        ctr.kill()
    other = client.containers.run("img", ["sleep"], detach=True)
    other.remove(force=True)
    assert sorted(t["state"] for t in control.tasks.values()) == ["cancelled", "cancelled"]
    assert [c.id for c in client.containers.list(all=True)] == [ctr.id]


def test_pull_is_deferred_and_credentials_are_not_forwarded(serve: Callable[..., tuple[FakeControlPlane, str]]) -> None:
    _, url = serve()
    r = httpx.post(url + "/images/create?fromImage=docker.io/updraft/base&tag=bookworm")  # as the CLI sends it
    statuses = [json.loads(line)["status"] for line in r.text.splitlines()]
    assert r.status_code == 200 and "present on edge" in statuses[1]
    auth = "eyJ1c2VybmFtZSI6ImEiLCJwYXNzd29yZCI6ImIifQ=="  # {"username":"a","password":"b"}
    r = httpx.post(url + "/images/create?fromImage=x&tag=1", headers={"X-Registry-Auth": auth})
    assert r.status_code == 400 and "not forwarded" in r.json()["message"]


def test_logs_select_streams_tail_and_follow(serve: Callable[..., tuple[FakeControlPlane, str]]) -> None:
    control, url = serve()
    client = docker.DockerClient(base_url=url.replace("http://", "tcp://"))
    ctr = client.containers.run("img", ["x"], detach=True)
    tid = control.keys[ctr.id]
    for i in range(3):
        control.emit(tid, "stdout", f"out {i}")
    control.emit(tid, "stderr", "err")
    assert ctr.logs(stdout=True, stderr=False) == b"out 0\nout 1\nout 2\n"
    assert ctr.logs(stdout=False, stderr=True) == b"err\n"
    assert ctr.logs(tail=2) == b"out 2\nerr\n"
    followed = ctr.logs(stream=True, follow=True)
    assert [next(followed) for _ in range(4)] == [b"out 0\n", b"out 1\n", b"out 2\n", b"err\n"]
    control.emit(tid, "stdout", "later")  # arrives while the client follows
    assert next(followed) == b"later\n"
    control.finish(tid, 0)
    assert list(followed) == []  # the stream ends with the container


@pytest.mark.parametrize("auto_remove", [False, True])
def test_a_failed_start_ends_the_attach_and_the_wait(serve: Callable[..., tuple[FakeControlPlane, str]],
                                                      auto_remove: bool) -> None:
    from updraft.errors import TransportError

    def unreachable(control: FakeControlPlane, tid: str, spec: dict[str, Any]) -> None:
        raise TransportError("POST /v1/tasks: no endpoint answered")

    _, url = serve(unreachable)
    create = {"Image": "img", "HostConfig": {"AutoRemove": auto_remove}}
    cid = httpx.post(url + "/containers/create", json=create).json()["Id"]
    sock = _attach(url, cid)
    head = b""
    while b"\r\n\r\n" not in head:  # upgraded before start, as docker run does
        head += sock.recv(1)
    condition = "removed" if auto_remove else "next-exit"
    with httpx.stream("POST", url + f"/containers/{cid}/wait?condition={condition}", timeout=30) as waiting:
        assert waiting.status_code == 200  # the headers come first: the wait is registered
        started = httpx.post(url + f"/containers/{cid}/start")
        assert started.status_code == 503 and "no endpoint answered" in started.json()["message"]
        assert _read_all(sock) == b""  # the stream ends, no frames
        result = json.loads(waiting.read())
    assert result == {"StatusCode": 125, "Error": {"Message": "POST /v1/tasks: no endpoint answered"}}
    inspected = httpx.get(url + f"/containers/{cid}/json")
    if auto_remove:
        assert inspected.status_code == 404
    else:
        assert inspected.json()["State"]["Status"] == "created"
        assert "no endpoint answered" in inspected.json()["State"]["Error"]
