"""The pin policy end to end in-process: Pinner decisions, the service at submit and in the retry pass, the
scheduler's pull-time scoring, and the executor's verification (a fake Docker client)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
from builders import NOW, heartbeat, node, registration, snapshot, spec, task

from updraft.clock import FakeClock
from updraft.control import ControlService
from updraft.control.pinning import retry_pins
from updraft.errors import ImageError
from updraft.images import Pinner, RegistryClient
from updraft.model import Node, Task, TaskState
from updraft.scheduler import Plan, Policy, Usage, schedule
from updraft.scheduler.scores import image_note, pull_seconds, score

MANIFEST = json.dumps({"config": {"size": 0}, "layers": [{"size": 50_000_000}]}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
APP = "127.0.0.1:5000/app:1"


class Registry:
    """A switchable fake: up (serves tag ``1``) or down (refuses connections)."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if not self.up:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        ref = request.url.path.rsplit("/", 1)[1]
        if ref not in ("1", DIGEST):
            return httpx.Response(404)
        body = b"" if request.method == "HEAD" else MANIFEST
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST}, content=body)


def pinner(policy: str, reg: Registry, clock: FakeClock | None = None) -> Pinner:
    clock = clock or FakeClock()
    return Pinner(policy, RegistryClient(transport=httpx.MockTransport(reg)), monotonic=clock.monotonic)  # type: ignore[arg-type]


@pytest.fixture
def reg() -> Registry:
    return Registry()


# -- decisions ------------------------------------------------------------------------------------------
def test_policy_matrix(reg: Registry) -> None:
    assert pinner("off", reg).decide(APP).kind == "unpinned" and reg.calls == 0
    warn, enforce = pinner("warn", reg), pinner("enforce", reg)
    d = enforce.decide(APP)
    assert (d.kind, d.image, d.size) == ("pinned", f"127.0.0.1:5000/app@{DIGEST}", 50_000_000)
    assert "pinned 127.0.0.1:5000/app:1 to sha256:" in d.message()
    assert enforce.decide("updraft/base:bookworm").kind == "refused"
    assert warn.decide("updraft/base:bookworm").kind == "unpinned"
    assert "the image could not be resolved" in enforce.decide("127.0.0.1:5000/app:nope").why
    assert warn.decide("127.0.0.1:5000/app:nope").kind == "unpinned"


def test_unreachable_defers_under_enforce_and_runs_by_tag_under_warn(reg: Registry) -> None:
    reg.up = False
    clock = FakeClock()
    enforce = pinner("enforce", reg, clock)
    d = enforce.decide(APP)
    assert d.kind == "deferred" and "the image could not be resolved" in d.why and "retried" in d.why
    calls = reg.calls
    assert enforce.decide(APP).kind == "deferred" and reg.calls == calls  # remembered as down: no new request
    assert enforce.decide(APP, probe=True).kind == "deferred" and reg.calls > calls  # the retry pass asks
    warn = pinner("warn", reg, clock)
    assert warn.decide(APP).kind == "unpinned" and "by tag" in warn.decide(APP).why
    pinned = f"127.0.0.1:5000/app@{DIGEST}"
    assert enforce.decide(pinned).kind == "pinned"  # a digest needs no registry to be pinned


def test_offline_says_when_a_decision_needs_no_registry_round_trip(reg: Registry) -> None:
    """The submit fast path decides on the event loop only when ``offline`` is true: then no request is made."""
    clock = FakeClock()
    enforce = pinner("enforce", reg, clock)
    assert pinner("off", reg).offline(APP)
    assert enforce.offline("updraft/base:bookworm") and enforce.offline("not an image!")  # refused at once
    assert not enforce.offline(APP)  # a registry host: a request
    reg.up = False
    assert enforce.decide(APP).kind == "deferred"
    calls = reg.calls
    assert enforce.offline(APP)  # remembered as down for a while: the decision is made from memory
    assert enforce.decide(APP).kind == "deferred" and reg.calls == calls
    clock.advance(60)
    assert not enforce.offline(APP)  # the memory expired: the next decision asks again


# -- the service ----------------------------------------------------------------------------------------
def kinds(service: ControlService, task_id: str) -> list[str]:
    return [e.kind for e in service.store.list_events(task_id=task_id)]


def test_submit_under_enforce_pins_the_task(service: ControlService, reg: Registry) -> None:
    service.pinner = pinner("enforce", reg)
    t, _ = service.submit(spec(APP))
    assert t.spec.image == f"127.0.0.1:5000/app@{DIGEST}" and t.image_tag == APP and t.image_size == 50_000_000
    assert kinds(service, t.id) == ["submitted", "image-pinned"]


def test_submit_under_enforce_refuses_what_cannot_be_pinned(service: ControlService, reg: Registry) -> None:
    service.pinner = pinner("enforce", reg)
    with pytest.raises(ImageError) as err:
        service.submit(spec("updraft/base:bookworm"))
    assert err.value.status == 422 and "updraft/base:bookworm" in err.value.message
    assert "no registry host" in err.value.message and err.value.details["image"] == "updraft/base:bookworm"
    assert service.store.list_tasks() == []


def test_submit_under_warn_records_why_it_is_not_pinned(service: ControlService, reg: Registry) -> None:
    service.pinner = pinner("warn", reg)
    t, _ = service.submit(spec("updraft/base:bookworm"))
    assert t.spec.image == "updraft/base:bookworm" and not t.awaiting_pin
    assert kinds(service, t.id) == ["submitted", "image-unpinned"]


