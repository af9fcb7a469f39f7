"""Assemble the control plane: store + service + routes + the background loops, served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from updraft.clock import Clock, SystemClock
from updraft.control.api import BodyLimit, build_router, install_error_handlers
from updraft.control.failover import check_nodes, drift
from updraft.control.notify import Notifier
from updraft.control.service import ControlService
from updraft.observe.logs import EventLog
from updraft.observe.server_metrics import RequestMetrics, ServerMetrics
from updraft.observe.tracing import NOOP, PlacementSpans, Tracing
from updraft.settings import ServerSettings
from updraft.store import SqliteStore, Store

log = logging.getLogger("updraft.server")

Loop = Callable[[ControlService], Coroutine[Any, Any, None]]


async def scheduler_loop(service: ControlService) -> None:
    """Schedule whenever something changed (submit, result, node change), and at least every interval."""
    interval = service.settings.scheduler_interval
    seen = service.notifier.version("scheduler")
    while True:
        seen = await service.notifier.wait("scheduler", seen, interval)
        try:
            service.schedule_once()
        except Exception:  # the loop must outlive one bad pass; the error is logged with its trace
            log.exception("scheduling pass failed")


async def detector_loop(service: ControlService) -> None:
    """Ten times a second: let the detector report node states, then drift what is due."""
    while True:
        await asyncio.sleep(0.1)
        try:
            check_nodes(service)
            if drift(service):
                service.notifier.notify("scheduler")
        except Exception:  # keep detecting; the error is logged with its trace
            log.exception("failure detection pass failed")


async def image_pin_loop(service: ControlService) -> None:
    """Retry the pins of tasks waiting for a registry that did not answer (image_policy enforce).

    The registry requests run in a worker thread; the outcomes are committed here, in the event loop.
    """
    from updraft.control.pinning import apply_pending, decide_pending

    while True:
        await asyncio.sleep(service.settings.image_pin_retry_seconds)
        try:
            decisions = await asyncio.to_thread(decide_pending, service)
            if decisions:
                apply_pending(service, decisions)
        except Exception:  # keep retrying; the error is logged with its trace
            log.exception("image pin pass failed")


def create_app(
    settings: ServerSettings,
    clock: Clock | None = None,
    store: Store | None = None,
    loops: list[Loop] | None = None,
    tracing: Tracing = NOOP,
) -> FastAPI:
    clock = clock or SystemClock()
    store = store or SqliteStore(settings.data_dir / "updraft.db")
    service = ControlService(store, settings, clock, Notifier())
    metrics = ServerMetrics(store, service.policy, clock.now)
    service.listeners += [metrics.on_event, EventLog()]
    if tracing.enabled:
        service.listeners.append(PlacementSpans(tracing, store))
    running: list[asyncio.Task[None]] = []
    background = [scheduler_loop, detector_loop, image_pin_loop, *(loops or [])]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.notifier.bind(asyncio.get_running_loop())
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(loop(service)) for loop in background]
        running[:] = tasks
        service.notifier.notify("scheduler")
        yield
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        tracing.shutdown()
        store.close()

    app = FastAPI(
        title="Updraft",
        version="0.1.0",
        lifespan=lifespan,
        description="Offload containerized tasks from busy edge devices.",
    )
    app.state.service = service
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(build_router(service, tracing))

    @app.get("/health", tags=["probes"])
    def health() -> Any:
        """Liveness: the process answers and its background loops are still running."""
        dead = {t.get_name(): "stopped" for t in running if t.done()}
        if not dead:
            return {"status": "ok"}
        return JSONResponse({"status": "failing", "problems": dead}, status_code=503)

    @app.get("/metrics", tags=["probes"], include_in_schema=False)
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/ready", tags=["probes"])
    def ready() -> Any:
        problems = {}
        try:
            store.revision()
        except Exception as exc:  # any failure of the store means not ready
            problems["store"] = str(exc)
        body = {"status": "ready" if not problems else "not ready", "leader": True, "problems": problems}
        return JSONResponse(body, status_code=200 if not problems else 503)

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


def run(settings: ServerSettings) -> None:
    import os

    import uvicorn

    from updraft.observe.tracing import setup

    app = create_app(settings, tracing=setup("server", env=os.environ))
    # log_config=None: uvicorn's own records go through our handlers (text or JSON), not its formatter.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        log_config=None,
    )
