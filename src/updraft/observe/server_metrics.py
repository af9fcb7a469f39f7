"""Prometheus metrics of the control plane.

Three sources, none of them in the service layer's code:

* **events** — :meth:`ServerMetrics.on_event` is a service listener; every committed decision (submitted,
  offloaded, migrated, retry, …) moves a counter, and placements observe the scheduling latency;
* **the store, at scrape time** — tasks by state and every node's state, load and heartbeat age are read
  when Prometheus asks (:class:`_StoreCollector`), so they can never drift from the truth;
* **the HTTP edge** — :class:`RequestMetrics`, an ASGI middleware, times each request by route template.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from updraft.observe.metrics import LATENCY_BUCKETS, VERSION, exposition, new_registry

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from updraft.model import Event, Node

ACTIVE_STATES = ("pending", "scheduled", "running")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
NODE_STATES = ("ready", "suspect", "unreachable")
PLACEMENTS = {"placed-local": "local", "offloaded": "offload", "placed": "anywhere", "migrated": "migrate"}
SCHEDULING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class StoreView(Protocol):
    def list_tasks(self, states: Iterable[Any] | None = ..., node: str | None = ..., limit: int = ...) -> Sized: ...
    def list_nodes(self) -> list[Node]: ...


class PolicyView(Protocol):
    threshold_cpu: float
    threshold_memory: float
    enable_offload: bool


_OUTCOMES: dict[str, tuple[str, str]] = {
    "offloaded-cpu": ("offload", "cpu"),
    "offloaded-memory": ("offload", "memory"),
    "offloaded-predicted": ("offload", "predicted"),
    "origin-unavailable": ("offload", "origin-unavailable"),
    "pinned": ("local", "not-offloadable"),
    "kept-local-no-target": ("local", "no-target"),
    "local-offload-disabled": ("local", "offload-disabled"),
    "local-under-threshold": ("local", "under-threshold"),
    "held-back-transient": ("local", "held-back-transient"),
    "anywhere-best": ("anywhere", "no-origin"),
    "made-room": ("anywhere", "made-room"),
    "moved-for-room": ("anywhere", "moved-for-room"),
}


def decision(code: str | None) -> tuple[str, str] | None:
    """(outcome, reason) of a placement, for ``updraft_offload_decisions_total``, from the decision's reason code
    (never from its message: the scheduler states the code beside the text, see ``scheduler/reasons.py``)."""
    return _OUTCOMES.get(code or "")


GC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class ServerMetrics:
    def __init__(self, store: StoreView, policy: PolicyView, now: Callable[[], float] = time.time) -> None:
        self.registry = r = new_registry()
        Gauge("updraft_build_info", "Updraft version of this process", ["version", "component"], registry=r).labels(
            VERSION, "server"
        ).set(1)
        self.submitted = Counter("updraft_tasks_submitted_total", "Tasks submitted", registry=r)
        self.decisions = Counter(
            "updraft_offload_decisions_total",
            "Placement decisions by outcome (local, offload, anywhere) and reason",
            ["outcome", "reason"],
            registry=r,
        )
        self.migrations = Counter(
            "updraft_migrations_total", "Tasks placed on a new node after drifting off a failed or drained one",
            registry=r,
        )
        self.drifts = Counter(
            "updraft_task_drifts_total", "Tasks taken off a node that became unreachable or was drained", ["node"],
            registry=r,
        )
        self.retries = Counter("updraft_task_retries_total", "Failed attempts retried", registry=r)
        self.finished = Counter(
            "updraft_tasks_finished_total", "Tasks that reached a final state, by state", ["state"], registry=r
        )
        self.deferrals = Counter(
            "updraft_task_deferrals_total", "Times a pending task could not be placed (reason changed)", registry=r
        )
        self.stale = Counter(
            "updraft_stale_reports_total", "Agent reports refused because their fencing token was stale", registry=r
        )
        self.restarts = Counter(
            "updraft_container_restarts_total", "Containers restarted by their node after a failing liveness probe",
            registry=r,
        )
        self.node_transitions = Counter(
            "updraft_node_transitions_total", "Node state changes, by the state entered", ["state"], registry=r
        )
        self.offload_mode = Counter(
            "updraft_offload_mode_changes_total", "Origins entering (on) or leaving (off) offload mode", ["mode"],
            registry=r,
        )
        self.scheduling = Histogram(
            "updraft_scheduling_latency_seconds",
            "Time from a task becoming pending (submitted or drifted) to its placement, by placement",
            ["placement"],
            buckets=SCHEDULING_BUCKETS,
            registry=r,
        )
        self.requests = Histogram(
            "updraft_api_request_duration_seconds",
            "HTTP API requests by method, route template and status (long polls included)",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        for state in TERMINAL_STATES:
            self.finished.labels(state)
        for state in NODE_STATES:
            self.node_transitions.labels(state)
        for placement in PLACEMENTS.values():
            self.scheduling.labels(placement)
        self.decisions.labels("offload", "cpu")
        self.decisions.labels("local", "under-threshold")
        r.register(_StoreCollector(store, policy, now))
        self._pending_since: dict[str, float] = {}

    def on_event(self, event: Event) -> None:
        """The service listener: one committed event in, counters out. Must never raise."""
        kind = event.kind
        if kind == "submitted":
            self.submitted.inc()
            if event.task_id:
                self._pending_since[event.task_id] = event.at
        elif kind in PLACEMENTS:
            outcome = decision(event.code)
            if outcome is not None:
                self.decisions.labels(*outcome).inc()
            if kind == "migrated":
                self.migrations.inc()
            since = self._pending_since.pop(event.task_id or "", None)
            if since is not None:
                self.scheduling.labels(PLACEMENTS[kind]).observe(max(0.0, event.at - since))
        elif kind == "drifted":
            self.drifts.labels(event.node or "unknown").inc()
            if event.task_id:
                self._pending_since[event.task_id] = event.at
        elif kind == "retry":
            self.retries.inc()
            self._pending_since.pop(event.task_id or "", None)  # the backoff is deliberate, not latency
        elif kind in TERMINAL_STATES or kind == "cancelled":
            self.finished.labels(kind).inc()
            self._pending_since.pop(event.task_id or "", None)
        elif kind == "deferred":
            self.deferrals.inc()
        elif kind == "stale-report":
            self.stale.inc()
        elif kind == "restarted":
            self.restarts.inc()
        elif kind.startswith("node-") and kind[5:] in NODE_STATES:
            self.node_transitions.labels(kind[5:]).inc()
        elif kind == "offload-mode":
            self.offload_mode.labels("on" if event.code == "offload-on" else "off").inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).observe(seconds)

    def watch_gc(self) -> None:
        """Time every collection of CPython's collector (process-wide: call once, in the server process).
        A collection stops every thread, so its pauses are where latency tails under load come from."""
        pause = Histogram(
            "updraft_server_gc_pause_seconds", "Pauses of the garbage collector, by generation", ["generation"],
            buckets=GC_BUCKETS, registry=self.registry,
        )  # fmt: skip
        children = [pause.labels(str(g)) for g in range(3)]
        started = [0.0]

        def timing(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                children[info["generation"]].observe(time.perf_counter() - started[0])

        gc.callbacks.append(timing)

    def exposition(self) -> tuple[bytes, str]:
        return exposition(self.registry)


class _StoreCollector(Collector):
    """Gauges read from the store when Prometheus scrapes."""

    def __init__(self, store: StoreView, policy: PolicyView, now: Callable[[], float]) -> None:
        self.store, self.policy, self.now = store, policy, now

    def describe(self) -> Iterable[Any]:
        return []  # the families are built on demand; nothing to pre-declare

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tasks = GaugeMetricFamily("updraft_tasks", "Tasks not yet finished, by state", labels=["state"])
        for state in ACTIVE_STATES:
            tasks.add_metric([state], len(self.store.list_tasks([state], limit=10_000_000)))
        yield tasks
        nodes = self.store.list_nodes()
        now = self.now()
        counts = GaugeMetricFamily("updraft_nodes", "Nodes by state", labels=["state"])
        for state in NODE_STATES:
            counts.add_metric([state], sum(1 for n in nodes if n.state == state))
        yield counts
        per_node: dict[str, GaugeMetricFamily] = {
            "state": GaugeMetricFamily(
                "updraft_node_state", "1 for the node's current state, 0 for the others", labels=["node", "state"]
            ),
            "cpu": GaugeMetricFamily(
                "updraft_node_cpu_ratio", "Node cpu load from its last heartbeat, 0–1 of capacity", labels=["node"]
            ),
            "memory": GaugeMetricFamily(
                "updraft_node_memory_ratio", "Node memory load from its last heartbeat, 0–1 of capacity",
                labels=["node"],
            ),
            "age": GaugeMetricFamily(
                "updraft_node_heartbeat_age_seconds", "Seconds since the node's last heartbeat", labels=["node"]
            ),
            "offloading": GaugeMetricFamily(
                "updraft_node_offloading", "1 while the node, as an origin, is in offload mode", labels=["node"]
            ),
            "cordoned": GaugeMetricFamily("updraft_node_cordoned", "1 while the node is cordoned", labels=["node"]),
            "cores": GaugeMetricFamily("updraft_node_cpu_capacity_cores", "Declared cpu capacity", labels=["node"]),
            "bytes": GaugeMetricFamily(
                "updraft_node_memory_capacity_bytes", "Declared memory capacity", labels=["node"]
            ),
        }
        for n in nodes:
            for state in NODE_STATES:
                per_node["state"].add_metric([n.name, state], 1.0 if n.state == state else 0.0)
            per_node["cpu"].add_metric([n.name], n.metrics.cpu_pct / 100)
            per_node["memory"].add_metric([n.name], n.metrics.memory_pct / 100)
            per_node["age"].add_metric([n.name], max(0.0, now - n.last_heartbeat))
            per_node["offloading"].add_metric([n.name], 1.0 if n.offloading else 0.0)
            per_node["cordoned"].add_metric([n.name], 1.0 if n.cordoned else 0.0)
            per_node["cores"].add_metric([n.name], n.capacity.cpu_millis / 1000)
            per_node["bytes"].add_metric([n.name], n.capacity.memory_bytes)
        yield from per_node.values()
        threshold = GaugeMetricFamily(
            "updraft_offload_threshold_ratio", "Origin load at which tasks are offloaded, 0–1", labels=["resource"]
        )
        threshold.add_metric(["cpu"], self.policy.threshold_cpu / 100)
        threshold.add_metric(["memory"], self.policy.threshold_memory / 100)
        yield threshold
        enabled = GaugeMetricFamily("updraft_offload_enabled", "1 when the policy allows offloading")
        enabled.add_metric([], 1.0 if self.policy.enable_offload else 0.0)
        yield enabled


class RequestMetrics:
    """ASGI middleware: time every HTTP request and label it with its route template, not its raw path."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            self.metrics.observe_request(scope["method"], route, status, time.perf_counter() - started)
