"""Assemble the control plane: store + service + routes + the background loops, served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from updraft.clock import Clock, SystemClock
from updraft.control.api import build_router
from updraft.control.edge import Admission, BodyLimit, LoopLag
from updraft.control.failover import check_nodes, drift
from updraft.control.fastpath import AssignmentsFastPath, HealthFastPath, HeartbeatFastPath, SubmitFastPath
from updraft.control.http_errors import error_responses, install_error_handlers
from updraft.control.notify import Notifier
from updraft.control.service import ControlService
from updraft.observe.logs import EventLog
from updraft.observe.server_metrics import RequestMetrics, ServerMetrics
from updraft.observe.tracing import NOOP, PlacementSpans, Tracing
from updraft.security.http import Guard, token_router
from updraft.security.serving import bootstrap_admin, check_exposure, server_ssl
from updraft.security.tokenfile import FileTokenStore
from updraft.security.tokens import Action
from updraft.settings import ServerSettings
from updraft.store import SqliteStore, Store
from updraft.ui import mount as mount_ui

log = logging.getLogger("updraft.server")

Loop = Callable[[ControlService], Coroutine[Any, Any, None]]

PAUSE_SECONDS = 0.5
"""A detector tick later than this means the server itself stalled; see PhiAccrualDetector.pause."""


async def scheduler_loop(service: ControlService) -> None:
    """Schedule whenever something changed (submit, result, node change), and at least every interval.

    A pass runs in a worker thread, so the event loop keeps answering while it decides; while placements keep
    coming and more tasks are eligible, the next batch follows at once.
    """
    interval = service.settings.scheduler_interval
    seen = service.notifier.version("scheduler")
    while True:
        seen = await service.notifier.wait("scheduler", seen, interval)
        while True:
            try:
                more = await asyncio.to_thread(_schedule_step, service)
            except Exception:  # the loop must outlive one bad pass; the error is logged with its trace
                log.exception("scheduling pass failed")
                break
            if not more:
                break


def _schedule_step(service: ControlService) -> bool:
    """One pass, then whether another should follow at once (in the worker thread: with tens of thousands of
    tasks pending, walking the queue is not something the event loop can afford). Go on while a pass decided
    something and tasks not yet decided since the cluster last changed remain: every pending task gets its
    turn, however many there are (the oldest first)."""
    plan = service.schedule_once()
    return bool(plan.placements or plan.deferrals) and service.more_to_schedule()


def _detect(service: ControlService) -> None:
    check_nodes(service)
    if drift(service):
        service.notifier.notify("scheduler")


async def detector_loop(service: ControlService) -> None:
    """Ten times a second: let the detector report node states, then drift what is due (in a worker thread).

    If this loop itself ran late, the server was not listening meanwhile: the detector is told, so that the
    server's own stall is never taken for its nodes' silence.
    """
    clock, tick = service.clock, 0.1
    last = clock.monotonic()
    while True:
        await asyncio.sleep(tick)
        late = clock.monotonic() - last - tick
        if late > PAUSE_SECONDS:
            log.warning("the server stalled for %.1f s; node silence during the stall is not held against them", late)
            service.detector.pause(late)
        try:
            await asyncio.to_thread(_detect, service)
        except Exception:  # keep detecting; the error is logged with its trace
            log.exception("failure detection pass failed")
        last = clock.monotonic()


async def liveness_flush_loop(service: ControlService) -> None:
    """Write nodes' metrics and heartbeat times at a slow cadence (heartbeats themselves stay in memory)."""
    every = service.settings.node_flush_seconds
    while True:
        await asyncio.sleep(every / 4)
        try:
            await asyncio.to_thread(service.flush_liveness)
        except Exception:  # keep flushing; the error is logged with its trace
            log.exception("liveness flush failed")


class _Glibc:
    """Memory held by glibc's allocator, not by Python: on glibc, cap the allocator's per-thread arenas and
    hand freed pages back to the kernel now and then. A server whose worker threads each allocate in their own
    arena otherwise keeps the high-water mark of every burst resident (measured: bench/footprint.py)."""

    M_ARENA_MAX = -8

    def __init__(self) -> None:
        try:
            import ctypes

            self.libc: Any = ctypes.CDLL("libc.so.6")
        except OSError:  # not glibc (musl, macOS): nothing to tune
            self.libc = None

    def cap_arenas(self, n: int = 2) -> None:
        if self.libc is not None:
            self.libc.mallopt(self.M_ARENA_MAX, n)

    def trim(self) -> None:
        if self.libc is not None:
            self.libc.malloc_trim(0)


