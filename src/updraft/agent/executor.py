"""The Docker edge of the agent: run, find, stop and read containers through the Docker SDK.

Every container carries labels naming its node, task and attempt token, so a restarted agent finds its
own containers (``observed``) and carries on reporting them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from updraft.agent.cgroup import ParentCgroup
from updraft.agent.reconcile import Observed
from updraft.errors import ImageError, Unavailable
from updraft.images import PullRate, carried_digest, check_digest, pull_image
from updraft.model.api import Assignment

LABEL_NODE, LABEL_TASK, LABEL_TOKEN = "updraft.node", "updraft.task", "updraft.token"
LABEL_CLUSTER = "updraft.cluster"
LABEL_STOP_AFTER = "updraft.stop_after"
log = logging.getLogger("updraft.executor")


def _ts(text: str | None) -> float | None:
    """Docker's RFC 3339 nanosecond timestamps → epoch seconds (None for the zero time)."""
    if not text or text.startswith("0001-"):
        return None
    main, _, frac = text.rstrip("Z").partition(".")
    base = datetime.fromisoformat(main + "+00:00").timestamp()
    return base + (float("0." + frac[:6]) if frac else 0.0)


class DockerExecutor:
    def __init__(
        self,
        node: str,
        cgroup: ParentCgroup | None = None,
        client: docker.DockerClient | None = None,
        cpuset: str | None = None,
        cluster: str = "default",
    ) -> None:
        self.node = node
        self.cluster = cluster
        self.cgroup = cgroup
        self.cpuset = cpuset
        self.client = client or docker.from_env(timeout=30)
        self.timings: dict[str, float] = {}
        self.pull_rate = PullRate()
        """Measured image pull rate (bytes/s), sent with the image list for the scheduler's pull-time estimate."""
        self.images_changed = False
        """Set after a pull: the next heartbeat sends the image list without waiting for its turn."""
        self.on_op: Callable[[str, float, bool], None] | None = None
        """Called with (operation, seconds, ok) after each timed Docker call: the agent's metrics hook."""

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # any failure means Docker does not answer
            return False

    def _timed(self, op: str, started: float, ok: bool = True) -> None:
        self.timings[op] = seconds = time.monotonic() - started
        if self.on_op is not None:
            self.on_op(op, seconds, ok)

    def observed(self) -> list[Observed]:
        try:
            containers = self.client.containers.list(all=True, filters={"label": [f"{LABEL_NODE}={self.node}", f"{LABEL_CLUSTER}={self.cluster}"]})
        except (docker.errors.DockerException, OSError) as exc:
            raise Unavailable(f"docker does not answer: {exc}") from exc
        out = []
        for c in containers:
            labels = c.labels
            try:
                out.append(
                    Observed(
                        labels[LABEL_TASK],
                        int(labels[LABEL_TOKEN]),
                        c.id,
                        c.status in ("running", "created", "restarting"),
                    )
                )
            except (KeyError, ValueError):
                continue
        return out

    def stop_after(self, container_id: str) -> float | None:
        try:
            value = self.client.containers.get(container_id).labels.get(LABEL_STOP_AFTER)
        except docker.errors.DockerException:
            return None
        return float(value) if value else None

    def images(self) -> list[str]:
        """For image locality, compactly: the digests held (a pinned task matches on these) and the tags
        (an unpinned one matches on its reference); not the ``name@digest`` pairs, which repeat both."""
        out: set[str] = set()
        for image in self.client.images.list():
            out.update(image.tags)
            out.update(ref.partition("@")[2] for ref in image.attrs.get("RepoDigests") or [])
        return sorted(out)

    def ensure_image(self, ref: str) -> str:
        """Pull ``ref`` unless present, and check that it carries the digest it is pinned to (nothing runs
        otherwise); return the image id. Raises ImageError with Docker's reason or the mismatch."""
        try:
            image = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            started = time.monotonic()
            try:
                pulled = pull_image(self.client, ref)
            except (ImageError, Unavailable):
                self._timed("pull", started, ok=False)
                raise
            self._timed("pull", started)
            self.pull_rate.add(pulled.bytes, pulled.seconds)
            self.images_changed = True
            image = pulled.image
        except docker.errors.DockerException as exc:
            raise Unavailable(f"docker does not answer: {exc}") from exc
        problem = check_digest(ref, image.attrs.get("RepoDigests") or [])
        if problem is not None:
            raise ImageError(problem, image=ref, reason="digest_mismatch")
        return str(image.id)

    def ran_digest(self, container: Container) -> str | None:
        """The digest a container's image carries under the name it was started as (else its image id)."""
        ref = str(container.attrs.get("Config", {}).get("Image") or "")
        image_id = container.attrs.get("Image")
        if not ref or not image_id:
            return image_id
        try:
            repo_digests = self.client.images.get(image_id).attrs.get("RepoDigests") or []
            return carried_digest(ref, repo_digests) or image_id
        except (docker.errors.DockerException, ValueError):  # ValueError: a reference we cannot parse
            return str(image_id)

    def start(self, a: Assignment, extra_env: dict[str, str] | None = None) -> str:
        spec = a.spec
        self.ensure_image(spec.image)
        cmd = [*(spec.command or []), *(spec.args or [])] or None
        env = {**spec.env, "UPDRAFT_TASK_ID": a.task_id, "UPDRAFT_TOKEN": str(a.token), **(extra_env or {})}
        labels = {**spec.labels, LABEL_NODE: self.node, LABEL_CLUSTER: self.cluster, LABEL_TASK: a.task_id,
                  LABEL_TOKEN: str(a.token)}
        if spec.on_disconnect == "stop" and spec.stop_after:
            labels[LABEL_STOP_AFTER] = str(spec.stop_after)
        kwargs: dict[str, Any] = {
            "command": cmd,
            "environment": env,
            "labels": labels,
            "working_dir": spec.workdir,
            "name": f"updraft-{a.task_id}-{a.token}",
            "detach": True,
        }
        if spec.resources.limits.cpu:
            kwargs["nano_cpus"] = spec.resources.limits.cpu_millis * 1_000_000
        if spec.resources.limits.memory:
            kwargs["mem_limit"] = spec.resources.limits.memory_bytes
            kwargs["memswap_limit"] = spec.resources.limits.memory_bytes
        if self.cpuset:
            kwargs["cpuset_cpus"] = self.cpuset
        if self.cgroup is not None:
            kwargs["cgroup_parent"] = self.cgroup.docker_parent
        if spec.volumes:
            kwargs["volumes"] = list(spec.volumes)
        started, op = time.monotonic(), "create"
        try:
            container = self.client.containers.create(spec.image, **kwargs)
            self._timed("create", started)
            started, op = time.monotonic(), "start"
            container.start()
            self._timed("start", started)
        except docker.errors.APIError as exc:
            self._timed(op, started, ok=False)
            if exc.status_code == 409:  # already created by a previous life of this agent
                return str(self.client.containers.get(kwargs["name"]).id)
            raise ImageError(f"container could not start: {_explain(exc)}") from exc
        return str(container.id)

    def stop(self, container_id: str, grace: float = 2.0) -> None:
        started = time.monotonic()
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(container_id).stop(timeout=int(grace))
        self._timed("stop", started)

    def remove(self, container_id: str) -> None:
        started = time.monotonic()
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(container_id).remove(force=True)
        self._timed("remove", started)

    def restart(self, container_id: str, grace: float = 1.0) -> None:
        """Restart in place (same container, same attempt): what a failing liveness probe asks for."""
        started = time.monotonic()
        try:
            self.client.containers.get(container_id).restart(timeout=int(grace))
        except docker.errors.DockerException:
            self._timed("restart", started, ok=False)
            raise
        self._timed("restart", started)

    def exec(self, container_id: str, command: list[str], timeout: float) -> int | None:
        """Run ``command`` in the container; its exit code, or None if it outlived ``timeout``."""
        started = time.monotonic()
        api = self.client.api
        exec_id = api.exec_create(container_id, command, stdout=False, stderr=False)["Id"]
        runner = threading.Thread(target=api.exec_start, args=(exec_id,), daemon=True)
        runner.start()
        runner.join(timeout)
        self._timed("exec", started)
        if runner.is_alive():
            return None
        code = api.exec_inspect(exec_id).get("ExitCode")
        return None if code is None else int(code)

    def pid(self, container_id: str) -> int | None:
        """The container's init process as the host sees it (its network namespace is the probe's)."""
        state = self.client.api.inspect_container(container_id)["State"]
        return int(state["Pid"]) if state.get("Running") and state.get("Pid") else None

    def address(self, container_id: str) -> str | None:
        settings = self.client.api.inspect_container(container_id)["NetworkSettings"]
        if settings.get("IPAddress"):
            return str(settings["IPAddress"])
        for net in (settings.get("Networks") or {}).values():
            if net.get("IPAddress"):
                return str(net["IPAddress"])
        return None

    def wait(self, container_id: str, timeout: float | None) -> bool:
        """Block until the container exits; False if ``timeout`` passed first."""
        container = self.client.containers.get(container_id)
        try:
            container.wait(timeout=timeout) if timeout else container.wait()
            return True
        except (docker.errors.DockerException, OSError) as exc:
            if (
                "timed out" in str(exc).lower()
                or "timeout" in type(exc).__name__.lower()
                or "Read timed out" in str(exc)
            ):
                return False
            raise

    def result(self, container_id: str) -> dict[str, Any]:
        c: Container = self.client.containers.get(container_id)
        state = c.attrs["State"]
        return {
            "container_id": c.id,
            "exit_code": state.get("ExitCode"),
            "oom_killed": bool(state.get("OOMKilled")),
            "started_at": _ts(state.get("StartedAt")),
            "finished_at": _ts(state.get("FinishedAt")),
            "image_digest": self.ran_digest(c),
            "running": state.get("Running", False),
        }

    def follow_logs(
        self, container_id: str, stream: str, since: float | None, on_lines: Callable[[str, list[str]], None]
    ) -> threading.Thread:
        """Stream one of stdout/stderr, line by line, until the container exits."""

        def run() -> None:
            try:
                chunks: Iterator[bytes] = self.client.api.logs(
                    container_id,
                    stream=True,
                    follow=True,
                    stdout=stream == "stdout",
                    stderr=stream == "stderr",
                    since=int(since) if since else None,
                )
                partial = b""
                for chunk in chunks:
                    partial += chunk
                    *lines, partial = partial.split(b"\n")
                    if lines:
                        on_lines(stream, [ln.decode("utf-8", "replace") for ln in lines])
                if partial:
                    on_lines(stream, [partial.decode("utf-8", "replace")])
            except Exception as exc:  # logs are best effort; the result is reported regardless
                log.debug("log stream of %s ended: %s", container_id[:12], exc)

        thread = threading.Thread(target=run, name=f"logs-{stream}-{container_id[:12]}", daemon=True)
        thread.start()
        return thread


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
