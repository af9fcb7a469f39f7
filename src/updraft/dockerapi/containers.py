"""The containers this Docker API has created, and what each operation does to them.

A container lives here from ``create`` until ``rm``. ``start`` submits it as a task whose origin is this
node (idempotency key: the container id, so a retried start never runs it twice); from then on its state is
the task's, read from the control plane, and the normal policy decides where it runs. Kill and stop cancel
the task. The records are kept in memory: after an agent restart, ``docker ps`` no longer lists earlier
containers, though their tasks run on and ``updraft ps`` shows them (label ``updraft.docker/container``).

Blocking calls (wait, log follow) long-poll the control plane; a condition variable wakes waiters when a
container starts or is removed locally.
"""

from __future__ import annotations

import builtins
import re
import secrets
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from updraft.clock import Clock, SystemClock
from updraft.dockerapi.translate import CreatePlan, plan_create
from updraft.dockerapi.views import TERMINAL, Container, matches, state_of
from updraft.errors import Conflict, NotFound, ValidationError

LABEL_CONTAINER = "updraft.docker/container"
NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
POLL = 20.0
"""Seconds one long poll of the control plane may last."""


class ControlPlane(Protocol):
    """The control plane as this API uses it: task JSON documents in and out."""

    def submit(self, spec: dict[str, Any], key: str) -> dict[str, Any]: ...
    def task(self, task_id: str) -> dict[str, Any]: ...
    def wait(self, task_id: str, timeout: float) -> dict[str, Any]: ...
    def logs(self, task_id: str, after: int, wait: float) -> dict[str, Any]: ...
    def cancel(self, task_id: str) -> dict[str, Any]: ...
    def nodes(self) -> list[dict[str, Any]]: ...


