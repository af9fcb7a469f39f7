"""The :class:`ContainerRuntime` on Docker, through docker-py's public API only.

Every container carries labels naming its node, cluster, task and attempt token, so a restarted agent finds its
own containers (``list``) and carries on with them. Low-level ``APIClient`` calls where the high-level client
would inspect the container once more than needed; both are docker-py's documented API.
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

from updraft.agent.runtime import (
    LABEL_CLUSTER,
    LABEL_CPU_REQUEST,
    LABEL_DEVICES,
    LABEL_NODE,
    LABEL_STOP_AFTER,
    LABEL_TASK,
    LABEL_TOKEN,
    ContainerInfo,
    CreateRequest,
    ImageFacts,
    LogFrame,
    Stream,
)
from updraft.errors import ImageError, NotFound, Unavailable
from updraft.images import PullRate, carried_digest, check_digest, pull_image

log = logging.getLogger("updraft.agent.docker")
ALL_CAPS = "ALL"


def _ts(text: str | None) -> float | None:
    """Docker's RFC 3339 nanosecond timestamps → epoch seconds (None for the zero time)."""
    if not text or text.startswith("0001-"):
        return None
    main, _, frac = text.rstrip("Z").partition(".")
    try:
        base = datetime.fromisoformat(main + "+00:00").timestamp()
    except ValueError:
        return None
    digits = "".join(ch for ch in frac if ch.isdigit())[:9]
    return base + (int(digits.ljust(9, "0")) / 1e9 if digits else 0.0)


def _unavailable(exc: Exception) -> Unavailable:
    return Unavailable(f"docker does not answer: {exc}")


