"""The agent's core: one I/O-free state machine, in the manner of dask's worker state machine.

``AgentState.handle(event) -> list[Instruction]``. Every decision the agent makes lives here, once: when to
register, heartbeat and poll, and the cut-off rule (in its :class:`~updraft.agent.link.Link`); self-fencing
(``stop_after``); what to pull, start (one start
per CPU at a time, in assignment order), stop and fence; timeouts; probe schedules and liveness restarts; the
CPU weights; the outbox and its in-order delivery. The driver (:mod:`updraft.agent.runner`) only carries
instructions out and posts what it saw as events, so this class has no lock, no thread and no socket, and
its tests feed events with a fake clock.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from updraft.agent import events as ev
from updraft.agent.attempt import (
    Attempt,
    Phase,
    create_request,
    error_report,
    exit_report,
    fresh_probes,
    owner,
    running_report,
)
from updraft.agent.cpu import CpuBook, CpuExcess, Running
from updraft.agent.devices import DevicePool, parse_label
from updraft.agent.events import Entry, EntryKind, Instruction, Outcome
from updraft.agent.hardening import Policy, Refusal, check_user, harden
from updraft.agent.link import Link
from updraft.agent.outbox import next_batch
from updraft.agent.runtime import ContainerInfo, Key
from updraft.clock import Clock
from updraft.model.api import Assignment
from updraft.model.spec import TaskSpec

log = logging.getLogger("updraft.agent")
LOG_DRAIN_SECONDS = 2.0  # after an exit, how long the last log lines may take before the result goes
SELF_FENCED = "cut off for longer than stop_after"


@dataclass(frozen=True)
class Config:
    node: str
    cluster: str = "default"
    heartbeat_interval: float = 1.0
    cpu_millis: int = 1000  # what the containers can use: CPU weights and start slots follow it
    cpu_excess: CpuExcess = "oldest"
    log_tail_bytes: int = 4096
    cpuset: str | None = None
    cgroup_parent: str | None = None
    hardening: Policy = field(default_factory=Policy)
    devices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # enumerated devices, e.g. GPU indexes
    device_mode: str = "docker"  # docker: device requests; env: NVIDIA_VISIBLE_DEVICES only

    @property
    def start_slots(self) -> int:
        return max(1, self.cpu_millis // 1000)


class AgentState:
    def __init__(self, config: Config, clock: Clock, resolve: Callable[[str], str] = posixpath.normpath) -> None:
        self.config, self.clock, self.resolve = config, clock, resolve
        self.attempts: dict[Key, Attempt] = {}
        self.stale: set[Key] = set()
        self.finished: set[Key] = set()
        self.outbox: list[Entry] = []
        self.cpu = CpuBook(config.cpu_millis, config.cpu_excess)
        self.devices = DevicePool(config.devices)
        self.queue: list[Key] = []  # pulled, waiting for a start slot, in assignment order
        self.starting: set[Key] = set()
        now = clock.monotonic()
        self.link = Link(config.heartbeat_interval, now)
        self.listed = self.booted = False
        self._listing = False
        self._list_due: float | None = None
        self._deliver_at, self._backoff = now, 0.2
        self._delivering: tuple[int, ...] | None = None
        self._seq = self._order = self._stream = 0
        self._out: list[Instruction] = []

    @property
    def registered(self) -> bool:
        return self.link.registered

    @property
    def cut_off(self) -> bool:
        return self.link.cut_off

    # -- the one entry point ----------------------------------------------------------------------------
    def handle(self, event: ev.Event) -> list[Instruction]:
        out: list[Instruction] = []
        self._out = out
        self._dispatch(event)
        if self.booted:
            self._due(self.clock.monotonic())
        self._out = []
        return out

    def handle_all(self, events: Iterable[ev.Event]) -> list[Instruction]:
        return [i for e in events for i in self.handle(e)]

    def _emit(self, *instructions: Instruction) -> None:
        self._out.extend(instructions)

    def _dispatch(self, e: ev.Event) -> None:
        match e:
            case ev.Booted():
                self.outbox = sorted(e.entries, key=lambda x: x.seq)
                self._seq = max((x.seq for x in self.outbox), default=0)
                self.finished = set(e.finished)
                self.booted, self._list_due = True, self.clock.monotonic()
            case ev.Tick():
                pass
            case ev.ContainersListed():
                self._listed(e.containers)
            case ev.ListFailed():
                self._listing = False
                self._list_due = self.clock.monotonic() + 1.0
                log.warning("cannot list containers: %s", e.message)
            case ev.RegisterAnswered():
                self.link.register_answered(e.ok, self.clock.monotonic())
            case ev.HeartbeatAnswered():
                if self.link.heartbeat_answered(e.sent_at, e.known, self.clock.monotonic()):
                    self._deliver_at = min(self._deliver_at, self.clock.monotonic())  # the outbox goes at once
                for key in e.stale:
                    self.fence(key, "the control plane replaced this attempt")
            case ev.HeartbeatFailed():
                self.link.heartbeat_failed(e.unknown)
            case ev.AssignmentsReceived():
                self.link.polled(e.index)
                self._reconcile(e.assignments)
            case ev.PollFailed():
                self.link.poll_failed(e.not_found, e.transport, self.clock.monotonic())
            case ev.ImagePulled():
                self._pulled(e)
            case ev.StartFailed():
                self._start_failed(e.key, e.message)
            case ev.ContainerStarted():
                self._started(e.key, e.info)
            case ev.ContainerExited():
                a = self.attempts.get(e.key)
                if a is not None and a.phase is Phase.RUNNING and e.generation == a.generation and not a.restarting:
                    self._exited(a, e.info)
            case ev.ContainerLost():
                a = self.attempts.get(e.key)
                if a is not None and a.phase is Phase.RUNNING:
                    log.warning("lost the engine while following %s/%s: %s", *e.key, e.message)
                    a.phase = Phase.LOST
                    self._list_due = self._list_due or self.clock.monotonic() + 1.0
            case ev.LogsRead():
                a = self.attempts.get(e.key)
                if a is not None and not a.fenced:
                    a.tail.extend(line for _, _, line in e.lines)
                    lines = [{"stream": st, "at": at, "data": line} for st, at, line in e.lines]
                    self._persist(EntryKind.LOG, e.key, {"lines": lines})
            case ev.LogsEnded():
                a = self.attempts.get(e.key)
                if a is not None:
                    a.streams.discard(e.stream_id)
                    if a.phase is Phase.EXITED and not a.streams:
                        self._finalize(a)
            case ev.Delivered():
                self._delivered(e)
            case ev.ProbeChecked():
                self._probe_checked(e)
            case ev.Restarted():
                self._restarted(e)
            case ev.Removed():
                a = self.attempts.get(e.key)
                if a is not None and a.phase is Phase.DONE:
                    del self.attempts[e.key]
            case ev.CpuWeightFailed():
                self.cpu.failed(e.container_id)

    # -- timers: everything that is due now -------------------------------------------------------------
    def _due(self, now: float) -> None:
        if self._list_due is not None and now >= self._list_due and not self._listing:
            self._listing, self._list_due = True, None
            self._emit(ev.ListContainers())
        # Never poll before the engine's containers are known: a restarted agent adopts before it starts anything.
        self._emit(*self.link.due(now, self.listed, self._running_keys))
        silent = self.link.silent(now)
        if self._delivering is None and self.outbox and now >= self._deliver_at:
            batch = next_batch(self.outbox)
            self._delivering = tuple(x.seq for x in batch)
            self._emit(ev.Deliver(batch))
        for a in list(self.attempts.values()):
            if a.phase is Phase.RUNNING:
                self._running_due(a, now, silent)
            elif a.phase is Phase.EXITED and a.logs_deadline is not None and now >= a.logs_deadline:
                self._finalize(a)

    def _running_due(self, a: Attempt, now: float, silent: float) -> None:
        if a.stopping is None and a.deadline is not None and now >= a.deadline:
            a.timed_out = True
            self._stop(a, 1.0, "timed out")
        if a.stop_after is not None and self.cut_off and silent >= a.stop_after and a.stopping != SELF_FENCED:
            log.warning("self-fencing %s/%s: cut off for %.1f s ≥ stop_after %g s", *a.key, silent, a.stop_after)
            self._stop(a, 0.0, SELF_FENCED, force=True)  # its exit is still reported: the server decides
        if a.restarting or a.stopping is not None:
            return
        for name, p in a.probes.items():
            if not p.in_flight and now >= p.due:
                p.in_flight = True
                self._emit(ev.RunProbe(a.key, a.container_id, a.generation, name, p.spec))

    def _running_keys(self) -> tuple[Key, ...]:
        return tuple(k for k, a in self.attempts.items() if a.phase is not Phase.DONE and not a.fenced)

    # -- fencing ---------------------------------------------------------------------------------------
    def fence(self, key: Key, reason: str) -> None:
        """Stop a stale copy at once and forget what it queued: the control plane will refuse it anyway."""
        log.warning("fencing %s token %s: %s", *key, reason)
        self.stale.add(key)
        self.outbox = [x for x in self.outbox if x.key != key]
        self._emit(ev.Forget(key))
        a = self.attempts.get(key)
        if a is None:
            return
        a.fenced = True
        if a.phase in (Phase.PULLING, Phase.QUEUED):
            self._drop(a)
        elif a.phase is Phase.STARTING:
            a.unwanted = True
        elif a.phase is Phase.RUNNING:
            self._stop(a, 0.0, reason, force=True)

    # -- assignments ------------------------------------------------------------------------------------
    def _reconcile(self, assignments: Iterable[Assignment]) -> None:
        """Make the containers match the assignments: start what is new, stop what is no longer assigned
        (cancelled, drained, drifted or superseded: fencing falls out of it), adopt what a restart found."""
        want = {(x.task_id, x.token): x for x in assignments if (x.task_id, x.token) not in self.stale}
        for key, a in list(self.attempts.items()):
            if key in want:
                if a.assignment is None:
                    self._attach(a, want[key])
            elif a.phase in (Phase.PULLING, Phase.QUEUED):
                self._drop(a)
            elif a.phase is Phase.STARTING:
                a.unwanted = True
            elif a.phase is Phase.RUNNING and a.stopping is None:
                self._stop(a, 1.0, "no longer assigned to this node")
        for key, assignment in want.items():
            if key not in self.attempts and key not in self.finished:
                self._admit(assignment)
        if self.finished - want.keys():
            self.finished &= want.keys()
            self._emit(ev.PruneFinished(frozenset(want)))

    def _admit(self, assignment: Assignment) -> None:
        key = (assignment.task_id, assignment.token)
        self._order += 1
        a = self.attempts[key] = Attempt(key, self._order, Phase.PULLING, assignment)
        hardened = harden(assignment.spec, self.config.hardening, self.resolve)
        if isinstance(hardened, Refusal):
            log.warning("%s/%s %s", *key, hardened)
            self._fail(a, str(hardened), str(hardened.code))
            return
        a.hardened = hardened
        self._emit(ev.Pull(key, assignment.spec.image, assignment.traceparent))

    def _attach(self, a: Attempt, assignment: Assignment) -> None:
        """An adopted container's assignment arrived: its probes, timeout and stop_after apply again."""
        a.assignment = assignment
        spec, now = assignment.spec, self.clock.monotonic()
        if spec.on_disconnect == "stop":
            a.stop_after = spec.stop_after
        if a.phase is Phase.RUNNING:
            a.probes = fresh_probes(spec, now)
            if spec.timeout is not None and a.info is not None and a.info.started_at is not None:
                a.deadline = now + max(0.0, a.info.started_at + spec.timeout - self.clock.now())

    def _drop(self, a: Attempt) -> None:
        if a.key in self.queue:
            self.queue.remove(a.key)
        del self.attempts[a.key]

    def _fail(self, a: Attempt, message: str, code: str | None = None) -> None:
        """The attempt ends without a container result (refused, image or engine error)."""
        self._persist(EntryKind.STATUS, a.key, error_report(message, code), finished=True)
        self._drop(a)
        self._release(a)

    def _release(self, a: Attempt) -> None:
        self.devices.release(owner(a.key))
        self._start_next()  # a queued attempt may have waited for these devices

    # -- starting ---------------------------------------------------------------------------------------
    def _pulled(self, e: ev.ImagePulled) -> None:
        a = self.attempts.get(e.key)
        if a is None or a.phase is not Phase.PULLING or a.spec is None:
            return
        if a.spec.user is None and (refused := check_user(e.user, self.config.hardening, "the image's")):
            log.warning("%s/%s %s", *a.key, refused)
            self._fail(a, str(refused), str(refused.code))
            return
        a.phase = Phase.QUEUED
        self.queue.append(a.key)
        self.queue.sort(key=lambda k: self.attempts[k].order)
        self._start_next()

    def _start_next(self) -> None:
        """Start queued attempts in assignment order while a start slot is free; one whose devices are all taken
        waits for a release without holding up the others."""
        waiting = 0
        while waiting < len(self.queue) and len(self.starting) < self.config.start_slots:
            a = self.attempts[self.queue[waiting]]
            spec = a.spec
            assert spec is not None and a.hardened is not None
            devices = self._devices(a, spec)
            if devices is None:
                waiting += 1
                continue
            self.queue.pop(waiting)
            a.phase = Phase.STARTING
            self.starting.add(a.key)
            row = Running(owner(a.key), self.clock.now(), spec.resources.request_cpu(), bool(spec.resources.limits.cpu))
            a.created_shares = self.cpu.weight_if_started(row)
            c = self.config
            request = create_request(a, c.node, c.cluster, a.created_shares, c.cpuset, c.cgroup_parent, devices,
                                     c.device_mode)
            self._emit(ev.Create(a.key, request))

    def _devices(self, a: Attempt, spec: TaskSpec) -> dict[str, list[str]] | None:
        """The devices the attempt gets ({} for none), None while they are not all free. Resources the agent did
        not enumerate are handed over by count."""
        enumerated = {k: n for k, n in spec.resources.request_extended().items() if k in self.config.devices}
        if not enumerated:
            return {}
        return self.devices.take(owner(a.key), spec)

    def _start_failed(self, key: Key, message: str) -> None:
        self.starting.discard(key)
        a = self.attempts.get(key)
        if a is not None and a.phase in (Phase.PULLING, Phase.STARTING):
            if a.fenced:
                self._drop(a)
            else:
                log.warning("%s/%s cannot start: %s", *key, message)
                self._fail(a, message)
        self._start_next()

    def _started(self, key: Key, info: ContainerInfo) -> None:
        self.starting.discard(key)
        a = self.attempts.get(key)
        if a is None:
            return
        spec = a.spec
        a.phase, a.container_id, a.info = Phase.RUNNING, info.container_id, info
        now = self.clock.monotonic()
        if spec is not None:
            a.deadline = now + spec.timeout if spec.timeout is not None else None
            a.stop_after = spec.stop_after if spec.on_disconnect == "stop" else None
            a.probes = fresh_probes(spec, now)
        self._follow(a, info, since=None, applied=a.created_shares)
        if a.fenced or a.unwanted:
            self._stop(a, 0.0 if a.fenced else 1.0, "no longer assigned to this node", force=True)
        self._start_next()

    def _follow(self, a: Attempt, info: ContainerInfo, since: float | None, applied: int | None) -> None:
        """A running container: its weight joins the others', its exit is awaited, its output streamed."""
        limited = info.limited or bool(a.spec is not None and a.spec.resources.limits.cpu)
        request = info.request_millis or (a.spec.resources.request_cpu() if a.spec is not None else 0)
        row = Running(info.container_id, info.started_at or self.clock.now(), request, limited)
        self._weights(self.cpu.started(row, applied))
        self._emit(ev.Wait(a.key, a.container_id, a.generation))
        self._logs(a, since)
        self._persist(EntryKind.STATUS, a.key, running_report(info))

    def _logs(self, a: Attempt, since: float | None) -> None:
        self._stream += 1
        a.streams.add(self._stream)
        self._emit(ev.FollowLogs(a.key, a.container_id, self._stream, since))

    def _weights(self, updates: list[tuple[str, int]]) -> None:
        self._emit(*(ev.SetCpuWeight(cid, shares) for cid, shares in updates))

    def _stop(self, a: Attempt, grace: float, reason: str, force: bool = False) -> None:
        if a.stopping is None or force:
            a.stopping = reason
            log.info("stopping %s/%s: %s", *a.key, reason)
            self._emit(ev.Stop(a.key, a.container_id, grace, reason))

    # -- ending -----------------------------------------------------------------------------------------
    def _exited(self, a: Attempt, info: ContainerInfo) -> None:
        a.phase, a.info = Phase.EXITED, info
        self._weights(self.cpu.ended(a.container_id))  # its spare CPU passes on now, not after the report
        if a.streams:
            a.logs_deadline = self.clock.monotonic() + LOG_DRAIN_SECONDS
        else:
            self._finalize(a)

    def _finalize(self, a: Attempt) -> None:
        a.phase = Phase.DONE
        self._release(a)
        if not a.fenced and a.info is not None:
            self._persist(EntryKind.STATUS, a.key, exit_report(a, a.info, self.config.log_tail_bytes), finished=True)
        self._emit(ev.Remove(a.key, a.container_id))

    # -- after a restart of the agent or of the engine --------------------------------------------------
    def _listed(self, containers: Iterable[ContainerInfo]) -> None:
        self._listing, self.listed = False, True
        seen = set()
        for c in containers:
            seen.add(c.key)
            a = self.attempts.get(c.key)
            if a is None:
                if c.key in self.stale or (c.key in self.finished and not c.running):
                    self._emit(ev.Remove(c.key, c.container_id))  # fenced, or its result already queued
                else:
                    self._adopt(c)
            elif a.phase is Phase.LOST:
                self._resume(a, c)
        for a in [a for a in self.attempts.values() if a.phase is Phase.LOST and a.key not in seen]:
            self._weights(self.cpu.ended(a.container_id))
            self._fail(a, "the container disappeared while the container engine was away")

    def _adopt(self, c: ContainerInfo) -> None:
        """Follow a container a previous life of this agent left (same container, same attempt)."""
        self._order += 1
        a = self.attempts[c.key] = Attempt(c.key, self._order, Phase.RUNNING, container_id=c.container_id,
                                           info=c, adopted=True, stop_after=c.stop_after)
        if c.running:
            log.info("re-adopted %s/%s (container %s)", *c.key, c.container_id[:12])
            self.devices.adopt(owner(c.key), parse_label(c.devices))
            self._follow(a, c, since=self.clock.now(), applied=c.cpu_shares)
        else:
            self._finalize(a)

    def _resume(self, a: Attempt, c: ContainerInfo) -> None:
        a.info = c
        if c.running:
            a.phase = Phase.RUNNING
            a.generation += 1
            self._emit(ev.Wait(a.key, a.container_id, a.generation))
            self._logs(a, self.clock.now())
        else:
            a.phase = Phase.RUNNING  # so that the exit is taken as the attempt's end
            self._exited(a, c)

    # -- probes -----------------------------------------------------------------------------------------
    def _probe_checked(self, e: ev.ProbeChecked) -> None:
        a = self.attempts.get(e.key)
        if a is None or e.generation != a.generation or a.phase is not Phase.RUNNING or a.restarting:
            return
        p = a.probes.get(e.probe)
        if p is None:
            return
        p.in_flight, p.due = False, self.clock.monotonic() + p.spec.period_seconds
        if not p.verdict.observe(e.ok):
            return
        if e.probe == "readiness":
            message = f"readiness probe {'passed' if e.ok else 'failed'}: {e.seen}"
            self._persist(EntryKind.PROBE, a.key, {"ready": p.verdict.passing, "restarts": a.restarts,
                                                   "message": message})
            return
        n = p.spec.failure_threshold
        why = f"liveness probe failed {n} time{'s' if n > 1 else ''}: {e.seen}"
        a.restarting, a.generation, a.restarts = True, a.generation + 1, a.restarts + 1
        log.warning("%s/%s: restarting: %s", *a.key, why)
        self._emit(ev.Restart(a.key, a.container_id, why))
        ready = False if "readiness" in a.probes else None
        self._persist(EntryKind.PROBE, a.key, {"ready": ready, "restarts": a.restarts, "message": f"restarted: {why}"})

    def _restarted(self, e: ev.Restarted) -> None:
        a = self.attempts.get(e.key)
        if a is None or not a.restarting:
            return
        a.restarting = False
        a.probes = fresh_probes(a.spec, self.clock.monotonic()) if e.ok else {}  # cannot restart: give up probing
        self._emit(ev.Wait(a.key, a.container_id, a.generation))
        if e.ok:
            self._logs(a, self.clock.now())

    # -- the outbox -------------------------------------------------------------------------------------
    def _persist(self, kind: EntryKind, key: Key, body: dict[str, object], finished: bool = False) -> None:
        self._seq += 1
        entry = Entry(self._seq, kind, key, body)
        self.outbox.append(entry)
        if finished:
            self.finished.add(key)
        self._emit(ev.Persist(entry, finished))

    def _delivered(self, e: ev.Delivered) -> None:
        self._delivering = None
        now = self.clock.monotonic()
        if e.outcome is Outcome.TRANSPORT:
            self._deliver_at = now + self._backoff
            self._backoff = min(self._backoff * 2, 5.0)
            return
        self._backoff = 0.2
        done = set(e.seqs)
        first = next((x for x in self.outbox if x.seq in done), None)
        self.outbox = [x for x in self.outbox if x.seq not in done]
        if e.outcome is Outcome.STALE:
            if first is not None:
                self.fence(first.key, "the control plane answered 409: stale token")
            return
        self._emit(ev.Ack(e.seqs))