GLIBC = _Glibc()


async def memory_trim_loop(service: ControlService) -> None:
    """Every ten seconds, give freed memory back to the kernel (see _Glibc)."""
    while True:
        await asyncio.sleep(10)
        await asyncio.to_thread(GLIBC.trim)


async def image_pin_loop(service: ControlService) -> None:
    """Retry the pins of tasks waiting for a registry that did not answer (image_policy enforce).

    The registry requests and the commits run in a worker thread.
    """
    from updraft.control.pinning import retry_pins

    while True:
        await asyncio.sleep(service.settings.image_pin_retry_seconds)
        try:
            await asyncio.to_thread(retry_pins, service)
        except Exception:  # keep retrying; the error is logged with its trace
            log.exception("image pin pass failed")


def _auth(settings: ServerSettings, clock: Clock) -> tuple[FileTokenStore, Guard]:
    """The token records and the guard every route asks. On a first start, the first admin token is created
    and written, in clear, only to DATA_DIR/admin.token (0600); the log names the file, never the token."""
    if settings.token is not None:  # e.g. UPDRAFT_TOKEN exported for the CLI in the shell that starts the server
        log.warning("the token setting is not used by the server: every caller needs a token of its own "
                    "(DATA_DIR/admin.token, `updraft token create`; docs/security.md)")
    tokens = FileTokenStore(settings.tokens_file or settings.data_dir / "tokens.json", clock.now)
    if settings.auth:
        path = bootstrap_admin(settings.data_dir, tokens.list_tokens(), tokens.put_token, clock.now())
        if path is not None:
            log.warning("first start: an admin token was written to %s (mode 0600)", path)
    return tokens, Guard(tokens.get_token, clock.now, bind=tokens.bind, enabled=settings.auth)