class SdkControlPlane:
    """:class:`ControlPlane` over the SDK's client (endpoint failover, retries, typed errors)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def submit(self, spec: dict[str, Any], key: str) -> dict[str, Any]:
        return dict(self.client.submit_json(spec, idempotency_key=key))

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.client.http.get(f"/v1/tasks/{task_id}").json())

    def wait(self, task_id: str, timeout: float) -> dict[str, Any]:
        return dict(self.client.wait_json(task_id, timeout=timeout, poll=timeout))

    def logs(self, task_id: str, after: int, wait: float) -> dict[str, Any]:
        resp = self.client.http.get(f"/v1/tasks/{task_id}/logs", params={"after": after, "wait": wait}, wait=wait)
        return dict(resp.json())

    def cancel(self, task_id: str) -> dict[str, Any]:
        return dict(self.client.http.post(f"/v1/tasks/{task_id}/cancel").json())

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.client.http.get("/v1/nodes").json())


class Engine:
    def __init__(self, control: ControlPlane, origin: str, clock: Clock | None = None) -> None:
        self.control = control
        self.origin = origin
        self.clock = clock or SystemClock()
        self._containers: dict[str, Container] = {}
        self._changed = threading.Condition()

    # -- lookup -------------------------------------------------------------------------------------
    def find(self, ref: str) -> Container:
        """By full id, unique id prefix, or name (with or without the leading ``/``)."""
        with self._changed:
            if ref in self._containers:
                return self._containers[ref]
            name = ref.lstrip("/")
            for c in self._containers.values():
                if c.name == name:
                    return c
            found = [c for c in self._containers.values() if c.id.startswith(ref)] if ref else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValidationError(f"multiple IDs found with provided prefix: {ref}", field="id")
        raise NotFound(f"No such container: {ref}", id=ref)

    def all(self) -> list[Container]:
        with self._changed:
            return sorted(self._containers.values(), key=lambda c: c.created, reverse=True)

    # -- create, start ------------------------------------------------------------------------------
    def create(self, body: dict[str, Any], name: str = "", platform: str = "") -> Container:
        plan = plan_create(body, platform)
        if plan.refusals:
            raise ValidationError(plan.message, refused=[r.code for r in plan.refusals])
        cid = secrets.token_hex(32)
        if name and not NAME.match(name):
            raise ValidationError(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed',
                                  field="name")
        name = name.lstrip("/") or f"updraft_{cid[:12]}"
        with self._changed:
            for other in self._containers.values():
                if other.name == name:
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                                   f'"{other.id}". You have to remove (or rename) that container to be able to '
                                   "reuse that name.", name=name)
            c = Container(cid, name, self.clock.now(), plan)
            self._containers[cid] = c
        return c

    def start(self, ref: str) -> bool:
        """Submit the container as a task; False when it was already started (Docker answers 304)."""
        c = self.find(ref)
        with self._changed:
            if c.started is not None:
                return False
            c.started = self.clock.now()
        spec = self._spec(c.plan, c)
        try:
            task = self.control.submit(spec, key=c.id)
        except Exception as exc:
            # As Docker: the container stays created (an auto-remove one goes), and whoever waits for this start
            # (docker run's attach and wait) is told, rather than left waiting for a start that failed.
            with self._changed:
                c.started, c.start_error = None, getattr(exc, "message", str(exc))
                c.failed_starts += 1
                if c.plan.auto_remove:
                    self._drop(c)
                self._changed.notify_all()
            raise
        with self._changed:
            c.task_id, c.task, c.start_error = task["id"], task, ""
            self._changed.notify_all()
        return True

    def _spec(self, plan: CreatePlan, c: Container) -> dict[str, Any]:
        labels = {**plan.spec.get("labels", {}), LABEL_CONTAINER: c.short_id}
        return {**plan.spec, "origin": self.origin, "labels": labels}

    # -- state --------------------------------------------------------------------------------------
    def refresh(self, c: Container, task: dict[str, Any] | None = None) -> Container:
        """Bring the record up to date with its task; an auto-removed container goes once it is terminal."""
        if c.task_id is None or (c.task is not None and c.task["state"] in TERMINAL and task is None):
            return c
        task = task or self.control.task(c.task_id)
        with self._changed:
            c.task = task
            if task["state"] in TERMINAL and c.plan.auto_remove:
                self._drop(c)
        return c

    def _drop(self, c: Container) -> None:
        """Forget a container (lock held)."""
        c.removed = True
        self._containers.pop(c.id, None)
        self._changed.notify_all()

    def _await_start(self, c: Container, timeout: float | None, failed: int | None = None) -> bool:
        """Block until the container has a task, is removed, or a start fails after ``failed`` earlier failures;
        False if ``timeout`` passed first."""
        seen = c.failed_starts if failed is None else failed
        with self._changed:
            return self._changed.wait_for(
                lambda: c.task_id is not None or c.removed or c.failed_starts > seen, timeout)

    def wait(self, ref: str, condition: str = "not-running", failed: int | None = None) -> dict[str, Any]:
        """Docker's wait: ``not-running`` (returns at once for a created container), ``next-exit`` (waits for a
        start first), ``removed`` (waits until the container is gone, e.g. after an auto-remove)."""
        from updraft.dockerapi.views import wait_result

        if condition not in ("", "not-running", "next-exit", "removed"):
            raise ValidationError(f"invalid condition: {condition!r}", field="condition")
        c = self.find(ref)
        if c.task_id is None and condition in ("", "not-running") and c.started is None:
            return wait_result(c)
        failed = c.failed_starts if failed is None else failed
        while not self._await_start(c, POLL, failed):
            pass
        while c.task_id is not None:
            task = self.control.wait(c.task_id, POLL)
            if task["state"] in TERMINAL:
                self.refresh(c, task)
                break
        if condition == "removed":
            with self._changed:
                self._changed.wait_for(lambda: c.removed)
        return wait_result(c)

    # -- kill, stop, remove -------------------------------------------------------------------------
    def kill(self, ref: str, signal: str = "") -> None:
        """Cancel the task (the agent stops the container). Only KILL/TERM-like signals can be honoured."""
        if signal and signal.upper().removeprefix("SIG") not in ("KILL", "TERM", "INT", "9", "15", "2"):
            raise ValidationError(f"--signal {signal}: only KILL and TERM can be sent (the task is cancelled)",
                                  field="signal")
        c = self.refresh(self.find(ref))
        if not state_of(c).running:
            raise Conflict(f"Container {c.id} is not running", id=c.id)
        self._cancel(c)

    def _cancel(self, c: Container) -> None:
        if c.task_id is None and c.started is not None:
            self._await_start(c, POLL)
        if c.task_id is None:
            return
        task = self.control.cancel(c.task_id)
        self.refresh(c, task)

    def stop(self, ref: str) -> bool:
        """Cancel and wait for the end; False when the container was not running (Docker answers 304)."""
        c = self.refresh(self.find(ref))
        if not state_of(c).running:
            return False
        self._cancel(c)
        return True

    def remove(self, ref: str, force: bool = False) -> None:
        c = self.refresh(self.find(ref))
        if state_of(c).running:
            if not force:
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the container before "
                               "attempting removal or force remove", id=c.id)
            self._cancel(c)
        with self._changed:
            self._drop(c)

    # -- listing, logs ------------------------------------------------------------------------------
    def list(
        self, all: bool = False, filters: dict[str, builtins.list[str]] | None = None, limit: int = -1
    ) -> builtins.list[Container]:
        out = []
        for c in self.all():
            self.refresh(c)
            if c.removed:
                continue
            if not all and not state_of(c).running:
                continue
            if filters and not matches(c, filters):
                continue
            out.append(c)
        return out[:limit] if limit > 0 else out

    def log_lines(
        self, c: Container, follow: bool, after: int = 0, failed: int | None = None
    ) -> Iterator[builtins.list[dict[str, Any]]]:
        """Pages of the task's log lines; with ``follow``, until the task has ended and every line is out.

        ``failed``: the container's failed starts when the caller arrived; a start failing after that ends a
        follow that was waiting for it (default: count from now)."""
        if c.task_id is None and (not follow or not self._await_start_forever(c, failed)):
            return
        assert c.task_id is not None
        while True:
            page = self.control.logs(c.task_id, after, POLL if follow else 0.0)
            if page["lines"]:
                yield page["lines"]
            after = page["next"]
            if not page["lines"] and (page["done"] or not follow):
                return

    def _await_start_forever(self, c: Container, failed: int | None = None) -> bool:
        failed = c.failed_starts if failed is None else failed
        while not self._await_start(c, POLL, failed):
            pass
        return c.task_id is not None

    def backlog(self, c: Container) -> tuple[builtins.list[dict[str, Any]], int]:
        """Every line logged so far, and the position after the last (where following goes on)."""
        lines: builtins.list[dict[str, Any]] = []
        after = 0
        while c.task_id is not None:
            page = self.control.logs(c.task_id, after, 0.0)
            if not page["lines"]:
                break
            lines += page["lines"]
            after = page["next"]
        return lines, after

    def log_end(self, c: Container) -> int:
        """The position after the last line logged so far (``attach`` without ``logs=1`` starts there)."""
        return self.backlog(c)[1]
