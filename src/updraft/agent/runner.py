"""The agent process: register, heartbeat, follow assignments, run containers, deliver the outbox.

Threads, each with one job: ``heartbeat`` (load + fencing answers), ``assignments`` (long-poll, then
reconcile), ``sender`` (drains the durable outbox in order), one ``watch`` per attempt (reports running,
streams logs, waits, reports the result). The decisions live in :mod:`updraft.agent.reconcile`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import threading
from typing import Any

from updraft.agent.cgroup import ParentCgroup, host_cpu_count
from updraft.agent.cpu import CpuWeights, Running, usable_millis
from updraft.agent.executor import DockerExecutor
from updraft.agent.load import ContainerLoad, HostLoad, LoadMeter
from updraft.agent.outbox import Outbox
from updraft.agent.reconcile import Key, Observed, Start, Stop, Watch, reconcile
from updraft.agent.sender import fence_watch_loop, sender_loop
from updraft.clock import Clock, SystemClock
from updraft.errors import ImageError, NotFound, TransportError, Unavailable, UpdraftError
from updraft.model import Taint, format_cpu, format_memory, parse_cpu, parse_memory
from updraft.model.api import Assignment, Assignments, HeartbeatReply, NodeRegistration
from updraft.net import HttpClient, RetryPolicy
from updraft.observe import tracing as otrace
from updraft.observe.logs import log_context
from updraft.observe.metrics import AgentMetrics
from updraft.observe.probes import ContainerTarget, ProbeLoop, RestartGate
from updraft.sdk.client import plain_http_transport
from updraft.settings import AgentSettings

log = logging.getLogger("updraft.agent")
LONG_POLL = 20.0


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        clock: Clock | None = None,
        executor: DockerExecutor | None = None,
        client: HttpClient | None = None,
        tracing: otrace.Tracing | None = None,
    ) -> None:
        import psutil

        self.settings = settings
        self.clock = clock or SystemClock()
        self.name = settings.name
        self.cpu_millis = parse_cpu(settings.cpus, "cpus") if settings.cpus else host_cpu_count() * 1000
        self.memory_bytes = (
            parse_memory(settings.memory, "memory") if settings.memory else psutil.virtual_memory().total
        )
        self.cgroup = ParentCgroup(f"updraft-{self.name}")
        self.executor = executor or DockerExecutor(
            self.name, self.cgroup, cpuset=settings.cpuset, cluster=settings.cluster
        )
        self.client = client or HttpClient(
            settings.server,
            token=settings.token,
            clock=self.clock,
            retry=RetryPolicy(max_retries=2, base=0.2, cap=2.0),
            transport=plain_http_transport(settings.server),  # no CA bundle loaded for plain http
        )
        self.outbox = Outbox(settings.data_dir / self.name / "outbox.db")
        self.cpu = CpuWeights(  # who gets the CPU nobody requested (docs: --cpu-excess)
            usable_millis(self.cpu_millis if settings.cpus else None, settings.cpuset, host_cpu_count()),
            settings.cpu_excess,
            self.executor.set_cpu_shares,
        )
        self.load: LoadMeter = HostLoad()
        self.stop_event = threading.Event()
        self.lock = threading.RLock()
        self.watched: dict[Key, str] = {}  # attempt → container id, followed by this process
        self.stale: set[Key] = set()
        self.last_contact = self.clock.monotonic()
        self.cut_off = False
        self.registered = threading.Event()
        self.cpu_pct = self.memory_pct = 0.0
        self._images_sent: list[str] | None = None
        self._threads: list[threading.Thread] = []
        # Observability: OTEL_* decide whether to trace (off: a no-op); metrics are read at scrape time.
        self.tracing = tracing if tracing is not None else otrace.setup("agent", self.name, os.environ)
        self.metrics = AgentMetrics(self.name)
        self.metrics.bind(self)
        self.executor.on_op = self.metrics.docker_op
        self.traces: dict[Key, str] = {}  # attempt → the trace context its assignment carried
        self.gates: dict[Key, RestartGate] = {}  # attempt → its follower's restart gate
        self.probing: set[Key] = set()
        # One container start per cpu at a time, in about the order assigned: the runtime's work is CPU-bound,
        # so starting more at once only time-slices it and every start, the first included, ends later.
        self.starting = threading.BoundedSemaphore(max(1, self.cpu.capacity_millis // 1000))

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.cgroup.ensure(
            self.cpu_millis if self.settings.cpus else None,
            self.memory_bytes if self.settings.memory else None,
            self.settings.cpuset,
        )
        if self.settings.load_source == "containers":
            self.load = ContainerLoad(self.cgroup, self.cpu_millis, self.memory_bytes, self.clock)
        self.adopt()
        for name, target in (
            ("heartbeat", self._heartbeat_loop),
            ("assignments", self._assignment_loop),
            ("sender", lambda: sender_loop(self)),
            ("fence-watch", lambda: fence_watch_loop(self)),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()
        self.outbox.changed.set()

    def run_forever(self) -> None:
        self.start()
        with contextlib.suppress(KeyboardInterrupt):
            while not self.stop_event.wait(1.0):
                pass
        self.stop()
        self.tracing.shutdown()  # flush the spans still batched

    def readiness_problems(self) -> dict[str, str]:
        problems = {}
        if not self.executor.ping():
            problems["docker"] = "the Docker engine does not answer"
        if not self.registered.is_set():
            problems["registration"] = "not registered with the control plane"
        return problems

    def liveness_problems(self) -> dict[str, str]:
        """Liveness: every loop thread started is still running."""
        return {t.name: "thread died" for t in self._threads if not t.is_alive()}

    def adopt(self) -> None:
        """Follow the containers a previous life of this agent left running (found by label)."""
        try:
            observed = self.executor.observed()
        except Unavailable as exc:
            log.warning("cannot list containers: %s", exc)
            return
        for obs in observed:
            self._watch(obs)

    # -- registration and heartbeat -----------------------------------------------------------------
    def register(self) -> None:
        reg = NodeRegistration(
            labels=self.settings.labels,
            tags=self.settings.tags,
            taints=[Taint.parse(t) for t in self.settings.taints],
            capacity={"cpu": format_cpu(self.cpu_millis), "memory": format_memory(self.memory_bytes)},  # type: ignore[arg-type]
            cpuset=self.settings.cpuset,
            images=self._images(),
        )
        self.client.put(f"/v1/nodes/{self.name}", json=reg.model_dump(mode="json"))
        self.registered.set()
        cpu, memory = format_cpu(self.cpu_millis), format_memory(self.memory_bytes)
        log.info("registered as %s (cpu %s, memory %s, tags %s)", self.name, cpu, memory, self.settings.tags)

    def _images(self) -> list[str]:
        try:
            return self.executor.images()
        except Exception:  # image locality is an optimisation, never a reason to fail
            return []

    def contact(self, ok: bool, sent_at: float | None = None) -> None:
        """Track the link. Only a delivered heartbeat moves ``last_contact``, and to the time it was *sent*:
        the server recorded it no earlier, so the agent's self-fencing clock never runs behind the server's."""
        now = self.clock.monotonic()
        if ok:
            if self.cut_off:
                log.info("link to the control plane is back after %.1f s", now - self.last_contact)
                self.cut_off = False
                self.outbox.changed.set()
            if sent_at is not None:
                self.last_contact = max(self.last_contact, sent_at)
        elif not self.cut_off and now - self.last_contact > 2 * self.settings.heartbeat_interval:
            self.cut_off = True
            log.warning("cut off from the control plane; running on (edge autonomy), results go to the outbox")

    def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        beats = 0
        while not self.stop_event.is_set():
            started = self.clock.monotonic()
            try:
                if not self.registered.is_set():
                    self.register()
                self.heartbeat(send_images=beats % 30 == 0)
                self.contact(True, sent_at=started)
            except (TransportError, Unavailable) as exc:
                self.contact(False)
                self.metrics.heartbeat(None)
                log.debug("heartbeat failed: %s", exc)
            except UpdraftError as exc:
                log.warning("heartbeat refused: %s", exc)
            beats += 1
            self.stop_event.wait(max(0.0, interval - (self.clock.monotonic() - started)))

    def heartbeat(self, send_images: bool = False) -> HeartbeatReply:
        self.cpu_pct, self.memory_pct = self.load.sample()
        with self.lock:
            running = [[t, tok] for (t, tok) in self.watched]
        body: dict[str, Any] = {
            "cpu_pct": round(self.cpu_pct, 2),
            "memory_pct": round(self.memory_pct, 2),
            "running": running,
        }
        if send_images or getattr(self.executor, "images_changed", False):  # a pull changed them: say so now
            self.executor.images_changed = False
            images = self._images()
            if images != self._images_sent:
                body["images"] = self._images_sent = images
                body["bandwidth"] = self.executor.pull_rate.value
        # Stamped last, so the delay the server measures is the link's, not the time spent listing images.
        body["sent_at"] = self.clock.now()
        sent = self.clock.monotonic()
        resp = self.client.post(f"/v1/nodes/{self.name}/heartbeat", json=body, idempotent=True)
        self.metrics.heartbeat(self.clock.monotonic() - sent)
        reply = HeartbeatReply.model_validate(resp.json())
        if not reply.known:
            self.registered.clear()
        for task_id, token in reply.stale:
            self.fence(task_id, token, "the control plane replaced this attempt")
        return reply

    def fence(self, task_id: str, token: int, reason: str) -> None:
        """Stop a stale copy at once and forget what it queued."""
        with self.lock:
            self.stale.add((task_id, token))
            cid = self.watched.get((task_id, token))
        log.warning("fencing %s token %s: %s", task_id, token, reason)
        self.outbox.drop_attempt(task_id, token)
        self.traces.pop((task_id, token), None)
        if cid is not None:
            self.executor.stop(cid, grace=0)
        else:
            for obs in self.executor.observed():
                if (obs.task_id, obs.token) == (task_id, token):
                    self.executor.stop(obs.container_id, grace=0)

    # -- assignments --------------------------------------------------------------------------------
    def _assignment_loop(self) -> None:
        index: int | None = None
        while not self.stop_event.is_set():
            if not self.registered.wait(0.5):
                continue
            try:
                resp = self.client.get(
                    f"/v1/nodes/{self.name}/assignments",
                    params={"wait": LONG_POLL, **({"index": index} if index is not None else {})},
                    wait=LONG_POLL,
                )
                got = Assignments.model_validate(resp.json())
                index = got.index
                self.contact(True)
                self.apply(got.assignments)
            except NotFound:
                self.registered.clear()
                index = None
            except (TransportError, Unavailable) as exc:
                self.contact(False)
                index = None
                log.debug("assignment poll failed: %s", exc)
                self.stop_event.wait(0.5)
            except Exception:
                log.exception("reconcile failed")
                self.stop_event.wait(1.0)

    def apply(self, desired: list[Assignment]) -> None:
        with self.lock:
            # Followed before the listing: one that ended since may have removed its container after Docker
            # listed it; a second follower for that stale row would only find it gone.
            following = set(self.watched)
        observed = self.executor.observed()
        finished = self.outbox.finished()
        with self.lock:
            actions = reconcile(desired, observed, finished, following | set(self.watched), self.stale)
            self.traces.update({(a.task_id, a.token): a.traceparent for a in desired if a.traceparent})
        for action in actions:
            if isinstance(action, Stop):
                log.info("stopping %s token %s: %s", action.task_id, action.token, action.reason)
                self.executor.stop(action.container_id, grace=1)
            elif isinstance(action, Watch):
                self._watch(action.observed)
            elif isinstance(action, Start):
                self._start(action.assignment)
        for a in desired:  # containers re-adopted after a restart get their probes back here
            cid = self.watched.get((a.task_id, a.token))
            if cid:
                self._probe(a, cid)
        self.outbox.prune_finished({(a.task_id, a.token) for a in desired})

    def _start(self, a: Assignment) -> None:
        key = (a.task_id, a.token)
        with self.lock:
            if key in self.watched:
                return
            self.watched[key] = ""
        threading.Thread(target=self._run_attempt, args=(a,), name=f"run-{a.task_id}", daemon=True).start()

    def _watch(self, obs: Observed) -> None:
        key = (obs.task_id, obs.token)
        with self.lock:
            if key in self.watched:
                return
            self.watched[key] = obs.container_id
        threading.Thread(
            target=self._follow,
            args=(obs.task_id, obs.token, obs.container_id, None, True),
            name=f"watch-{obs.task_id}",
            daemon=True,
        ).start()

    def _run_attempt(self, a: Assignment) -> None:
        attrs: dict[str, str | int | float | bool] = {
            "updraft.task_id": a.task_id,
            "updraft.token": a.token,
            "updraft.node": self.name,
        }
        assign = self.tracing.start("assign", a.traceparent, {**attrs, "updraft.image": a.spec.image})
        run = otrace.Span(None)
        request, limited = a.spec.resources.request_cpu(), bool(a.spec.resources.limits.cpu)
        with log_context(task_id=a.task_id, attempt=a.token, trace_id=otrace.trace_id(assign.traceparent)):
            log.info("starting %s", a.spec.image)
            try:
                with self.tracing.span("pull", assign.traceparent, {"updraft.image": a.spec.image}):
                    self.executor.ensure_image(a.spec.image)
                run = self.tracing.start("run", assign.traceparent, attrs)
                env = {"TRACEPARENT": run.traceparent} if run.traceparent else None  # the user's code continues
                with self.starting, self.tracing.span("create", run.traceparent, attrs):
                    row = Running(f"{a.task_id}/{a.token}", self.clock.now(), request, limited)
                    shares = self.cpu.weight_if_started(row)
                    cid = self.executor.start(a, env, ensure_image=False, cpu_shares=shares)  # image ensured above
            except Exception as exc:  # report it as the attempt's error rather than lose it
                message = exc.message if isinstance(exc, ImageError | Unavailable) else f"cannot start: {exc}"
                if not isinstance(exc, ImageError | Unavailable):
                    log.exception("starting %s failed", a.task_id)
                for span in (run, assign):
                    span.fail(message)
                    span.end()
                self._finish(a.task_id, a.token, {"state": "error", "error": message})
                return
            with self.lock:
                self.watched[(a.task_id, a.token)] = cid
            self.cpu.started(dataclasses.replace(row, container_id=cid), applied=shares)
            self._follow(a.task_id, a.token, cid, a.spec.timeout, False, a, (run, assign))

    def _probe(self, a: Assignment, cid: str) -> None:
        """Start the probe loop of an attempt whose spec declares probes (once per attempt)."""
        key, spec = (a.task_id, a.token), a.spec
        with self.lock:
            gate = self.gates.get(key)
            if gate is None or key in self.probing or (spec.liveness_probe is None and spec.readiness_probe is None):
                return
            self.probing.add(key)

        def report(ready: bool | None, restarts: int, message: str) -> None:
            (log.warning if restarts and "restarted" in message else log.info)("%s/%s: %s", *key, message)
            self.outbox.put("probe", a.task_id, a.token, {"ready": ready, "restarts": restarts, "message": message})

        def restart() -> None:
            self.metrics.restarted()
            self.executor.restart(cid, grace=1)

        loop = ProbeLoop(
            ContainerTarget(self.executor, cid),
            gate,
            restart,
            report,
            spec.liveness_probe,
            spec.readiness_probe,
            on_check=self.metrics.probe,
            stop=self.stop_event,
        )
        threading.Thread(target=loop.run, name=f"probe-{a.task_id}", daemon=True).start()

    def _follow(
        self,
        task_id: str,
        token: int,
        cid: str,
        timeout: float | None,
        adopted: bool,
        assignment: Assignment | None = None,
        spans: tuple[otrace.Span, otrace.Span] | None = None,
    ) -> None:
        tail: collections.deque[str] = collections.deque(maxlen=200)
        gate = RestartGate()
        with self.lock:
            self.gates[(task_id, token)] = gate
        if assignment is not None:
            self._probe(assignment, cid)
        elif found := self.executor.cpu_row(cid):  # adopted: its weight joins the others'
            self.cpu.started(*found)
        try:
            info = self.executor.result(cid)
            if info["running"]:
                self.outbox.put(
                    "status",
                    task_id,
                    token,
                    {
                        "state": "running",
                        "container_id": cid,
                        "started_at": info["started_at"],
                        "image_digest": info["image_digest"],
                    },
                )

            def on_lines(lines: list[tuple[str, str]]) -> None:
                tail.extend(ln for _, ln in lines)
                now = self.clock.now()
                self.outbox.put(
                    "log", task_id, token, {"lines": [{"stream": st, "at": now, "data": ln} for st, ln in lines]}
                )

            since = self.clock.now() if adopted else None
            streams = [self.executor.follow_logs(cid, since, on_lines)]  # both stdout and stderr
            error = None
            deadline, seen = None if timeout is None else self.clock.monotonic() + timeout, 0
            while True:
                left = None if deadline is None else max(0.01, deadline - self.clock.monotonic())
                exited = self.executor.wait(cid, left)
                restarted = gate.restarted_since(seen) if exited else None
                if restarted is None:
                    break
                seen = restarted  # a liveness restart, not an exit: follow the new run's output
                streams.append(self.executor.follow_logs(cid, self.clock.now(), on_lines))
            if spans is not None:
                spans[0].end()
            if not exited:
                self.executor.stop(cid, grace=1)
                self.executor.wait(cid, None)
                error = f"timed out after {timeout:g} s"
            self.cpu.ended(cid)  # its spare CPU passes on now, not after the report and the clean-up
            for s in streams:
                s.join(timeout=2)
            info = self.executor.result(cid)
            text = "\n".join(tail)[-self.settings.log_tail_bytes :]
            report = {
                "state": "exited",
                "container_id": cid,
                "exit_code": info["exit_code"],
                "oom_killed": info["oom_killed"],
                "started_at": info["started_at"],
                "finished_at": info["finished_at"],
                "log_tail": text,
                "image_digest": info["image_digest"],
                "error": error,
            }
            if error:
                report["exit_code"] = info["exit_code"] if info["exit_code"] not in (0, None) else 124
            self._finish(task_id, token, report, forget=False)
            # Off the result's path: the sender is already delivering it. The attempt stays watched until
            # its container is gone, so a reconcile meanwhile does not start a second follower for it.
            self.executor.remove(cid)
            with self.lock:
                self.watched.pop((task_id, token), None)
        except Unavailable as exc:
            log.warning("lost docker while following %s: %s", task_id, exc)
            with self.lock:
                self.watched.pop((task_id, token), None)
        except Exception:
            log.exception("following %s failed", task_id)
            with self.lock:
                self.watched.pop((task_id, token), None)
        finally:
            self.cpu.ended(cid)
            gate.ended.set()
            with self.lock:
                self.gates.pop((task_id, token), None)
                self.probing.discard((task_id, token))
            for span in spans or ():
                span.end()

    def _finish(self, task_id: str, token: int, report: dict[str, Any], forget: bool = True) -> None:
        self.outbox.put("status", task_id, token, report, finished_at=self.clock.now())
        if forget:
            with self.lock:
                self.watched.pop((task_id, token), None)
        ok = report["state"] == "exited" and report.get("exit_code") == 0 and not report.get("oom_killed")
        result = "error" if report["state"] == "error" else "succeeded" if ok else "failed"
        self.metrics.attempt(result)
        ids = {"task_id": task_id, "attempt": token, "trace_id": otrace.trace_id(self.traces.get((task_id, token)))}
        log.info("attempt %s: %s", result, report.get("error") or f"exit code {report.get('exit_code')}", extra=ids)
