"""OpenTelemetry tracing: one trace per task, across server, agent and the user's container.

Off by default and free when off: :data:`NOOP` hands out one tiny object per span that only carries the
parent's ``traceparent`` through, so a trace context that arrives from a client still reaches the container
even when this process does not record spans. OpenTelemetry is imported only when tracing is on.

On when the standard variables ask for it (``OTEL_TRACES_EXPORTER`` other than ``none``, or
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), unless ``OTEL_SDK_DISABLED=true``.
The exporter then reads its own ``OTEL_EXPORTER_OTLP_*`` settings; ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` name the resource as usual.

The spans of a task::

    submit (server)            ← child of the client's traceparent, if it sent one
    ├── schedule (server)      from submission to placement: node, placement, reason
    ├── assign (agent)         the attempt on its node
    │   ├── pull               image lookup or pull
    │   └── run                container create → exit; TRACEPARENT in the container points here
    │       └── create
    └── report (agent, client) → report (server)   each status delivery
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol

Attributes = Mapping[str, str | int | float | bool]


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the standard OTEL_* variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``), for logs."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


class Span:
    """A span handle. This base is the no-op: it only passes the parent's context through."""

    __slots__ = ("traceparent",)

    def __init__(self, traceparent: str | None) -> None:
        self.traceparent = traceparent

    def set(self, key: str, value: str | int | float | bool) -> None:
        return

    def fail(self, message: str) -> None:
        return

    def end(self, at: float | None = None) -> None:
        return

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self.fail(f"{type(exc).__name__}: {exc}")
        self.end()


class Tracing:
    """The tracer of one process. This base is the disabled one (:data:`NOOP`)."""

    enabled = False

    def start(
        self,
        name: str,
        parent: str | None = None,
        attributes: Attributes | None = None,
        kind: str = "internal",
        at: float | None = None,
    ) -> Span:
        """Start a span (end it with ``span.end()`` or use it as a context manager)."""
        return Span(parent)

    def span(
        self, name: str, parent: str | None = None, attributes: Attributes | None = None, kind: str = "internal"
    ) -> Span:
        return self.start(name, parent, attributes, kind)

    def record(
        self, name: str, parent: str | None, start: float, end: float, attributes: Attributes | None = None
    ) -> None:
        """A span for something already over (epoch seconds), e.g. the wait before a placement."""
        return

    def shutdown(self) -> None:
        return


NOOP = Tracing()


class _OtelSpan(Span):
    __slots__ = ("_ended", "_span")

    def __init__(self, span: Any) -> None:
        ctx = span.get_span_context()
        super().__init__(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}")
        self._span = span
        self._ended = False

    def set(self, key: str, value: str | int | float | bool) -> None:
        self._span.set_attribute(key, value)

    def fail(self, message: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_status(Status(StatusCode.ERROR, message))

    def end(self, at: float | None = None) -> None:
        """Idempotent: the first call ends the span."""
        if not self._ended:
            self._ended = True
            self._span.end(end_time=None if at is None else int(at * 1e9))


class OtelTracing(Tracing):
    enabled = True

    def __init__(self, component: str, node: str | None, env: Mapping[str, str], exporter: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        attributes: dict[str, str] = {"updraft.component": component}
        if "OTEL_SERVICE_NAME" not in env:
            attributes["service.name"] = f"updraft-{component}"
        if node:
            attributes["service.instance.id"] = node
        self.provider = TracerProvider(resource=Resource.create(attributes))
        if exporter is not None:  # tests: an in-memory exporter, spans visible at once
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            self.provider.add_span_processor(BatchSpanProcessor(_exporter(env)))
        self.tracer = self.provider.get_tracer(f"updraft.{component}")
        self._propagator = TraceContextTextMapPropagator()
        self._kinds = {
            "internal": trace.SpanKind.INTERNAL,
            "server": trace.SpanKind.SERVER,
            "client": trace.SpanKind.CLIENT,
        }

    def _context(self, parent: str | None) -> Any:
        return self._propagator.extract({"traceparent": parent}) if parent else None

    def start(
        self,
        name: str,
        parent: str | None = None,
        attributes: Attributes | None = None,
        kind: str = "internal",
        at: float | None = None,
    ) -> Span:
        span = self.tracer.start_span(
            name,
            context=self._context(parent),
            kind=self._kinds[kind],
            attributes=dict(attributes or {}),
            start_time=None if at is None else int(at * 1e9),
        )
        return _OtelSpan(span)

    def record(
        self, name: str, parent: str | None, start: float, end: float, attributes: Attributes | None = None
    ) -> None:
        self.start(name, parent, attributes, at=start).end(max(start, end))

    def shutdown(self) -> None:
        self.provider.shutdown()


class _Tasks(Protocol):
    def get_task(self, task_id: str) -> Any: ...


class PlacementSpans:
    """A service listener (server, tracing on): each placement becomes a ``schedule`` span of the task's trace,
    from the moment the task became pending to the decision, carrying the decision and its reason."""

    PLACEMENTS = frozenset({"placed-local", "offloaded", "placed", "migrated"})

    def __init__(self, tracing: Tracing, tasks: _Tasks) -> None:
        self.tracing, self.tasks = tracing, tasks

    def __call__(self, event: Any) -> None:
        if event.kind not in self.PLACEMENTS or not event.task_id:
            return
        try:
            task = self.tasks.get_task(event.task_id)
            if task is None or not task.traceparent:
                return
            earlier = [a.finished_at for a in task.attempts[:-1] if a.finished_at]
            start = max(earlier) if earlier else task.created_at
            attrs = {"updraft.task_id": event.task_id, "updraft.decision": event.kind, "updraft.node": event.node or "",
                     "updraft.reason": event.message, "updraft.token": event.token or 0}
            self.tracing.record("schedule", task.traceparent, start, event.at, attrs)
        except Exception:  # a listener must never fail the command that committed the event
            logging.getLogger("updraft.tracing").exception("cannot record the schedule span of %s", event.task_id)


def _exporter(env: Mapping[str, str]) -> Any:
    name = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name not in ("otlp", "otlp_proto_http"):
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: updraft ships the otlp (HTTP/protobuf) and console exporters")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The exporter reads the rest of OTEL_EXPORTER_OTLP_* itself; the endpoint is taken from ``env`` here so
    # that a mapping passed in (not only os.environ) decides where spans go. The generic endpoint is a base URL.
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not endpoint and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()


def setup(component: str, node: str | None = None, env: Mapping[str, str] | None = None, exporter: Any = None) -> Tracing:
    """The process's tracer: :data:`NOOP` unless the environment asks for traces (or an exporter is given)."""
    if exporter is None and (env is None or not wanted(env)):
        return NOOP
    return OtelTracing(component, node, env or {}, exporter)