def test_registry_down_keeps_the_task_pending_until_the_pin_succeeds(
    service: ControlService, reg: Registry
) -> None:
    service.register("n1", registration())
    service.pinner = pinner("enforce", reg)
    reg.up = False
    t, _ = service.submit(spec(APP))
    assert t.state == TaskState.PENDING and t.awaiting_pin and "could not be resolved" in t.reason
    service.schedule_once()
    assert service.task(t.id).state == TaskState.PENDING  # never scheduled unpinned
    assert retry_pins(service) == 0 and service.task(t.id).awaiting_pin
    reg.up = True
    assert retry_pins(service) == 1
    pinned = service.task(t.id)
    assert not pinned.awaiting_pin and pinned.spec.image.endswith(DIGEST) and pinned.image_tag == APP
    service.schedule_once()
    assert service.task(t.id).state == TaskState.SCHEDULED
    assert kinds(service, t.id)[:3] == ["submitted", "image-pin-deferred", "image-pinned"]


def test_a_deferred_pin_that_turns_out_impossible_fails_the_task(service: ControlService, reg: Registry) -> None:
    service.pinner = pinner("enforce", reg)
    reg.up = False
    t, _ = service.submit(spec("127.0.0.1:5000/app:gone"))
    reg.up = True
    retry_pins(service)
    failed = service.task(t.id)
    assert failed.state == TaskState.FAILED and "could not be resolved" in failed.reason


def test_heartbeat_records_bandwidth(service: ControlService) -> None:
    service.register("n1", registration())
    service.heartbeat("n1", heartbeat().model_copy(update={"bandwidth": 5e6, "images": [DIGEST]}))
    service.writer.flush()  # new facts are written without making the heartbeat wait
    n = service.node("n1")
    assert n.bandwidth == 5e6 and n.images == [DIGEST]


# -- scheduling -----------------------------------------------------------------------------------------
PINNED = f"127.0.0.1:5000/app@{DIGEST}"


def plan_for_nodes(nodes: list[Node], tasks: list[Task]) -> Plan:
    return schedule(snapshot(nodes, tasks), Policy(), NOW)


def test_pull_time_from_size_and_bandwidth() -> None:
    p = Policy()
    s = spec(PINNED)
    assert pull_seconds(node("a", images=[DIGEST]), s, 50_000_000, p) == 0.0
    assert pull_seconds(node("b").model_copy(update={"bandwidth": 10e6}), s, 50_000_000, p) == 5.0
    assert pull_seconds(node("c"), s, None, p) is None
    assert image_note(node("b").model_copy(update={"bandwidth": 10e6}), s, 50_000_000, p) == "pull ~5.0 s at 10 MB/s"
    slow = score(node("d").model_copy(update={"bandwidth": 1e6}), s, Usage(), p, 50_000_000)
    fast = score(node("e").model_copy(update={"bandwidth": 100e6}), s, Usage(), p, 50_000_000)
    cached = score(node("f", images=[DIGEST]), s, Usage(), p, 50_000_000)
    assert cached > fast > slow


def test_of_two_equal_targets_the_one_holding_the_image_wins() -> None:
    nodes = [node("edge", tags=["edge"], cpu_pct=95), node("t-a", tags=["low-util"]),
             node("t-b", tags=["low-util"], images=[DIGEST])]
    t = task("t", image=PINNED, origin="edge").model_copy(update={"image_size": 50_000_000})
    plan = plan_for_nodes(nodes, [t])
    assert [(p.node, p.placement) for p in plan.placements] == [("t-b", "offload")]
    assert "image cached" in plan.placements[0].reason


def test_a_faster_link_beats_a_slower_one_when_neither_holds_the_image() -> None:
    nodes = [node("edge", tags=["edge"], cpu_pct=95),
             node("slow", tags=["low-util"]).model_copy(update={"bandwidth": 2e6}),
             node("fast", tags=["low-util"]).model_copy(update={"bandwidth": 200e6})]
    t = task("t", image=PINNED, origin="edge").model_copy(update={"image_size": 50_000_000})
    plan = plan_for_nodes(nodes, [t])
    assert plan.placements[0].node == "fast" and "pull ~0.2 s" in plan.placements[0].reason


def test_a_task_awaiting_its_pin_is_not_scheduled() -> None:
    t = task("t", image=APP).model_copy(update={"awaiting_pin": True})
    assert plan_for_nodes([node("n")], [t]).placements == []


# -- verification in the agent's runtime ---------------------------------------------------------------
class FakeImage:
    def __init__(self, repo_digests: list[str]) -> None:
        self.id = "sha256:" + "e" * 64
        self.attrs: dict[str, Any] = {"RepoDigests": repo_digests}


class FakeImages:
    def __init__(self, image: FakeImage) -> None:
        self.image = image

    def get(self, ref: str) -> FakeImage:
        return self.image


class FakeDocker:
    def __init__(self, image: FakeImage) -> None:
        self.images = FakeImages(image)
        self.created = False


def test_executor_refuses_an_image_that_does_not_carry_the_pinned_digest() -> None:
    from updraft.agent.docker_runtime import DockerRuntime

    other = "sha256:" + "9" * 64
    ex = DockerRuntime("n1", client=FakeDocker(FakeImage([f"127.0.0.1:5000/app@{other}"])))  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="verification failed") as err:
        ex.ensure_image(PINNED)
    assert err.value.details["reason"] == "digest_mismatch"
    ok = DockerRuntime("n1", client=FakeDocker(FakeImage([PINNED])))  # type: ignore[arg-type]
    assert ok.ensure_image(PINNED) == "sha256:" + "e" * 64
