"""Observability without I/O: probe specs, tracing on/off, JSON logs, decision categories, metrics."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit import builders as b
from updraft.control import create_app
from updraft.model import Event
from updraft.model.spec import Probe, TaskSpec
from updraft.observe import tracing
from updraft.observe.logs import JsonFormatter, log_context
from updraft.observe.server_metrics import decision
from updraft.scheduler import schedule
from updraft.settings import ServerSettings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


# -- probes ----------------------------------------------------------------------------------------------
def test_probe_spec_validation() -> None:
    with pytest.raises(ValueError, match="needs a port"):
        Probe(kind="http")
    with pytest.raises(ValueError, match="needs a command"):
        Probe(kind="exec")
    with pytest.raises(ValueError, match="success_threshold must be 1"):
        TaskSpec(image="busybox", liveness_probe=Probe(kind="tcp", port=80, success_threshold=2))
    spec = TaskSpec(image="busybox", readiness_probe={"kind": "http", "port": 8080, "path": "/ready"})  # type: ignore[arg-type]
    assert spec.readiness_probe is not None and spec.readiness_probe.period_seconds == 10


# -- tracing ---------------------------------------------------------------------------------------------
def test_tracing_is_off_unless_otel_asks() -> None:
    assert not tracing.wanted({})
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})
    assert tracing.setup("server", env={}) is tracing.NOOP


def test_noop_tracing_passes_the_parent_through() -> None:
    with tracing.NOOP.span("submit", TRACEPARENT) as span:
        span.set("k", 1)
        assert span.traceparent == TRACEPARENT
    assert tracing.NOOP.start("x").traceparent is None
    assert tracing.trace_id(TRACEPARENT) == "0af7651916cd43dd8448eb211c80319c"
    assert tracing.trace_id("garbage") is None


def test_otel_spans_continue_the_parent_and_record_errors() -> None:
    exporter = InMemorySpanExporter()
    tr = tracing.setup("agent", "edge", env={}, exporter=exporter)
    assert tr.enabled
    with tr.span("assign", TRACEPARENT, {"updraft.task_id": "t-1"}) as span:
        child = tr.start("run", span.traceparent)
        child.end()
        child.end()  # idempotent
    with pytest.raises(RuntimeError), tr.span("pull", span.traceparent):
        raise RuntimeError("no image")
    tr.record("schedule", TRACEPARENT, 100.0, 101.5)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"assign", "run", "pull", "schedule"}
    assert {f"{s.context.trace_id:032x}" for s in spans.values()} == {"0af7651916cd43dd8448eb211c80319c"}
    assert spans["run"].parent is not None and spans["run"].parent.span_id == spans["assign"].context.span_id
    assert spans["pull"].status.status_code.name == "ERROR"
    assert spans["schedule"].end_time - spans["schedule"].start_time == 1_500_000_000
    assert spans["assign"].resource.attributes["service.name"] == "updraft-agent"


def test_server_stores_the_submit_context_and_records_the_schedule_span(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    tr = tracing.setup("server", env={}, exporter=exporter)
    with TestClient(create_app(ServerSettings(data_dir=tmp_path, auth=False), tracing=tr)) as api:
        api.put("/v1/nodes/n1", json={"capacity": {"cpu": "2", "memory": "2Gi"}})
        task = api.post("/v1/tasks", json={"image": "busybox", "origin": "n1"}, headers={"traceparent": TRACEPARENT})
        body = task.json()
        assert tracing.trace_id(body["traceparent"]) == tracing.trace_id(TRACEPARENT)
        assert body["traceparent"] != TRACEPARENT  # the submit span's own context, child of the client's
        app = api.app
        app.state.service.schedule_once()  # type: ignore[attr-defined]
        assert api.get("/v1/nodes/n1/assignments").json()["assignments"][0]["traceparent"] == body["traceparent"]
    names = [s.name for s in exporter.get_finished_spans()]
    assert "submit" in names and "schedule" in names


# -- logs ------------------------------------------------------------------------------------------------
def _json_line(record_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("agent", "edge-1"))
    logger = logging.getLogger("test.observe.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.warning("hello %s", "world", extra=record_extra)
    return dict(json.loads(stream.getvalue()))


def test_json_logs_have_every_field_every_time() -> None:
    plain = _json_line()
    assert set(plain) >= {"timestamp", "level", "component", "node", "task_id", "attempt", "trace_id", "message"}
    assert plain["message"] == "hello world" and plain["level"] == "warning" and plain["task_id"] is None
    with log_context(task_id="t-1", attempt=4, trace_id="abc"):
        inside = _json_line()
    assert (inside["task_id"], inside["attempt"], inside["trace_id"], inside["node"]) == ("t-1", 4, "abc", "edge-1")
    assert _json_line({"task_id": "t-2"})["task_id"] == "t-2"


# -- metrics ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("nodes", "task_fields", "expected"),
    [
        ([b.node("o", tags=["edge"], cpu_pct=10), b.node("c", tags=["low-util"])], {"origin": "o"}, ("local", "under-threshold")),
        ([b.node("o", cpu_pct=91), b.node("c", tags=["low-util"])], {"origin": "o"}, ("offload", "cpu")),
        ([b.node("o", memory_pct=95), b.node("c", tags=["low-util"])], {"origin": "o"}, ("offload", "memory")),
        ([b.node("o", cpu_pct=91), b.node("c")], {"origin": "o"}, ("local", "no-target")),
        ([b.node("o", cpu_pct=91), b.node("c", tags=["low-util"])], {"origin": "o", "offloadable": False},
         ("local", "not-offloadable")),
        ([b.node("c", tags=["low-util"])], {"origin": "gone"}, ("offload", "origin-unavailable")),
        ([b.node("c")], {}, ("anywhere", "no-origin")),
    ],
)
def test_decision_categories_follow_the_scheduler(nodes: list[Any], task_fields: dict[str, Any], expected: tuple[str, str]) -> None:
    plan = schedule(b.snapshot(nodes, [b.task(**task_fields)]), b.policy(), b.NOW)
    (placement,) = plan.placements
    assert decision(placement.code) == expected


def test_offload_disabled_and_predicted_categories() -> None:
    nodes = [b.node("o", cpu_pct=91), b.node("c", tags=["low-util"])]
    plan = schedule(b.snapshot(nodes, [b.task(origin="o")]), b.policy(enable_offload=False), b.NOW)
    assert decision(plan.placements[0].code) == ("local", "offload-disabled")
    nodes = [b.node("o", cpu_pct=10), b.node("c", tags=["low-util"])]
    plan = schedule(b.snapshot(nodes, [b.task(origin="o")], forecasts={"o": "cpu 90% in 20 s"}), b.policy(), b.NOW)
    assert decision(plan.placements[0].code) == ("offload", "predicted")


def test_server_metrics_count_events_and_time_scheduling(tmp_path: Path) -> None:
    with TestClient(create_app(ServerSettings(data_dir=tmp_path, auth=False))) as api:
        metrics = api.app.state.metrics  # type: ignore[attr-defined]
        events = [
            Event(at=10.0, kind="submitted", message="submitted from o", task_id="t1"),
            Event(at=10.5, kind="offloaded", message="offloaded: …", task_id="t1", code="offloaded-cpu"),
            Event(at=12.0, kind="drifted", message="drifted from c: c unreachable", task_id="t1", node="c"),
            Event(at=15.0, kind="migrated", message="drifted from c to d: unreachable", task_id="t1", node="d"),
            Event(at=20.0, kind="retry", message="failed; retry 1/3", task_id="t1"),
            Event(at=30.0, kind="failed", message="failed on d", task_id="t1"),
            Event(at=30.0, kind="node-unreachable", message="node c unreachable", node="c"),
            Event(at=31.0, kind="restarted", message="liveness", task_id="t1"),
        ]
        for e in events:
            metrics.on_event(e)
        text = api.get("/metrics").text
    assert 'updraft_offload_decisions_total{outcome="offload",reason="cpu"} 1.0' in text
    assert "updraft_migrations_total 1.0" in text
    assert 'updraft_task_drifts_total{node="c"} 1.0' in text
    assert "updraft_task_retries_total 1.0" in text
    assert 'updraft_tasks_finished_total{state="failed"} 1.0' in text
    assert 'updraft_node_transitions_total{state="unreachable"} 1.0' in text
    assert "updraft_container_restarts_total 1.0" in text
    assert 'updraft_scheduling_latency_seconds_sum{placement="offload"} 0.5' in text
    assert 'updraft_scheduling_latency_seconds_sum{placement="migrate"} 3.0' in text
