"""Task probes with Kubernetes semantics, run by the agent for each container that declares them.

* :class:`Verdict` — the threshold logic, pure: ``failure_threshold`` consecutive failures flip a probe to
  failing, ``success_threshold`` consecutive successes flip it back. Liveness starts passing; readiness starts
  not ready.
* :func:`check` — one check. ``http`` and ``tcp`` connect to 127.0.0.1 *inside the container's network
  namespace* (a short-lived thread ``setns``-es into ``/proc/<pid>/ns/net``), so the port need not be
  published and probe traffic never leaves loopback; without the privilege for that it falls back to the
  container's address. ``exec`` runs the command in the container.

When each check is due, and what a flipped verdict does (a failing liveness probe restarts the container), is
decided by the agent's state machine (:mod:`updraft.agent.state`); the driver runs :func:`check` in a worker.
"""

from __future__ import annotations

import ctypes
import http.client
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")
log = logging.getLogger("updraft.agent.probes")
CLONE_NEWNET = 0x40000000


class ProbeSpec(Protocol):
    """What :class:`updraft.model.spec.Probe` offers."""

    @property
    def kind(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def command(self) -> list[str] | None: ...
    @property
    def initial_delay_seconds(self) -> float: ...
    @property
    def period_seconds(self) -> float: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def failure_threshold(self) -> int: ...
    @property
    def success_threshold(self) -> int: ...


class Target(Protocol):
    """The container under probe, as the agent's runtime sees it."""

    def pid(self) -> int | None: ...
    def address(self) -> str | None: ...
    def exec(self, command: list[str], timeout: float) -> int | None:
        """Exit code, or None if it did not finish within ``timeout``."""


@dataclass
class Verdict:
    spec: ProbeSpec
    passing: bool
    successes: int = 0
    failures: int = 0

    def observe(self, ok: bool) -> bool:
        """Count one result; True if the verdict flipped."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if not self.passing and self.successes >= self.spec.success_threshold:
                self.passing = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.passing and self.failures >= self.spec.failure_threshold:
                self.passing = False
                return True
        return False


# -- one check -------------------------------------------------------------------------------------------
def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def in_netns(pid: int, fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn`` in a fresh thread that first joins the network namespace of process ``pid``.

    A network namespace is per thread, so only this throw-away thread moves; it ends right after.
    """
    box: dict[str, object] = {}

    def run() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"probe-netns-{pid}", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    if "value" not in box:
        raise TimeoutError(f"probe did not finish within {timeout:g} s")
    return box["value"]  # type: ignore[return-value]


def _http(host: str, port: int, path: str, timeout: float) -> tuple[bool, str]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "updraft-probe/1"})
        status = conn.getresponse().status
    finally:
        conn.close()
    return 200 <= status < 400, f"HTTP {status}"


def _tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    with socket.create_connection((host, port), timeout=timeout):
        return True, "connected"


def check(spec: ProbeSpec, target: Target) -> tuple[bool, str]:
    """Run one probe check; (success, what was seen)."""
    timeout = spec.timeout_seconds
    try:
        if spec.kind == "exec":
            code = target.exec(list(spec.command or []), timeout)
            if code is None:
                return False, f"timed out after {timeout:g} s"
            return code == 0, f"exit code {code}"
        port = int(spec.port or 0)

        def attempt(host: str) -> tuple[bool, str]:
            return _http(host, port, spec.path, timeout) if spec.kind == "http" else _tcp(host, port, timeout)

        pid = target.pid()
        if pid:
            try:
                return in_netns(pid, lambda: attempt("127.0.0.1"), timeout)
            except PermissionError:
                pass  # not privileged to enter the namespace: probe the container's address instead
        address = target.address()
        if not address:
            return False, "the container has no network address"
        return attempt(address)
    except Exception as exc:  # any failure to probe is a failed check (Docker errors included), never a crash
        return False, f"{type(exc).__name__}: {exc}"


# -- a container as a target ------------------------------------------------------------------------------
class _Runtime(Protocol):
    def pid(self, container_id: str) -> int | None: ...
    def address(self, container_id: str) -> str | None: ...
    def exec(self, container_id: str, command: list[str], timeout: float) -> int | None: ...


@dataclass(frozen=True)
class ContainerTarget:
    """A :class:`Target` for one container of a runtime."""

    runtime: _Runtime
    container_id: str

    def pid(self) -> int | None:
        return self.runtime.pid(self.container_id)

    def address(self) -> str | None:
        return self.runtime.address(self.container_id)

    def exec(self, command: list[str], timeout: float) -> int | None:
        return self.runtime.exec(self.container_id, command, timeout)
