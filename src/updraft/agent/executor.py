"""The Docker edge of the agent: run, find, stop and read containers through the Docker SDK.

Every container carries labels naming its node, task and attempt token, so a restarted agent finds its
own containers (``observed``) and carries on reporting them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container, _create_container_args

from updraft.agent.cgroup import ParentCgroup
from updraft.agent.cpu import Running, request_shares
from updraft.agent.reconcile import Observed
from updraft.errors import ImageError, Unavailable
from updraft.images import PullRate, carried_digest, check_digest, pull_image
from updraft.model.api import Assignment

LABEL_NODE, LABEL_TASK, LABEL_TOKEN = "updraft.node", "updraft.task", "updraft.token"
LABEL_CLUSTER = "updraft.cluster"
LABEL_STOP_AFTER = "updraft.stop_after"
LABEL_CPU_REQUEST = "updraft.cpu_request"  # millicores: a restarted agent rebuilds the containers' weights
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
        self._repo_digests: dict[str, list[str]] = {}
        """Image id → RepoDigests, as ``ensure_image`` last saw them: spares an image inspect per report."""

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
        try:  # one list call: its rows carry labels and state (no inspect per container)
            containers = self.client.api.containers(
                all=True, filters={"label": [f"{LABEL_NODE}={self.node}", f"{LABEL_CLUSTER}={self.cluster}"]}
            )
        except (docker.errors.DockerException, OSError) as exc:
            raise Unavailable(f"docker does not answer: {exc}") from exc
        out = []
        for c in containers:
            labels = c.get("Labels") or {}
            try:
                out.append(
                    Observed(
                        labels[LABEL_TASK],
                        int(labels[LABEL_TOKEN]),
                        str(c["Id"]),
                        c.get("State") in ("running", "created", "restarting"),
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
        repo_digests = list(image.attrs.get("RepoDigests") or [])
        problem = check_digest(ref, repo_digests)
        if problem is not None:
            raise ImageError(problem, image=ref, reason="digest_mismatch")
        if len(self._repo_digests) > 256:
            self._repo_digests.clear()
        self._repo_digests[str(image.id)] = repo_digests
        return str(image.id)

    def ran_digest(self, container: Container | dict[str, Any]) -> str | None:
        """The digest a container's image carries under the name it was started as (else its image id)."""
        attrs = container if isinstance(container, dict) else container.attrs
        ref = str(attrs.get("Config", {}).get("Image") or "")
        image_id = attrs.get("Image")
        if not ref or not image_id:
            return image_id
        try:
            repo_digests = self._repo_digests.get(image_id)
            if repo_digests is None:  # not started by this process (re-adopted): ask Docker
                repo_digests = self.client.images.get(image_id).attrs.get("RepoDigests") or []
            return carried_digest(ref, repo_digests) or image_id
        except (docker.errors.DockerException, ValueError):  # ValueError: a reference we cannot parse
            return str(image_id)

    def start(
        self,
        a: Assignment,
        extra_env: dict[str, str] | None = None,
        ensure_image: bool = True,
        cpu_shares: int | None = None,
    ) -> str:
        """Create and start the attempt's container; ``ensure_image=False`` when the caller just did;
        ``cpu_shares`` overrides the weight of its request (the agent's spare-CPU rule)."""
        spec = a.spec
        if ensure_image:
            self.ensure_image(spec.image)
        cmd = [*(spec.command or []), *(spec.args or [])] or None
        env = {**spec.env, "UPDRAFT_TASK_ID": a.task_id, "UPDRAFT_TOKEN": str(a.token), **(extra_env or {})}
        labels = {
            **spec.labels,
            LABEL_NODE: self.node,
            LABEL_CLUSTER: self.cluster,
            LABEL_TASK: a.task_id,
            LABEL_TOKEN: str(a.token),
            LABEL_CPU_REQUEST: str(spec.resources.request_cpu()),
        }
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
        if cpu_shares is not None:
            kwargs["cpu_shares"] = cpu_shares
        elif spec.resources.request_cpu():
            # As Kubernetes does: the request is the container's guaranteed share under contention.
            kwargs["cpu_shares"] = request_shares(spec.resources.request_cpu())
        if spec.resources.limits.memory:
            kwargs["mem_limit"] = spec.resources.limits.memory_bytes
            kwargs["memswap_limit"] = spec.resources.limits.memory_bytes
        if self.cpuset:
            kwargs["cpuset_cpus"] = self.cpuset
        if self.cgroup is not None:
            kwargs["cgroup_parent"] = self.cgroup.docker_parent
        if spec.volumes:
            kwargs["volumes"] = list(spec.volumes)
        name = kwargs["name"]
        api = self.client.api
        started, op = time.monotonic(), "create"
        try:
            # The low-level calls: ``containers.create`` would inspect the new container once more.
            create_args = _create_container_args({**kwargs, "image": spec.image, "version": api._version})
            container_id = str(api.create_container(**create_args)["Id"])
            self._timed("create", started)
            started, op = time.monotonic(), "start"
            api.start(container_id)
            self._timed("start", started)
        except docker.errors.APIError as exc:
            self._timed(op, started, ok=False)
            if exc.status_code == 409:  # already created by a previous life of this agent
                return str(api.inspect_container(name)["Id"])
            raise ImageError(f"container could not start: {_explain(exc)}") from exc
        return container_id

    def set_cpu_shares(self, container_id: str, shares: int) -> None:
        started = time.monotonic()
        try:
            self.client.api.update_container(container_id, cpu_shares=shares)
        except docker.errors.DockerException:
            self._timed("update", started, ok=False)
            raise
        self._timed("update", started)

    def cpu_row(self, container_id: str) -> tuple[Running, int] | None:
        """A running container's CPU facts and its current weight (for one this process did not start)."""
        try:
            attrs = self.client.api.inspect_container(container_id)
        except docker.errors.DockerException:
            return None
        state, host = attrs["State"], attrs["HostConfig"]
        if not state.get("Running"):
            return None
        labels = attrs["Config"].get("Labels") or {}
        request = int(labels.get(LABEL_CPU_REQUEST) or 0)
        row = Running(container_id, _ts(state.get("StartedAt")) or 0.0, request, bool(host.get("NanoCpus")))
        return row, int(host.get("CpuShares") or request_shares(0))  # 0: Docker's default

    def stop(self, container_id: str, grace: float = 2.0) -> None:
        started = time.monotonic()
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.stop(container_id, timeout=int(grace))
        self._timed("stop", started)

    def remove(self, container_id: str) -> None:
        started = time.monotonic()
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(container_id, force=True)
        self._timed("remove", started)

    def restart(self, container_id: str, grace: float = 1.0) -> None:
        """Restart in place (same container, same attempt): what a failing liveness probe asks for."""
        started = time.monotonic()
        try:
            self.client.api.restart(container_id, timeout=int(grace))
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
        try:
            self.client.api.wait(container_id, timeout=timeout) if timeout else self.client.api.wait(container_id)
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
        attrs: dict[str, Any] = self.client.api.inspect_container(container_id)  # one call, no model object
        state = attrs["State"]
        return {
            "container_id": attrs["Id"],
            "exit_code": state.get("ExitCode"),
            "oom_killed": bool(state.get("OOMKilled")),
            "started_at": _ts(state.get("StartedAt")),
            "finished_at": _ts(state.get("FinishedAt")),
            "image_digest": self.ran_digest(attrs),
            "running": state.get("Running", False),
        }

    def follow_logs(
        self, container_id: str, since: float | None, on_lines: Callable[[list[tuple[str, str]]], None]
    ) -> threading.Thread:
        """Stream stdout and stderr as ``(stream, line)`` batches until the container exits; returns the
        thread to join, which ends once every line has been handed over.

        One request for both streams (Docker's multiplexed frames, demultiplexed here). A reader thread takes
        the frames; this one splits them into lines and hands over whatever has accumulated meanwhile in one
        call, so a chatty task costs one outbox entry per batch, not per line, and a quiet one still streams
        line by line. Docker can end a follow stream before the container's last message (typically an
        unterminated last line), so once it ends the messages from the last one seen on are read again (one
        short request) and the new ones delivered too.
        """
        frames: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=4096)

        def read() -> None:
            last, at_last = (0, 0), 0  # the newest message's time (s, ns), and how many messages carried it
            try:
                for stream, at, data in self._log_frames(container_id, True, since):
                    last, at_last = (at, at_last + 1) if at == last else (at, 1)
                    frames.put((stream, data))
                seen_at_last = at_last  # ``since`` is inclusive: those messages come again first
                for stream, at, data in self._log_frames(container_id, False, last if last[0] else since):
                    if at < last:
                        continue
                    if at == last and seen_at_last > 0:
                        seen_at_last -= 1
                        continue
                    frames.put((stream, data))
            except Exception as exc:  # logs are best effort; the result is reported regardless
                log.debug("log stream of %s ended: %s", container_id[:12], exc)
            finally:
                frames.put(None)

        def deliver() -> None:
            partial = {"stdout": b"", "stderr": b""}
            done = False
            while not done:
                batch = [frames.get()]
                size = len(batch[0][1]) if batch[0] else 0
                with contextlib.suppress(queue.Empty):
                    while len(batch) < 2000 and size < 128 * 1024 and batch[-1] is not None:  # < body limit
                        batch.append(frames.get_nowait())
                        size += len(batch[-1][1]) if batch[-1] else 0
                lines: list[tuple[str, str]] = []
                for item in batch:
                    if item is None:
                        done = True
                        break
                    stream, data = item
                    *complete, partial[stream] = (partial[stream] + data).split(b"\n")
                    lines.extend((stream, ln.decode("utf-8", "replace")) for ln in complete)
                if done:  # an unterminated last line is still a line
                    lines.extend((st, rest.decode("utf-8", "replace")) for st, rest in partial.items() if rest)
                if lines:
                    try:
                        on_lines(lines)
                    except Exception as exc:
                        log.warning("%d log lines of %s lost: %s", len(lines), container_id[:12], exc)

        threading.Thread(target=read, name=f"logs-{container_id[:12]}", daemon=True).start()
        thread = threading.Thread(target=deliver, name=f"lines-{container_id[:12]}", daemon=True)
        thread.start()
        return thread

    def _log_frames(
        self, container_id: str, follow: bool, since: float | tuple[int, int] | None
    ) -> Iterator[tuple[str, tuple[int, int], bytes]]:
        """(stream, message time as (s, ns), payload) for each of the container's log messages."""
        api = self.client.api
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": int(follow), "timestamps": 1, "tail": "all"}
        if isinstance(since, tuple):
            params["since"] = f"{since[0]}.{since[1]:09d}"
        elif since:
            params["since"] = int(since)
        res = api._get(api._url("/containers/{0}/logs", container_id), params=params, stream=True)
        try:
            api._raise_for_status(res)
            if follow:
                api._disable_socket_timeout(api._get_raw_response_socket(res))  # a quiet task is not an error
            read = res.raw.read
            while True:
                header = _read_exact(read, 8)
                if len(header) < 8:
                    return
                kind, length = struct.unpack(">BxxxL", header)
                data = _read_exact(read, length)
                if len(data) < length:
                    return
                stamp, _, payload = data.partition(b" ")
                yield "stdout" if kind == 1 else "stderr", _ts_ns(stamp), payload  # no tty: 1 is stdout
        finally:
            res.close()


def _ts_ns(stamp: bytes) -> tuple[int, int]:
    """Docker's RFC 3339 log timestamp (``2024-01-02T03:04:05.123456789Z``) → (epoch seconds, nanoseconds)."""
    text = stamp.decode("ascii", "replace")
    main, _, frac = text.rstrip("Z").partition(".")
    try:
        seconds = int(datetime.fromisoformat(main + "+00:00").timestamp())
    except ValueError:
        return (0, 0)
    digits = "".join(itertools.takewhile(str.isdigit, frac))[:9]
    return seconds, int(digits.ljust(9, "0")) if digits else 0


def _read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    """``n`` bytes from a blocking reader, fewer only at the end of the stream."""
    buf = b""
    while len(buf) < n:
        chunk = read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
