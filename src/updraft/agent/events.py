"""What goes into the agent's state machine (events) and what comes out (instructions): plain, frozen data.

Events are facts the I/O side observed (an answer, an exit, a clock tick); instructions are decisions for the
I/O side to carry out. Neither holds a thread, a socket or a callback, so a test feeds events and reads
instructions. The machine is :class:`updraft.agent.state.AgentState`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from updraft.agent.runtime import ContainerInfo, CreateRequest, Key, Stream
from updraft.model.api import Assignment
from updraft.model.spec import Probe


class Outcome(StrEnum):
    """How the control plane answered one outbox delivery."""

    OK = "ok"
    STALE = "stale"  # 409: the attempt was replaced; fence it
    DROPPED = "dropped"  # unknown task or refused body: never deliverable, forget it
    TRANSPORT = "transport"  # no answer: keep it, try again later, in order


class EntryKind(StrEnum):
    STATUS = "status"
    LOG = "log"
    PROBE = "probe"


@dataclass(frozen=True, slots=True)
class Entry:
    """One durable outbox entry; ``seq`` orders delivery."""

    seq: int
    kind: EntryKind
    key: Key
    body: dict[str, Any]


# -- events ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Booted:
    """The durable outbox as the previous life of this agent left it."""

    entries: tuple[Entry, ...] = ()
    finished: frozenset[Key] = frozenset()


@dataclass(frozen=True, slots=True)
class ContainersListed:
    """The engine's list of this agent's containers (at start, and after the engine was lost)."""

    containers: tuple[ContainerInfo, ...]


@dataclass(frozen=True, slots=True)
class ListFailed:
    message: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the machine reads its injected clock)."""


@dataclass(frozen=True, slots=True)
class RegisterAnswered:
    ok: bool
    transport: bool = False  # False with ok=False: the server refused


@dataclass(frozen=True, slots=True)
class HeartbeatAnswered:
    sent_at: float  # monotonic, when it was sent: the server recorded it no earlier
    stale: tuple[Key, ...] = ()
    known: bool = True


@dataclass(frozen=True, slots=True)
class HeartbeatFailed:
    transport: bool  # no answer (the link), else refused
    unknown: bool = False  # the server does not know this node (404): register again


@dataclass(frozen=True, slots=True)
class AssignmentsReceived:
    index: int
    assignments: tuple[Assignment, ...]


@dataclass(frozen=True, slots=True)
class PollFailed:
    not_found: bool = False  # the server does not know this node: register again
    transport: bool = True


@dataclass(frozen=True, slots=True)
class ImagePulled:
    key: Key
    image_id: str
    user: str | None


@dataclass(frozen=True, slots=True)
class StartFailed:
    """Pulling or creating the container failed: the attempt ends with ``message``."""

    key: Key
    message: str


@dataclass(frozen=True, slots=True)
class ContainerStarted:
    key: Key
    info: ContainerInfo


@dataclass(frozen=True, slots=True)
class ContainerExited:
    key: Key
    generation: int
    info: ContainerInfo


@dataclass(frozen=True, slots=True)
class ContainerLost:
    """Following the container failed (the engine went away): find it again by listing."""

    key: Key
    message: str


@dataclass(frozen=True, slots=True)
class LogsRead:
    key: Key
    lines: tuple[tuple[Stream, float, str], ...]  # (stream, at, line)


@dataclass(frozen=True, slots=True)
class LogsEnded:
    key: Key
    stream_id: int


@dataclass(frozen=True, slots=True)
class Delivered:
    seqs: tuple[int, ...]
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class ProbeChecked:
    key: Key
    generation: int
    probe: str  # "liveness" | "readiness"
    ok: bool
    seen: str


@dataclass(frozen=True, slots=True)
class Restarted:
    key: Key
    ok: bool


@dataclass(frozen=True, slots=True)
class Removed:
    key: Key


@dataclass(frozen=True, slots=True)
class CpuWeightFailed:
    container_id: str


Event = (
    Booted | ContainersListed | ListFailed | Tick | RegisterAnswered | HeartbeatAnswered | HeartbeatFailed
    | AssignmentsReceived | PollFailed | ImagePulled | StartFailed | ContainerStarted | ContainerExited
    | ContainerLost | LogsRead | LogsEnded | Delivered | ProbeChecked | Restarted | Removed | CpuWeightFailed
)


# -- instructions ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ListContainers:
    pass


@dataclass(frozen=True, slots=True)
class Register:
    pass


@dataclass(frozen=True, slots=True)
class SendHeartbeat:
    running: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class Poll:
    index: int | None


@dataclass(frozen=True, slots=True)
class Pull:
    key: Key
    image: str
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class Create:
    key: Key
    request: CreateRequest


@dataclass(frozen=True, slots=True)
class Wait:
    key: Key
    container_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class FollowLogs:
    key: Key
    container_id: str
    stream_id: int
    since: float | None  # epoch seconds; None: from the start


@dataclass(frozen=True, slots=True)
class Stop:
    key: Key
    container_id: str
    grace: float
    reason: str


@dataclass(frozen=True, slots=True)
class Restart:
    key: Key
    container_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Remove:
    """Remove the container, killing it first if it still runs."""

    key: Key
    container_id: str


@dataclass(frozen=True, slots=True)
class RunProbe:
    key: Key
    container_id: str
    generation: int
    probe: str
    spec: Probe


@dataclass(frozen=True, slots=True)
class SetCpuWeight:
    container_id: str
    shares: int


@dataclass(frozen=True, slots=True)
class Persist:
    """Write ``entry`` to the durable outbox; ``finished``: the attempt's result (never start it again)."""

    entry: Entry
    finished: bool = False


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send these entries (consecutive, of one attempt and kind) to the control plane in one request."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Forget:
    """Drop everything queued for a fenced attempt."""

    key: Key


@dataclass(frozen=True, slots=True)
class PruneFinished:
    keep: frozenset[Key] = field(default_factory=frozenset)


Instruction = (
    ListContainers | Register | SendHeartbeat | Poll | Pull | Create | Wait | FollowLogs | Stop | Restart | Remove
    | RunProbe | SetCpuWeight | Persist | Deliver | Ack | Forget | PruneFinished
)