class DockerRuntime:
    def __init__(
        self,
        node: str,
        client: docker.DockerClient | None = None,
        cluster: str = "default",
    ) -> None:
        self.node = node
        self.cluster = cluster
        self.client = client or docker.from_env(timeout=30)
        self.pull_rate = PullRate()
        """Measured image pull rate (bytes/s), sent with the image list for the scheduler's pull-time estimate."""
        self.images_changed = False
        """Set after a pull: the next heartbeat sends the image list without waiting for its turn."""
        self.on_op: Callable[[str, float, bool], None] | None = None
        """Called with (operation, seconds, ok) after each timed Docker call: the agent's metrics hook."""
        self._repo_digests: dict[str, list[str]] = {}
        """Image id → RepoDigests, as ``pull`` last saw them: spares an image inspect per report."""

    @contextlib.contextmanager
    def _timed(self, op: str) -> Iterator[None]:
        started, ok = time.monotonic(), False
        try:
            yield
            ok = True
        finally:
            if self.on_op is not None:
                self.on_op(op, time.monotonic() - started, ok)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # any failure means Docker does not answer
            return False

    # -- finding containers ------------------------------------------------------------------------------
    def containers(self) -> list[ContainerInfo]:
        labels = [f"{LABEL_NODE}={self.node}", f"{LABEL_CLUSTER}={self.cluster}"]
        try:
            rows = self.client.api.containers(all=True, filters={"label": labels})
            return [info for row in rows if (info := self._info_or_none(str(row["Id"]))) is not None]
        except (docker.errors.DockerException, OSError) as exc:
            raise _unavailable(exc) from exc

    def _info_or_none(self, container_id: str) -> ContainerInfo | None:
        try:
            return self.inspect(container_id)
        except (NotFound, KeyError, ValueError):  # removed meanwhile, or not labelled by us
            return None

    def inspect(self, container_id: str) -> ContainerInfo:
        try:
            attrs: dict[str, Any] = self.client.api.inspect_container(container_id)
        except docker.errors.NotFound as exc:
            raise NotFound(f"no container {container_id}", container_id=container_id) from exc
        except (docker.errors.DockerException, OSError) as exc:
            raise _unavailable(exc) from exc
        state, host = attrs["State"], attrs.get("HostConfig") or {}
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        stop_after = labels.get(LABEL_STOP_AFTER)
        return ContainerInfo(
            container_id=str(attrs["Id"]),
            task_id=labels[LABEL_TASK],
            token=int(labels[LABEL_TOKEN]),
            running=bool(state.get("Running")) or bool(state.get("Restarting")),
            exit_code=state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            started_at=_ts(state.get("StartedAt")),
            finished_at=_ts(state.get("FinishedAt")),
            image_digest=self._ran_digest(attrs),
            request_millis=int(labels.get(LABEL_CPU_REQUEST) or 0),
            limited=bool(host.get("NanoCpus")),
            cpu_shares=int(host["CpuShares"]) if host.get("CpuShares") else None,
            stop_after=float(stop_after) if stop_after else None,
            devices=labels.get(LABEL_DEVICES, ""),
        )

    def _ran_digest(self, attrs: dict[str, Any]) -> str | None:
        """The digest a container's image carries under the name it was started as (else its image id)."""
        ref = str((attrs.get("Config") or {}).get("Image") or "")
        image_id = attrs.get("Image")
        if not ref or not image_id:
            return image_id
        try:
            repo_digests = self._repo_digests.get(image_id)
            if repo_digests is None:  # not pulled by this process (re-adopted): ask Docker
                repo_digests = self.client.images.get(image_id).attrs.get("RepoDigests") or []
            return carried_digest(ref, repo_digests) or image_id
        except (docker.errors.DockerException, ValueError):  # ValueError: a reference we cannot parse
            return str(image_id)

    # -- images ------------------------------------------------------------------------------------------
    def images(self) -> list[str]:
        """For image locality, compactly: the digests held (a pinned task matches on these) and the tags
        (an unpinned one matches on its reference); not the ``name@digest`` pairs, which repeat both."""
        out: set[str] = set()
        try:
            for image in self.client.images.list():
                out.update(image.tags)
                out.update(ref.partition("@")[2] for ref in image.attrs.get("RepoDigests") or [])
        except (docker.errors.DockerException, OSError) as exc:
            raise _unavailable(exc) from exc
        return sorted(out)

    def ensure_image(self, ref: str) -> str:
        return self.pull(ref).image_id

    def pull(self, ref: str) -> ImageFacts:
        try:
            image = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            with self._timed("pull"):
                pulled = pull_image(self.client, ref)
            self.pull_rate.add(pulled.bytes, pulled.seconds)
            self.images_changed = True
            image = pulled.image
        except (docker.errors.DockerException, OSError) as exc:
            raise _unavailable(exc) from exc
        repo_digests = list(image.attrs.get("RepoDigests") or [])
        problem = check_digest(ref, repo_digests)
        if problem is not None:
            raise ImageError(problem, image=ref, reason="digest_mismatch")
        if len(self._repo_digests) > 256:
            self._repo_digests.clear()
        self._repo_digests[str(image.id)] = repo_digests
        user = (image.attrs.get("Config") or {}).get("User")
        return ImageFacts(str(image.id), str(user) if user is not None else None)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def create(self, request: CreateRequest) -> str:
        api = self.client.api
        h = request.hardening
        host_config = api.create_host_config(
            binds=[f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in request.mounts] or None,
            cap_drop=[ALL_CAPS],
            cap_add=list(h.cap_add) or None,
            security_opt=["no-new-privileges:true"] if h.no_new_privileges else None,
            pids_limit=h.pids_limit,
            read_only=h.read_only_rootfs or None,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"} if h.read_only_rootfs else None,
            cpu_shares=request.cpu_shares,
            nano_cpus=request.nano_cpus,
            mem_limit=request.memory_bytes,
            memswap_limit=request.memory_bytes,
            cpuset_cpus=request.cpuset,
            cgroup_parent=request.cgroup_parent,
            device_requests=list(request.device_requests) or None,
        )
        op = "create"
        try:
            with self._timed("create"):
                created = api.create_container(
                    request.image,
                    command=request.command,
                    environment=request.env,
                    labels=request.labels,
                    working_dir=request.workdir,
                    name=request.name,
                    user=h.user or "",
                    host_config=host_config,
                    detach=True,
                )
            container_id = str(created["Id"])
            op = "start"
            with self._timed("start"):
                api.start(container_id)
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and op == "create":  # already created by a previous life of this agent
                existing = str(api.inspect_container(request.name)["Id"])
                api.start(existing)  # a no-op if it runs already
                return existing
            raise ImageError(f"container could not {op}: {exc.explanation or exc}", reason="engine_refused") from exc
        except (docker.errors.DockerException, OSError) as exc:
            raise _unavailable(exc) from exc
        return container_id

    def stop(self, container_id: str, grace: float) -> None:
        with self._timed("stop"), contextlib.suppress(docker.errors.NotFound):
            self.client.api.stop(container_id, timeout=int(grace))

    def remove(self, container_id: str) -> None:
        with self._timed("remove"), contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(container_id, force=True)

    def restart(self, container_id: str, grace: float) -> None:
        with self._timed("restart"):
            self.client.api.restart(container_id, timeout=int(grace))

    def set_cpu_shares(self, container_id: str, shares: int) -> None:
        with self._timed("update"):
            self.client.api.update_container(container_id, cpu_shares=shares)

    def wait(self, container_id: str) -> None:
        try:
            self.client.api.wait(container_id, timeout=None)
        except docker.errors.NotFound:
            return
        except (docker.errors.DockerException, OSError) as exc:
            raise _unavailable(exc) from exc

    # -- output and probes -------------------------------------------------------------------------------
    def logs(self, container_id: str, stream: Stream, follow: bool, since: float | None) -> Iterator[LogFrame]:
        """Docker's log messages of one stream, each ``<RFC 3339 time> <payload>``."""
        kwargs: dict[str, Any] = {"stdout": stream == "stdout", "stderr": stream == "stderr", "stream": True,
                                  "follow": follow, "timestamps": True}
        if since:
            kwargs["since"] = float(since)
        try:
            frames = self.client.api.logs(container_id, **kwargs)
        except docker.errors.NotFound:
            return
        except (docker.errors.DockerException, OSError) as exc:
            raise _unavailable(exc) from exc
        try:
            for frame in frames:
                stamp, _, payload = bytes(frame).partition(b" ")
                yield LogFrame(_ts(stamp.decode("ascii", "replace")) or 0.0, payload)
        finally:
            with contextlib.suppress(Exception):
                frames.close()

    def exec(self, container_id: str, command: list[str], timeout: float) -> int | None:
        api = self.client.api
        with self._timed("exec"):
            exec_id = api.exec_create(container_id, command, stdout=False, stderr=False)["Id"]
            runner = threading.Thread(target=api.exec_start, args=(exec_id,), daemon=True)
            runner.start()
            runner.join(timeout)
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
