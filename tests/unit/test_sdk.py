"""The SDK against the ASGI app in-process (no sockets): operations and typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from builders import spec
from fastapi import FastAPI
from fastapi.testclient import TestClient

from updraft import errors
from updraft.clock import FakeClock
from updraft.control import create_app
from updraft.model import TaskState
from updraft.net import HttpClient, RetryPolicy
from updraft.sdk import AsyncClient, Client
from updraft.settings import ServerSettings

SERVER = "http://testserver"


def sdk_for(app: FastAPI, token: str | None = None) -> Iterator[Client]:
    with TestClient(app) as tc, Client(SERVER, token=token, transport=tc._transport) as client:
        yield client


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(ServerSettings(data_dir=tmp_path, auth=False))


@pytest.fixture
def client(app: FastAPI) -> Iterator[Client]:
    yield from sdk_for(app)


def register(client: Client, name: str, **extra: object) -> None:
    body = {"capacity": {"cpu": "2", "memory": "2Gi"}, **extra}
    client.http.put(f"/v1/nodes/{name}", json=body, idempotent=True)


def test_submit_get_list_cancel(client: Client) -> None:
    t = client.submit(image="busybox:1.36", command=["echo", "hi"])
    assert t.state == TaskState.PENDING and t.spec.command == ["echo", "hi"]
    assert client.get(t.id).id == t.id
    u = client.submit(spec(image="alpine:3"))
    assert {x.id for x in client.list()} == {t.id, u.id}
    cancelled = client.cancel(t.id)
    assert cancelled.state == TaskState.CANCELLED
    assert [x.id for x in client.list(state="cancelled")] == [t.id]
    assert client.events(t.id)[0].kind == "submitted"


def test_submit_with_a_dict_and_an_idempotency_key(client: Client) -> None:
    a = client.submit({"image": "busybox"}, idempotency_key="once")
    b = client.submit({"image": "busybox"}, idempotency_key="once")
    assert a.id == b.id and len(client.list()) == 1


def test_nodes(client: Client) -> None:
    register(client, "n1", tags=["edge"])
    register(client, "n2")
    assert [n.name for n in client.nodes()] == ["n1", "n2"]
    assert client.node("n1").tags == ["edge"]
    assert client.cordon("n1").cordoned and not client.uncordon("n1").cordoned
    assert client.label("n1", set={"zone": "a"}).labels == {"zone": "a"}
    assert [str(t) for t in client.taint("n1", add=["gpu=true:NoSchedule"]).taints] == ["gpu=true:NoSchedule"]
    drained = client.drain("n2")
    assert drained.cordoned and drained.draining


def test_get_shows_the_placement(app: FastAPI, client: Client) -> None:
    register(client, "n1")
    t = client.submit(image="busybox")
    app.state.service.schedule_once()  # deterministic; the background loop may also have placed it
    placed = client.get(t.id)
    assert (placed.state, placed.node) == (TaskState.SCHEDULED, "n1") and placed.token is not None
    assert client.wait(t.id, timeout=0.0).id == t.id  # returns at once when the deadline has passed


def test_not_found_is_rebuilt_from_the_code(client: Client) -> None:
    with pytest.raises(errors.NotFound) as info:
        client.get("t-missing")
    assert info.value.details["field"] == "task_id"
    with pytest.raises(errors.NotFound):
        client.cancel("t-missing")
    with pytest.raises(errors.NotFound) as node_info:
        client.node("ghost")
    assert node_info.value.details == {"field": "node", "node": "ghost"}


def test_validation_errors_are_rebuilt_from_the_code(client: Client) -> None:
    with pytest.raises(errors.ValidationError) as info:
        client.submit(image="busybox", resources={"requests": {"memory": "12Zi"}})
    assert info.value.code == "invalid" and info.value.details["field"] == "resources.requests.memory"
    with pytest.raises(errors.ValidationError) as info:
        client.submit(image="Bad Image")
    assert info.value.details["field"] == "image"
    with pytest.raises(errors.ValidationError) as info:
        client.submit(image="busybox", origin="ghost")
    assert info.value.details["field"] == "origin"


def test_too_large_is_a_validation_error_subclass(client: Client) -> None:
    with pytest.raises(errors.PayloadTooLarge) as info:
        client.submit(image="busybox", env={"BLOB": "x" * (1 << 20)})
    assert isinstance(info.value, errors.ValidationError)


def test_token(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data_dir=tmp_path))
    with TestClient(app) as tc:
        admin = (tmp_path / "admin.token").read_text().strip()
        with Client(SERVER, transport=tc._transport) as anonymous, pytest.raises(errors.Unauthorized):
            anonymous.list()
        with Client(SERVER, token=admin, transport=tc._transport) as ok:
            assert ok.list() == []


def test_async_client_over_asgi_transport(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data_dir=tmp_path, auth=False))

    async def scenario() -> None:
        async with AsyncClient(SERVER, transport=httpx.ASGITransport(app=app)) as client:
            t = await client.submit(image="busybox")
            assert (await client.get(t.id)).id == t.id
            assert [x.id for x in await client.list()] == [t.id]
            assert (await client.cancel(t.id)).state == TaskState.CANCELLED
            assert (await client.events(t.id))[0].kind == "submitted"
            assert await client.nodes() == []
            with pytest.raises(errors.NotFound):
                await client.get("t-missing")
            with pytest.raises(errors.ValidationError):
                await client.submit(image="busybox", bogus=True)

    asyncio.run(scenario())
    app.state.service.store.close()


class Backpressure(httpx.BaseTransport):
    """In front of the app: submits meet the given fates in turn ("refuse": 429 before the app sees it; "lose":
    the app stores it, then the answer is replaced by a 503), with ``Retry-After: 1``; then pass through."""

    def __init__(self, inner: httpx.BaseTransport, *fates: str) -> None:
        self.inner, self.fates = inner, list(fates)
        self.submits: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or request.url.path != "/v1/tasks":
            return self.inner.handle_request(request)
        self.submits.append(request)
        fate = self.fates.pop(0) if self.fates else "pass"
        if fate == "refuse":
            return httpx.Response(429, headers={"Retry-After": "1"}, json={"code": "busy", "message": "full"})
        answer = self.inner.handle_request(request)
        if fate == "lose":
            answer.read()
            return httpx.Response(503, headers={"Retry-After": "1"}, json={"code": "unavailable", "message": "lost"})
        return answer


def test_submit_refused_and_answer_lost_is_retried_with_its_key_and_stored_once(app: FastAPI) -> None:
    with TestClient(app) as tc:
        gate = Backpressure(tc._transport, "refuse", "refuse", "lose")
        clock = FakeClock()
        with Client(http=HttpClient(SERVER, transport=gate, clock=clock, retry=RetryPolicy(max_retries=5))) as c:
            t0 = clock.monotonic()
            task = c.submit(image="busybox")
            assert clock.monotonic() - t0 >= 3.0  # three waits of at least Retry-After
            assert len(gate.submits) == 4
            assert len({r.headers["Idempotency-Key"] for r in gate.submits}) == 1
            assert [t.id for t in c.list()] == [task.id]  # the lost answer's task, returned by the retry
            assert [e.kind for e in c.events(task.id)].count("submitted") == 1