def create_app(
    settings: ServerSettings,
    clock: Clock | None = None,
    store: Store | None = None,
    loops: list[Loop] | None = None,
    tracing: Tracing = NOOP,
) -> FastAPI:
    clock = clock or SystemClock()
    if store is None and settings.store == "etcd":
        from updraft.control.ha import ETCD_SCHEDULER_BATCH, make_store

        store = make_store(settings)  # one plan is one etcd Txn: keep it within etcd's request limits
        settings = settings.model_copy(update={"scheduler_batch": min(settings.scheduler_batch, ETCD_SCHEDULER_BATCH)})
    store = store or SqliteStore(settings.data_dir / "updraft.db")
    service = ControlService(store, settings, clock, Notifier())
    metrics = ServerMetrics(service.state, service.policy, clock.now)
    service.listeners += [metrics.on_event, EventLog()]
    if tracing.enabled:
        service.listeners.append(PlacementSpans(tracing, store))
    running: list[asyncio.Task[None]] = []
    leader_loops: list[Loop] = [scheduler_loop, detector_loop, liveness_flush_loop, image_pin_loop]
    ha = None
    etcd = sys.modules.get("updraft.store.etcd")  # loaded only if an etcd store exists
    if etcd is not None and isinstance(store, etcd.EtcdStore):  # several servers: the leader's loops run by election
        from updraft.control.ha import HighAvailability

        ha = HighAvailability(service, store, settings, leader_loops)
        leader_loops = []
    lag = LoopLag()

    async def loop_lag(_: ControlService) -> None:
        await lag.run()

    background = [*leader_loops, memory_trim_loop, loop_lag, *(loops or [])]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.notifier.bind(asyncio.get_running_loop())
        # Sync routes (store reads, commits) run in these threads; most of their time is spent waiting for the
        # writer's group commit, so more of them than anyio's default 40 means bigger batches, not more CPU.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(loop(service)) for loop in background]
        running[:] = tasks
        if ha is not None:
            ha.start(asyncio.get_running_loop())
        service.notifier.notify("scheduler")
        yield
        if ha is not None:
            await ha.stop()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if ha is None:  # with etcd, only the leader writes liveness, through its fenced view
            await asyncio.to_thread(service.flush_liveness)
        service.close()
        tracing.shutdown()
        store.close()

    app = FastAPI(
        title="Updraft",
        version="0.1.0",
        lifespan=lifespan,
        description="Offload containerized tasks from busy edge devices.",
        docs_url=None,  # both need a credential: served below, behind the guard
        openapi_url=None,
        # FastAPI's own OpenTelemetry hooks look up the global providers on every request (a few per cent of
        # the server's CPU under load); requests are measured by RequestMetrics and traced by our spans.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    tokens, guard = _auth(settings, clock)
    app.state.service = service
    app.state.metrics = metrics
    app.state.ha = ha
    app.state.guard = guard
    install_error_handlers(app)
    app.include_router(build_router(service, guard, tracing))
    app.include_router(token_router(guard, tokens, clock.now, error_responses))
    if ha is not None:
        app.include_router(ha.router(), dependencies=[guard.require(Action.READ_NODE)])
    mount_ui(app, service)  # the web dashboard at /ui, behind the same guard (app.state.guard)

    def health_problems() -> dict[str, str]:
        dead = {t.get_name(): "stopped" for t in [*running, *(ha.running() if ha else [])] if t.done()}
        if not service.writer.alive():
            dead["writer"] = "stopped"
        return dead

    @app.get("/health", tags=["probes"])
    async def health() -> Any:
        """Liveness: the process answers and its background loops and writer are still running (no I/O).
        Answered by ``HealthFastPath`` before the framework; this route documents it."""
        dead = health_problems()
        if not dead:
            return {"status": "ok"}
        return JSONResponse({"status": "failing", "problems": dead}, status_code=503)

    @app.get("/metrics", tags=["probes"], include_in_schema=False, dependencies=[guard.require(Action.READ_METRICS)])
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[guard.require(Action.READ_DOCS)])
    async def openapi() -> Any:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=[guard.require(Action.READ_DOCS)])
    async def docs() -> Response:
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="Updraft API")

    @app.get("/ready", tags=["probes"])
    async def ready() -> Any:
        """Readiness: the writer runs and the store answers (read in a worker thread, never on the loop)."""
        problems = {}
        if not service.writer.alive():
            problems["writer"] = "stopped"
        try:
            await asyncio.to_thread(store.revision)
        except Exception as exc:  # any failure of the store means not ready
            problems["store"] = str(exc)
        body: dict[str, Any] = {"status": "ready" if not problems else "not ready", "leader": True, "problems": problems}
        if ha is not None:  # a follower is ready too: it serves reads and the writes safe from any server
            body |= {"leader": ha.election.leading, "cluster": ha.status()}
        return JSONResponse(body, status_code=200 if not problems else 503)

    app.add_middleware(SubmitFastPath, service=service, guard=guard, tracing=tracing, limit=settings.max_body_bytes)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(
        Admission,
        limits={"submit": settings.max_pending_submits, "read": settings.max_inflight_reads},
        lag=lag,
        max_lag=settings.max_loop_lag_ms / 1000,
    )
    app.add_middleware(AssignmentsFastPath, service=service, guard=guard)
    app.add_middleware(HeartbeatFastPath, service=service, guard=guard, limit=settings.max_body_bytes)
    app.add_middleware(HealthFastPath, problems=health_problems)
    app.add_middleware(RequestMetrics, metrics=metrics)
    if ha is not None:  # added last, so outermost: on a follower a heartbeat goes to the leader before the fast path
        from updraft.control.ha import ForwardHeartbeats

        app.add_middleware(ForwardHeartbeats, ha=ha)
    return app


def tune_interpreter(settings: ServerSettings) -> None:
    """The collector's thresholds and the interpreter lock's switch interval, for a server (README, "Load"):
    with the scheduling pass and the writer in threads, the event loop waits up to one switch interval each time
    it wants the lock back, so a short interval keeps heartbeats and probes from queueing behind a pass."""
    gc.set_threshold(*settings.gc_thresholds)
    sys.setswitchinterval(settings.gil_switch_ms / 1000)


def run(settings: ServerSettings) -> None:
    import os

    import uvicorn

    from updraft.observe.tracing import setup

    tls = settings.tls_cert is not None and settings.tls_key is not None
    for warning in check_exposure(settings.host, auth=settings.auth, tls=tls, insecure_http=settings.insecure_http):
        log.warning("%s", warning)
    ssl = server_ssl(settings.tls_cert, settings.tls_key, settings.tls_client_ca) if tls else {}  # type: ignore[arg-type]
    GLIBC.cap_arenas()  # before any worker thread exists
    tune_interpreter(settings)
    app = create_app(settings, tracing=setup("server", env=os.environ))
    gc.freeze()  # modules, the app and its schemas live as long as the process: no collection scans them again
    app.state.metrics.watch_gc()
    # log_config=None: uvicorn's own records go through our handlers (text or JSON), not its formatter.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        log_config=None,
        **ssl,
    )
