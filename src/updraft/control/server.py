"""Assemble the control plane: store + service + routes + the background loops, served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from updraft.clock import Clock, SystemClock
from updraft.control.api import BodyLimit, build_router, install_error_handlers
from updraft.control.notify import Notifier
from updraft.control.service import ControlService
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
            service.check_nodes()
            if service.drift():
                service.notifier.notify("scheduler")
        except Exception:  # keep detecting; the error is logged with its trace
            log.exception("failure detection pass failed")


def create_app(
    settings: ServerSettings,
    clock: Clock | None = None,
    store: Store | None = None,
    loops: list[Loop] | None = None,
) -> FastAPI:
    clock = clock or SystemClock()
    store = store or SqliteStore(settings.data_dir / "updraft.db")
    service = ControlService(store, settings, clock, Notifier())
    background = [scheduler_loop, detector_loop, *(loops or [])]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(loop(service)) for loop in background]
        service.notifier.notify("scheduler")
        yield
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        store.close()

    app = FastAPI(
        title="Updraft",
        version="0.1.0",
        lifespan=lifespan,
        description="Offload containerized tasks from busy edge devices.",
    )
    app.state.service = service
    install_error_handlers(app)
    app.include_router(build_router(service))

    @app.get("/health", tags=["probes"])
    def health() -> Any:
        return {"status": "ok"}

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
    return app


def run(settings: ServerSettings) -> None:
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=1)
