"""Container hardening the agent enforces whatever the control plane sends (docs/security.md).

The server is not trusted with the host: a task reaches the device only through the rules below, decided here
as pure functions (the one I/O, resolving a host path's symlinks, is injected). A refused task becomes a failed
attempt whose error names the rule (:class:`Refusal`: a code plus the human message).

* Bind mounts of host paths only under the agent's ``allowed_host_paths`` (none by default), after symlinks are
  resolved; never a container engine's socket, nor a directory holding one. Named volumes are allowed.
* ``no-new-privileges``; every capability dropped but :data:`CAPABILITIES`; a pids limit.
* The task's ``user``; with ``refuse_root`` only a numeric non-zero uid (a user *name* is looked up in the
  image's own ``/etc/passwd``, which the task's author controls, so a name proves nothing).
* A read-only root filesystem when the task or the agent asks (a small tmpfs on ``/tmp``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from updraft.agent.runtime import Hardening, Mount
from updraft.model.spec import TaskSpec

CAPABILITIES: tuple[str, ...] = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
                                 "NET_BIND_SERVICE")
"""What a task keeps of Docker's default capabilities. Dropped from that default: MKNOD, NET_RAW (raw sockets,
spoofing), SETFCAP, SETPCAP, SYS_CHROOT, AUDIT_WRITE. Nothing is ever added beyond it."""
ENGINE_SOCKETS: tuple[str, ...] = ("/run/docker.sock", "/var/run/docker.sock", "/run/containerd/containerd.sock",
                                   "/var/run/containerd/containerd.sock")
"""Whoever holds one of these is root on the host."""
DEFAULT_PIDS_LIMIT = 1024
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MODES = {"ro": True, "rw": False}


class RefusalCode(StrEnum):
    HOST_PATH = "host_path_not_allowed"
    ENGINE_SOCKET = "engine_socket"
    VOLUME = "volume_invalid"
    ROOT = "root_refused"


@dataclass(frozen=True, slots=True)
class Refusal:
    code: RefusalCode
    message: str

    def __str__(self) -> str:
        return f"refused by the agent ({self.code}): {self.message}"


@dataclass(frozen=True, slots=True)
class Policy:
    allowed_host_paths: tuple[str, ...] = ()
    refuse_root: bool = False
    pids_limit: int = DEFAULT_PIDS_LIMIT
    read_only_rootfs: bool = False  # for every task, whatever it asks


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_mount(volume: str, policy: Policy, resolve: Callable[[str], str]) -> Mount | Refusal:
    """One ``source:target[:ro|rw]`` entry."""
    parts = volume.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        return Refusal(RefusalCode.VOLUME, f"{volume!r} is not source:/target[:ro|rw]")
    source, target, mode = parts[0], posixpath.normpath(parts[1]), parts[2] if len(parts) == 3 else "rw"
    if mode not in _MODES:
        return Refusal(RefusalCode.VOLUME, f"{volume!r}: only the modes ro and rw are allowed, not {mode!r}")
    if not source.startswith("/"):
        if not _VOLUME_NAME.match(source):
            return Refusal(RefusalCode.VOLUME, f"{volume!r}: {source!r} is neither an absolute path nor a volume name")
        return Mount(source, target, _MODES[mode], bind=False)
    real = resolve(posixpath.normpath(source))
    for sock in ENGINE_SOCKETS:
        if _within(sock, real) or _within(resolve(sock), real):
            return Refusal(RefusalCode.ENGINE_SOCKET, f"{volume!r} would expose the container engine's socket "
                           f"({sock}): never allowed")
    allowed = [resolve(posixpath.normpath(p)) for p in policy.allowed_host_paths]
    if not any(_within(real, root) for root in allowed):
        where = ", ".join(policy.allowed_host_paths) or "none are allowed on this agent"
        return Refusal(RefusalCode.HOST_PATH, f"{volume!r}: host path {real} is not under the agent's "
                       f"allowed_host_paths ({where})")
    return Mount(real, target, _MODES[mode], bind=True)


def _uid(user: str | None) -> str:
    return (user or "").partition(":")[0]


def check_user(user: str | None, policy: Policy, what: str) -> Refusal | None:
    """With ``refuse_root``: ``user`` must be a numeric uid other than 0."""
    if not policy.refuse_root:
        return None
    uid = _uid(user)
    if not uid:
        return Refusal(RefusalCode.ROOT, f"{what} runs as root (no user set) and this agent refuses root")
    if not uid.isdigit():
        return Refusal(RefusalCode.ROOT, f"{what} user {user!r} is a name; this agent refuses root and needs a "
                       "numeric uid to know it is not 0")
    if int(uid) == 0:
        return Refusal(RefusalCode.ROOT, f"{what} user {user!r} is root and this agent refuses root")
    return None


@dataclass(frozen=True, slots=True)
class Hardened:
    mounts: tuple[Mount, ...]
    hardening: Hardening


def harden(spec: TaskSpec, policy: Policy, resolve: Callable[[str], str]) -> Hardened | Refusal:
    """The container options for ``spec``, or the first rule that refuses it. The image's own user is checked
    later (:func:`check_user`), once the image is there, when the task sets none."""
    mounts = []
    for volume in spec.volumes:
        got = check_mount(volume, policy, resolve)
        if isinstance(got, Refusal):
            return got
        mounts.append(got)
    if spec.user is not None and (refused := check_user(spec.user, policy, "the task's")):
        return refused
    hardening = Hardening(
        cap_add=CAPABILITIES,
        pids_limit=policy.pids_limit,
        read_only_rootfs=policy.read_only_rootfs or spec.read_only_rootfs,
        user=spec.user,
    )
    return Hardened(tuple(mounts), hardening)
