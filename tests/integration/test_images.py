"""Images end to end: a real registry (Debian's docker-registry on 127.0.0.1), real server and agent processes,
the real Docker engine — and, for locality, a second engine whose image store is empty."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from tests.cluster import BASE_IMAGE, Cluster, wait_for
from tests.tools.imagehost import ExtraDockerd, Registry, build_example, untag_pushed, updraft
from updraft.errors import ImageError

MISSING = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg
    untag_pushed(reg.host)


@pytest.fixture(scope="module")
def example(registry: Registry) -> str:
    """The example app, built and pushed with ``updraft build``: ``NAME@sha256:…``."""
    return build_example(f"{registry.host}/example:1")


def start(cluster: Cluster, policy: str, registry: Registry) -> Cluster:
    # A login for the test registry (it asks for none, so the login is never needed; it must never be shown).
    login = {"username": "ci", "password": "never-shown-pw"}
    cluster.server_config = {"image_policy": policy, "registry_credentials": {registry.host: login}}
    cluster.start_server()
    cluster.start_agent("edge", tags=["edge"], cpus="0.5", cpuset="0", memory="1Gi")
    cluster.start_agent("cloud", tags=["low-util"], cpus="1", cpuset="1", memory="2Gi")
    return cluster


def kinds(c: object, task_id: str) -> dict[str, str]:
    return {e.kind: e.message for e in c.events(task_id)}  # type: ignore[attr-defined]


def push_variant(name: str, label: str) -> str:
    """Build a tiny image from the base (one LABEL) and push it as ``name``; returns its digest."""
    client = docker.from_env()
    import io

    dockerfile = f"FROM {BASE_IMAGE}\nLABEL updraft.test.variant={label}\n".encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=name, rm=True)
    out = updraft("push", name, "-q")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().rpartition("@")[2]


def test_build_push_submit_by_tag_under_enforce_runs_the_pinned_digest(
    cluster: Cluster, registry: Registry, example: str
) -> None:
    start(cluster, "enforce", registry)
    digest = example.rpartition("@")[2]
    with cluster.client() as c:
        task = c.run(image=f"{registry.host}/example:1", origin="edge", timeout=120)
        assert task.state == "succeeded", (task.reason, task.current)
        assert task.spec.image == example and task.image_tag == f"{registry.host}/example:1"
        assert task.current is not None and task.current.image_digest == digest
        assert '"mean": 3.875' in task.current.log_tail  # the app ran, with its pinned requirement
        pinned = kinds(c, task.id)["image-pinned"]
        assert f"pinned {registry.host}/example:1 to {digest[:19]}" in pinned
        # enforce refuses what cannot be pinned, naming the image and why
        with pytest.raises(ImageError) as err:
            c.submit(image=BASE_IMAGE, command=["true"], origin="edge")
        assert err.value.status == 422 and BASE_IMAGE in err.value.message and "no registry host" in err.value.message
        with pytest.raises(ImageError) as err:
            c.submit(image=f"{registry.host}/example:nope", origin="edge")
        assert "could not be resolved" in err.value.message  # not what the registry answered (issue 15)
        # the agent reports the digests it holds, compactly (no name@digest pairs)
        wait_for(lambda: digest in c.node("edge").images, 40, what="edge reports the digest")
        assert not any("@" in ref for ref in c.node("edge").images)
    # credentials are never logged and never returned by the API
    assert cluster.server is not None
    for text in (cluster.server.log_path.read_text(), *(p.log_path.read_text() for p in cluster.agents.values())):
        assert "never-shown-pw" not in text
    api = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {cluster.admin_token}", f"{cluster.url}/v1/policy",
                          f"{cluster.url}/v1/tasks", f"{cluster.url}/v1/events", f"{cluster.url}/openapi.json"],
                         capture_output=True, text=True)
    assert '"paths"' in api.stdout and "never-shown-pw" not in api.stdout


def test_drift_is_audited_and_an_earlier_pin_keeps_its_digest(cluster: Cluster, registry: Registry) -> None:
    start(cluster, "enforce", registry)
    name = f"{registry.host}/drifty:1"
    d1 = push_variant(name, "one")
    sleeper = ["python3", "-c", "import time; time.sleep(120)"]
    with cluster.client() as c:
        first = c.submit(image=name, command=sleeper, origin="edge", offloadable=False)
        wait_for(lambda: c.get(first.id).state == "running", 60, what="first task running")
        ok = updraft("audit", "images", "--server", cluster.url, env=cluster.env())
        assert ok.returncode == 0, ok.stdout + ok.stderr
        d2 = push_variant(name, "two")  # different content, same tag
        assert d2 != d1
        second = c.submit(image=name, command=sleeper, origin="cloud", offloadable=False)
        wait_for(lambda: c.get(second.id).state == "running", 60, what="second task running")
        assert c.get(second.id).spec.image.endswith(d2)
        out = updraft("audit", "images", "--server", cluster.url, env=cluster.env())
        assert out.returncode == 1, out.stdout + out.stderr
        assert "DRIFT" in out.stdout and d1[:19] in out.stdout and d2[:19] in out.stdout
        report = json.loads(updraft("audit", "images", "--server", cluster.url, "--json", env=cluster.env()).stdout)
        assert report["drift"] == [f"{registry.host}/drifty"]
        # the earlier task still runs its original digest, in its container and as reported
        running = c.get(first.id)
        assert running.spec.image == f"{registry.host}/drifty@{d1}" and running.current.image_digest == d1
        container = docker.from_env().containers.get(running.current.container_id)
        assert container.attrs["Config"]["Image"].endswith(d1)
        c.cancel(first.id)
        c.cancel(second.id)


def test_a_missing_digest_fails_the_task_with_a_clear_reason(cluster: Cluster, registry: Registry,
                                                             example: str) -> None:
    start(cluster, "warn", registry)
    missing = f"{registry.host}/example@{MISSING}"
    with cluster.client() as c:
        task = c.run(image=missing, origin="edge", timeout=120)
        assert task.state == "failed"
        error = task.current.error if task.current else ""
        assert error and "cannot be pulled" in error and MISSING in error, error
        assert "could not be resolved" in kinds(c, task.id)["image-unverified"]  # what answered is not told


def test_registry_down_keeps_the_task_pending_and_retries(cluster: Cluster, registry: Registry,
                                                          example: str) -> None:
    start(cluster, "enforce", registry)
    tag = f"{registry.host}/example:1"
    with cluster.client() as c:
        registry.stop()
        try:
            task = c.submit(image=tag, origin="edge")
            assert task.state == "pending" and task.awaiting_pin
            assert "could not be resolved" in task.reason and "retried" in task.reason
            time.sleep(5)  # several retry passes: still pending, never run unpinned
            waiting = c.get(task.id)
            assert waiting.state == "pending" and waiting.awaiting_pin and not waiting.attempts
        finally:
            registry.start()
        done = c.wait(task.id, timeout=120)
        assert done.state == "succeeded" and done.spec.image == example
        assert {"image-pin-deferred", "image-pinned", "succeeded"} <= set(kinds(c, task.id))


def test_of_two_equal_targets_the_one_holding_the_image_wins(cluster: Cluster, registry: Registry,
                                                             example: str) -> None:
    """``near`` shares the engine the example was built on; ``far`` has an engine of its own, empty."""
    with ExtraDockerd() as far_engine:
        cluster.server_config = {"image_policy": "warn"}
        cluster.start_server()
        cluster.start_agent("edge", tags=["edge"], cpus="0.5", cpuset="0", memory="1Gi")
        cluster.start_agent("near", tags=["low-util"], cpus="1", cpuset="1", memory="2Gi")
        cluster.start_agent("far", tags=["low-util"], cpus="1", cpuset="1", memory="2Gi",
                            env={"DOCKER_HOST": far_engine.host})
        digest = example.rpartition("@")[2]
        with cluster.client() as c:
            wait_for(lambda: digest in c.node("near").images, 40, what="near reports the image")
            assert digest not in c.node("far").images
            hog = c.submit(image=BASE_IMAGE, command=["sleep", "60"], origin="edge", offloadable=False,
                           resources={"requests": {"cpu": "500m"}})
            wait_for(lambda: c.get(hog.id).state == "running", 60, what="hog running")
            task = c.run(image=f"{registry.host}/example:1", origin="edge", timeout=120)
            c.cancel(hog.id)
        assert task.state == "succeeded" and task.current is not None, task.reason
        assert (task.current.node, task.current.placement) == ("near", "offload"), task.current.reason
        assert "image cached" in task.current.reason
