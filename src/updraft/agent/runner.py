"""The agent process: the driver around :class:`updraft.agent.state.AgentState`.

One loop thread owns the state machine: it takes events from a queue (a :class:`~updraft.agent.events.Tick`
when nothing came for 0.1 s), hands each to the machine and carries out the instructions that come back.
Quick local ones (the durable outbox) run inline, in order; anything that blocks goes to a worker: the link
(register, heartbeat), the long poll, the sender, a Docker pool, a FIFO for CPU weights, probes, and one
thread per container waited on or streamed. Workers only do I/O and post what they saw back as events; none
of them decides anything or touches the machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx

from updraft.agent import events as ev
from updraft.agent.cgroup import ParentCgroup, host_cpu_count
from updraft.agent.cpu import usable_millis
from updraft.agent.devices import GPU, Gpu, detect_gpus, gpu_capacity, gpu_labels, parse_declared
from updraft.agent.events import Entry, EntryKind, Instruction, Outcome
from updraft.agent.hardening import Policy
from updraft.agent.load import ContainerLoad, HostLoad, LoadMeter
from updraft.agent.logstream import follow
from updraft.agent.outbox import Outbox
from updraft.agent.probes import ContainerTarget, check
from updraft.agent.runtime import ContainerRuntime, Key
from updraft.agent.state import AgentState, Config
from updraft.clock import Clock, SystemClock
from updraft.errors import ImageError, NotFound, StaleToken, TransportError, Unavailable, UpdraftError
from updraft.model import Taint, format_cpu, format_memory, parse_cpu, parse_memory
from updraft.model.api import Assignments, HeartbeatReply, NodeRegistration
from updraft.net import HttpClient, RetryPolicy, tls
from updraft.observe import tracing as otrace
from updraft.observe.metrics import AgentMetrics
from updraft.settings import AgentSettings

log = logging.getLogger("updraft.agent")
LONG_POLL = 20.0
TICK = 0.1
IMAGES_EVERY = 30  # heartbeats between two image lists (sooner after a pull)


class _Workers:
    """``n`` daemon threads taking jobs from one FIFO queue (daemon: a long poll never holds up the exit)."""

    def __init__(self, name: str, n: int = 1) -> None:
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue()
        self.threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:
                log.exception("agent worker failed")


def _transport(settings: AgentSettings) -> httpx.HTTPTransport:
    """Verifies the control plane against ``ca`` (or the system's store); ``client_cert`` for mutual TLS."""
    ca, cert, key = tls.from_env()
    return tls.transport(settings.server, settings.ca or ca, settings.client_cert or cert, settings.client_key or key)


def _enumerated(gpus: list[Gpu], extended: dict[str, int]) -> dict[str, tuple[str, ...]]:
    """The GPUs each container may be given, by id: those detected, or as many as declared (ids 0..n-1), so
    two containers are never handed the same one."""
    if gpus:
        return {GPU: tuple(g.index for g in gpus)}
    declared = extended.get(GPU, 0)
    return {GPU: tuple(str(i) for i in range(declared))} if declared else {}


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        clock: Clock | None = None,
        runtime: ContainerRuntime | None = None,
        client: HttpClient | None = None,
        tracing: otrace.Tracing | None = None,
        cgroup: ParentCgroup | None = None,
    ) -> None:
        import psutil

        self.settings = settings
        self.clock = clock or SystemClock()
        self.name = settings.name
        self.cpu_millis = parse_cpu(settings.cpus, "cpus") if settings.cpus else host_cpu_count() * 1000
        self.memory_bytes = (
            parse_memory(settings.memory, "memory") if settings.memory else psutil.virtual_memory().total
        )
        self.cgroup = cgroup or ParentCgroup(f"updraft-{self.name}")
        if runtime is None:
            from updraft.agent.docker_runtime import DockerRuntime

            runtime = DockerRuntime(self.name, cluster=settings.cluster)
        self.runtime: ContainerRuntime = runtime
        self.client = client or HttpClient(
            settings.server, token=settings.token, clock=self.clock,
            retry=RetryPolicy(max_retries=2, base=0.2, cap=2.0), transport=_transport(settings),
        )
        self.outbox = Outbox(settings.data_dir / self.name / "outbox.db")
        gpus = detect_gpus()
        self.extended = {**gpu_capacity(gpus), **parse_declared(settings.extended_resources)}
        self.labels = {**gpu_labels(gpus), **settings.labels}
        config = Config(
            node=self.name, cluster=settings.cluster, heartbeat_interval=settings.heartbeat_interval,
            cpu_millis=usable_millis(self.cpu_millis if settings.cpus else None, settings.cpuset, host_cpu_count()),
            cpu_excess=settings.cpu_excess, log_tail_bytes=settings.log_tail_bytes, cpuset=settings.cpuset,
            cgroup_parent=self.cgroup.docker_parent,
            hardening=Policy(tuple(settings.allowed_host_paths), settings.refuse_root, settings.pids_limit,
                             settings.read_only_rootfs),
            devices=_enumerated(gpus, self.extended),
            device_mode=settings.device_mode,
        )
        self.state = AgentState(config, self.clock, resolve=os.path.realpath)
        self.load: LoadMeter = HostLoad()
        self.cpu_pct = self.memory_pct = 0.0
        self.registered = threading.Event()
        """Mirrors the state machine's flag for readers on other threads (/ready, tests)."""
        self.stop_event = threading.Event()
        self._events: queue.Queue[ev.Event] = queue.Queue()
        self._loop: threading.Thread | None = None
        self._workers: list[_Workers] = []
        self._spans: dict[Key, tuple[otrace.Span, ...]] = {}  # the loop thread's only
        self._beats = 0
        self._last_rtt: float | None = None
        self._images_sent: list[str] | None = None
        self.tracing = tracing if tracing is not None else otrace.setup("agent", self.name, os.environ)
        self.metrics = AgentMetrics(self.name)
        self.metrics.bind(self)
        if hasattr(self.runtime, "on_op"):
            self.runtime.on_op = self.metrics.docker_op

    # -- what readers on other threads see --------------------------------------------------------------
    @property
    def watched(self) -> dict[Key, str]:
        """Attempts this agent follows → container id ("" while not created)."""
        return {k: a.container_id for k, a in list(self.state.attempts.items())}

    @property
    def cut_off(self) -> bool:
        return self.state.cut_off

    def readiness_problems(self) -> dict[str, str]:
        problems = {}
        if not self.runtime.ping():
            problems["docker"] = "the Docker engine does not answer"
        if not self.registered.is_set():
            problems["registration"] = "not registered with the control plane"
        return problems

    def liveness_problems(self) -> dict[str, str]:
        """Liveness: the loop and every worker thread started are still running."""
        threads = [t for w in self._workers for t in w.threads] + ([self._loop] if self._loop else [])
        return {t.name: "thread died" for t in threads if not t.is_alive()}

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        self.cgroup.ensure(self.cpu_millis if s.cpus else None, self.memory_bytes if s.memory else None, s.cpuset)
        if s.load_source == "containers":
            self.load = ContainerLoad(self.cgroup, self.cpu_millis, self.memory_bytes, self.clock)
        self._link, self._poller, self._sender = _Workers("link"), _Workers("poll"), _Workers("sender")
        self._docker, self._weights, self._probes = _Workers("docker", 8), _Workers("weights"), _Workers("probe", 4)
        self._workers = [self._link, self._poller, self._sender, self._docker, self._weights, self._probes]
        self.post(ev.Booted(tuple(self.outbox.entries()), frozenset(self.outbox.finished())))
        self._loop = threading.Thread(target=self._run, name="agent-loop", daemon=True)
        self._loop.start()

    def stop(self) -> None:
        self.stop_event.set()

    def run_forever(self) -> None:
        self.start()
        with contextlib.suppress(KeyboardInterrupt):
            while not self.stop_event.wait(1.0):
                pass
        self.stop()
        self.tracing.shutdown()  # flush the spans still batched

    def post(self, event: ev.Event) -> None:
        self._events.put(event)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                event: ev.Event = self._events.get(timeout=TICK)
            except queue.Empty:
                event = ev.Tick()
            try:
                instructions = self.state.handle(event)
            except Exception:  # a bug must not stop the loop: every later event would go unhandled
                log.exception("the state machine failed on %s", type(event).__name__)
                continue
            for instruction in instructions:
                try:
                    self._execute(instruction)
                except Exception:
                    log.exception("cannot carry out %s", type(instruction).__name__)
            (self.registered.set if self.state.registered else self.registered.clear)()

    # -- carrying out instructions ----------------------------------------------------------------------
    def _execute(self, i: Instruction) -> None:
        match i:
            case ev.Persist():
                self._persist(i.entry, i.finished)
            case ev.Ack():
                self.outbox.ack(i.seqs)
            case ev.Forget():
                self.outbox.drop_attempt(i.key)
                self._end_spans(i.key)
            case ev.PruneFinished():
                self.outbox.prune_finished(i.keep)
            case ev.Register():
                self._link.submit(self._register)
            case ev.SendHeartbeat():
                self._link.submit(lambda: self._heartbeat(i.running))
            case ev.Poll():
                self._poller.submit(lambda: self._poll(i.index))
            case ev.Deliver():
                parent = self._traceparent(i.entries[0].key)
                self._sender.submit(lambda: self._deliver(i.entries, parent))
            case ev.ListContainers():
                self._docker.submit(self._list)
            case ev.Pull():
                self._pull(i)
            case ev.Create():
                self._create(i)
            case ev.Wait():
                threading.Thread(target=self._wait, args=(i,), name=f"wait-{i.key[0]}", daemon=True).start()
            case ev.FollowLogs():
                follow(self.runtime, i.container_id, i.since, lambda lines: self.post(ev.LogsRead(i.key, tuple(lines))),
                       lambda: self.post(ev.LogsEnded(i.key, i.stream_id)))
            case ev.Stop():
                self._docker.submit(lambda: self.runtime.stop(i.container_id, i.grace))
            case ev.Restart():
                self._docker.submit(lambda: self._restart(i))
            case ev.Remove():
                self._docker.submit(lambda: self._remove(i))
            case ev.SetCpuWeight():
                self._weights.submit(lambda: self._set_weight(i))
            case ev.RunProbe():
                self._probes.submit(lambda: self._probe(i))

    def _persist(self, entry: Entry, finished: bool) -> None:
        self.outbox.put(entry, finished_at=self.clock.now() if finished else None)
        if finished:
            body = entry.body
            ok = body["state"] == "exited" and body.get("exit_code") == 0 and not body.get("oom_killed")
            result = "error" if body["state"] == "error" else "succeeded" if ok else "failed"
            self.metrics.attempt(result)
            trace = otrace.trace_id(self._traceparent(entry.key))
            log.info("attempt %s: %s", result, body.get("error") or f"exit code {body.get('exit_code')}",
                     extra={"task_id": entry.key[0], "attempt": entry.key[1], "trace_id": trace})
            self._end_spans(entry.key, body.get("error") if body["state"] == "error" else None)

    def _traceparent(self, key: Key) -> str | None:
        spans = self._spans.get(key)
        return spans[0].traceparent if spans else None

    def _end_spans(self, key: Key, failed: str | None = None) -> None:
        for span in reversed(self._spans.pop(key, ())):
            if failed:
                span.fail(failed)
            span.end()

    # -- the link ---------------------------------------------------------------------------------------
    def _register(self) -> None:
        s = self.settings
        reg = NodeRegistration(
            labels=self.labels, tags=s.tags, taints=[Taint.parse(t) for t in s.taints],
            capacity={"cpu": format_cpu(self.cpu_millis), "memory": format_memory(self.memory_bytes),  # type: ignore[arg-type]
                      **self.extended},
            cpuset=s.cpuset, images=self._images(),
        )
        try:
            self.client.put(f"/v1/nodes/{self.name}", json=reg.model_dump(mode="json"))
        except (TransportError, Unavailable) as exc:
            log.debug("registration failed: %s", exc)
            self.post(ev.RegisterAnswered(ok=False, transport=True))
            return
        except UpdraftError as exc:
            log.warning("registration refused: %s", exc)
            self.post(ev.RegisterAnswered(ok=False))
            return
        log.info("registered as %s (cpu %s, memory %s, tags %s)", self.name, format_cpu(self.cpu_millis),
                 format_memory(self.memory_bytes), s.tags)
        self.post(ev.RegisterAnswered(ok=True))

    def _images(self) -> list[str]:
        try:
            return self.runtime.images()
        except Exception:  # image locality is an optimisation, never a reason to fail
            return []

    def _heartbeat(self, running: tuple[Key, ...]) -> None:
        self.cpu_pct, self.memory_pct = self.load.sample()
        body: dict[str, Any] = {"cpu_pct": round(self.cpu_pct, 2), "memory_pct": round(self.memory_pct, 2),
                                "running": [list(k) for k in running]}
        if self._beats % IMAGES_EVERY == 0 or getattr(self.runtime, "images_changed", False):
            setattr(self.runtime, "images_changed", False)  # noqa: B010 - only DockerRuntime has it
            images = self._images()
            if images != self._images_sent:
                body["images"] = self._images_sent = images
                rate = getattr(self.runtime, "pull_rate", None)
                body["bandwidth"] = rate.value if rate is not None else None
        self._beats += 1
        if self._last_rtt is not None:
            body["rtt"] = round(self._last_rtt, 4)  # the previous beat's: shown on the dashboard's fleet page
        body["sent_at"] = self.clock.now()  # stamped last: the delay the server measures is the link's
        sent = self.clock.monotonic()
        try:
            resp = self.client.post(f"/v1/nodes/{self.name}/heartbeat", json=body, idempotent=True)
            reply = HeartbeatReply.model_validate(resp.json())
        except (TransportError, Unavailable) as exc:
            self.metrics.heartbeat(None)
            log.debug("heartbeat failed: %s", exc)
            self.post(ev.HeartbeatFailed(transport=True))
            return
        except UpdraftError as exc:
            log.warning("heartbeat refused: %s", exc)
            self.post(ev.HeartbeatFailed(transport=False, unknown=isinstance(exc, NotFound)))
            return
        self._last_rtt = self.clock.monotonic() - sent
        self.metrics.heartbeat(self._last_rtt)
        self.post(ev.HeartbeatAnswered(sent, tuple((t, k) for t, k in reply.stale), reply.known))

    def _poll(self, index: int | None) -> None:
        params: dict[str, Any] = {"wait": LONG_POLL, **({"index": index} if index is not None else {})}
        try:
            resp = self.client.get(f"/v1/nodes/{self.name}/assignments", params=params, wait=LONG_POLL)
            got = Assignments.model_validate(resp.json())
        except NotFound:
            self.post(ev.PollFailed(not_found=True, transport=False))
        except (TransportError, Unavailable) as exc:
            log.debug("assignment poll failed: %s", exc)
            self.post(ev.PollFailed(transport=True))
        except Exception:
            log.exception("assignment poll failed")
            self.post(ev.PollFailed(transport=False))
        else:
            self.post(ev.AssignmentsReceived(got.index, tuple(got.assignments)))

    def _deliver(self, entries: tuple[Entry, ...], parent: str | None) -> None:
        first = entries[0]
        (task_id, token), kind = first.key, first.kind
        body = {"lines": [ln for x in entries for ln in x.body["lines"]]} if kind is EntryKind.LOG else first.body
        path = f"/v1/tasks/{task_id}/attempts/{token}/" + {EntryKind.LOG: "logs", EntryKind.PROBE: "probes"}.get(
            kind, "status")
        span = (self.tracing.start("report", parent, {"updraft.task_id": task_id,
                                                       "updraft.state": str(first.body["state"])}, "client")
                if kind is EntryKind.STATUS else otrace.Span(parent))
        headers = {"traceparent": span.traceparent} if span.traceparent else None
        outcome = Outcome.OK
        try:
            self.client.post(path, json=body, idempotent=True, headers=headers)
        except StaleToken:
            outcome = Outcome.STALE
        except NotFound:
            outcome = Outcome.DROPPED
            log.warning("dropping %s for unknown task %s", kind, task_id)
        except (TransportError, Unavailable) as exc:
            span.fail(str(exc))
            outcome = Outcome.TRANSPORT
            log.debug("outbox delivery paused: %s", exc)
        except UpdraftError as exc:
            outcome = Outcome.DROPPED
            log.warning("dropping %s for %s: refused: %s", kind, task_id, exc)
        finally:
            span.end()
        if outcome is not Outcome.TRANSPORT:
            self.metrics.report(kind.value, outcome.value)
        self.post(ev.Delivered(tuple(x.seq for x in entries), outcome))

    # -- the container engine ---------------------------------------------------------------------------
    def _list(self) -> None:
        try:
            self.post(ev.ContainersListed(tuple(self.runtime.containers())))
        except UpdraftError as exc:
            self.post(ev.ListFailed(exc.message))

    def _pull(self, i: ev.Pull) -> None:
        attrs: dict[str, str | int | float | bool] = {"updraft.task_id": i.key[0], "updraft.token": i.key[1],
                                                      "updraft.node": self.name}
        assign = self.tracing.start("assign", i.traceparent, {**attrs, "updraft.image": i.image})
        self._spans[i.key] = (assign,)

        def pull() -> None:
            try:
                with self.tracing.span("pull", assign.traceparent, {"updraft.image": i.image}):
                    facts = self.runtime.pull(i.image)
            except Exception as exc:
                self.post(ev.StartFailed(i.key, self._why(exc)))
            else:
                self.post(ev.ImagePulled(i.key, facts.image_id, facts.user))

        self._docker.submit(pull)

    def _create(self, i: ev.Create) -> None:
        assign = self._spans.get(i.key, (otrace.Span(None),))[0]
        attrs: dict[str, str | int | float | bool] = {"updraft.task_id": i.key[0], "updraft.token": i.key[1],
                                                      "updraft.node": self.name}
        run = self.tracing.start("run", assign.traceparent, attrs)
        self._spans[i.key] = (assign, run)
        request = i.request
        if run.traceparent:  # the user's code continues the trace
            request = replace(request, env={**request.env, "TRACEPARENT": run.traceparent})
        log.info("starting %s/%s: %s", *i.key, request.image)

        def create() -> None:
            try:
                with self.tracing.span("create", run.traceparent, attrs):
                    cid = self.runtime.create(request)
                info = self.runtime.inspect(cid)
            except Exception as exc:
                self.post(ev.StartFailed(i.key, self._why(exc)))
            else:
                self.post(ev.ContainerStarted(i.key, info))

        self._docker.submit(create)

    @staticmethod
    def _why(exc: Exception) -> str:
        if isinstance(exc, ImageError | Unavailable):
            return exc.message
        log.error("starting a container failed", exc_info=exc)
        return f"cannot start: {exc}"

    def _wait(self, i: ev.Wait) -> None:
        try:
            self.runtime.wait(i.container_id)
            info = self.runtime.inspect(i.container_id)
        except (Unavailable, NotFound) as exc:
            self.post(ev.ContainerLost(i.key, exc.message))
        except Exception as exc:
            log.exception("waiting for %s failed", i.container_id[:12])
            self.post(ev.ContainerLost(i.key, str(exc)))
        else:
            self.post(ev.ContainerExited(i.key, i.generation, info))

    def _restart(self, i: ev.Restart) -> None:
        self.metrics.restarted()
        try:
            self.runtime.restart(i.container_id, 1.0)
        except Exception as exc:  # e.g. the container is gone: its exit is the attempt's end
            log.warning("cannot restart %s after: %s (%s)", i.container_id[:12], i.reason, exc)
            self.post(ev.Restarted(i.key, ok=False))
        else:
            self.post(ev.Restarted(i.key, ok=True))

    def _remove(self, i: ev.Remove) -> None:
        try:
            self.runtime.remove(i.container_id)
        except Exception as exc:
            log.warning("cannot remove %s: %s", i.container_id[:12], exc)
        self.post(ev.Removed(i.key))

    def _set_weight(self, i: ev.SetCpuWeight) -> None:
        try:
            self.runtime.set_cpu_shares(i.container_id, i.shares)
        except Exception as exc:  # gone meanwhile, or Docker away: the next change sets it again
            log.debug("cannot set the cpu weight of %s: %s", i.container_id[:12], exc)
            self.post(ev.CpuWeightFailed(i.container_id))

    def _probe(self, i: ev.RunProbe) -> None:
        ok, seen = check(i.spec, ContainerTarget(self.runtime, i.container_id))
        self.metrics.probe(i.probe, ok)
        self.post(ev.ProbeChecked(i.key, i.generation, i.probe, ok, seen))
