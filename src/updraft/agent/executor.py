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
from updraft.model.api import Assignment

LABEL_NODE, LABEL_TASK, LABEL_TOKEN = "updraft.node", "updraft.task", "updraft.token"
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
    ) -> None:
        self.node = node
        self.cgroup = cgroup
        self.cpuset = cpuset
        self.client = client or docker.from_env(timeout=30)
        self.timings: dict[str, float] = {}

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # any failure means Docker does not answer
            return False

    def _timed(self, op: str, started: float) -> None:
        self.timings[op] = time.monotonic() - started

    def observed(self) -> list[Observed]:
        try:
            containers = self.client.containers.list(all=True, filters={"label": f"{LABEL_NODE}={self.node}"})
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
        """Names and digests of the images present, for image locality in the scheduler."""
        out: set[str] = set()
        for image in self.client.images.list():
            out.update(image.tags)
            for ref in image.attrs.get("RepoDigests") or []:
                out.add(ref)
                out.add(ref.partition("@")[2])
        return sorted(out)

    def ensure_image(self, ref: str) -> str:
        """Pull ``ref`` unless present; return the image id. Raises ImageError with Docker's reason."""
        try:
            return str(self.client.images.get(ref).id)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as exc:
            raise Unavailable(f"docker does not answer: {exc}") from exc
        started = time.monotonic()
        name, _, digest = ref.partition("@")
        repo, tag = (name, None) if digest else _split_tag(name)
        try:
            image = self.client.images.pull(repo, tag=digest or tag or "latest")
        except docker.errors.DockerException as exc:
            raise ImageError(f"image {ref} cannot be pulled: {_explain(exc)}", image=ref) from exc
        self._timed("pull", started)
        return str(image.id)

    def start(self, a: Assignment, extra_env: dict[str, str] | None = None) -> str:
        spec = a.spec
        self.ensure_image(spec.image)
        cmd = [*(spec.command or []), *(spec.args or [])] or None
        env = {**spec.env, "UPDRAFT_TASK_ID": a.task_id, "UPDRAFT_TOKEN": str(a.token), **(extra_env or {})}
        labels = {**spec.labels, LABEL_NODE: self.node, LABEL_TASK: a.task_id, LABEL_TOKEN: str(a.token)}
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
        started = time.monotonic()
        try:
            container = self.client.containers.create(spec.image, **kwargs)
            self._timed("create", started)
            container.start()
            self._timed("start", started)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # already created by a previous life of this agent
                return str(self.client.containers.get(kwargs["name"]).id)
            raise ImageError(f"container could not start: {_explain(exc)}") from exc
        return str(container.id)

    def stop(self, container_id: str, grace: float = 2.0) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(container_id).stop(timeout=int(grace))

    def remove(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(container_id).remove(force=True)

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
            "image_digest": c.attrs.get("Image"),
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


def _split_tag(name: str) -> tuple[str, str | None]:
    repo, sep, tag = name.rpartition(":")
    if sep and "/" not in tag:
        return repo, tag
    return name, None


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
