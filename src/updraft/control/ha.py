"""Several servers on one etcd: who runs the loops, how heartbeats reach the leader, what ``/v1/cluster`` shows.

* **Leader loops.** The scheduler, the failure detector and drift, the liveness flush and the image-pin loop run
  on the leader only. When a server wins, it reloads its state from etcd, gives every node a fresh grace period
  (``PhiAccrualDetector.restart``: a failover never declares a healthy node unreachable), then starts the loops
  with ``COMMIT_VIA`` set to the fenced view of its term: every commit they make carries the leader-key compare.
  When it loses, the loops are cancelled; a pass still running in a worker thread can only commit through the
  fenced view, which etcd refuses once the term is over.
* **Followers** serve reads from their state (kept current by the watch, ``follow.py``) and take the writes that
  are safe from any server: submits (idempotent: the task and its key are created with ``create_revision == 0``)
  and agent reports (compared on the task's revision), registrations and operator commands (compared likewise).
* **Heartbeats** are in memory by design (issue 13), so they must reach the leader's detector: a follower
  forwards ``POST /v1/nodes/{name}/heartbeat`` to the leader it knows and returns the leader's answer; if no leader
  is known or it does not answer, the follower answers itself (the agent carries on; the next leader's grace
  period covers the gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from fastapi import APIRouter
from starlette.types import ASGIApp, Receive, Scope, Send

from updraft.control.edge import read_body, replaying
from updraft.control.follow import Follower, Revisions, reload_state
from updraft.control.leader import Election
from updraft.control.service import ControlService
from updraft.control.writer import COMMIT_VIA
from updraft.errors import UpdraftError
from updraft.settings import ServerSettings
from updraft.store import EtcdStore

log = logging.getLogger("updraft.ha")

Loop = Callable[[ControlService], Coroutine[Any, Any, None]]
ETCD_SCHEDULER_BATCH = 200
"""Pending tasks decided per pass with etcd: a plan is one Txn (≤ 2 ops per task), within ``--max-txn-ops``."""
_HEARTBEAT = re.compile(r"^/v1/nodes/[^/]+/heartbeat/?$")


def make_store(settings: ServerSettings) -> EtcdStore:
    return EtcdStore(settings.etcd_endpoints, settings.etcd_prefix, settings.etcd_timeout, settings.etcd_history_ttl)


def member_id(settings: ServerSettings) -> str:
    return settings.server_id or f"{socket.gethostname()}:{settings.port}"


def advertise_url(settings: ServerSettings) -> str:
    return settings.advertise_url or f"http://{settings.host}:{settings.port}"


class HighAvailability:
    def __init__(self, service: ControlService, store: EtcdStore, settings: ServerSettings, leader_loops: list[Loop]) -> None:
        self.service, self.store, self.settings = service, store, settings
        self.leader_loops = leader_loops
        self.id, self.url = member_id(settings), advertise_url(settings)
        # The election has its own client with a short timeout: a keepalive must not outwait the lease.
        self.election_store = EtcdStore(settings.etcd_endpoints, settings.etcd_prefix,
                                        timeout=max(0.3, settings.etcd_lease_ttl / 3))
        self.election = Election(self.election_store, self.id, self.url, settings.etcd_lease_ttl, self._changed)
        revisions = Revisions()
        self.follower = Follower(store, service.state, service.notifier, self.election.observe, revisions)
        service.writer.fresh = revisions.fresh
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.elected_at: float | None = None
        self.terms: list[int] = []
        self._http: httpx.AsyncClient | None = None

    # -- lifecycle (from the server's lifespan) --------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._http = httpx.AsyncClient(timeout=1.0)
        self.follower.start(reload_state(self.service.state, self.store))
        self.election.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.election.stop)
        await self._stop_loops()
        await asyncio.to_thread(self.follower.stop)
        if self._http is not None:
            await self._http.aclose()
        self.election_store.close()

    def running(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    # -- leadership changes (called in the election thread) -----------------------------------------------------------
    def _changed(self, leading: bool, term: int) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if leading:
            reload_state(self.service.state, self.store)  # the counters (tokens) as the last leader left them
            for name in list(self.service.state.nodes):
                self.service.detector.restart(name)
            self.terms.append(term)
            self.elected_at = self.service.clock.monotonic()
            asyncio.run_coroutine_threadsafe(self._start_loops(term), loop).result(10)
        else:
            asyncio.run_coroutine_threadsafe(self._stop_loops(), loop).result(10)

    async def _start_loops(self, term: int) -> None:
        await self._stop_loops()
        COMMIT_VIA.set(self.store.fenced(term))  # this coroutine's context is copied into every loop task
        self._tasks = [asyncio.create_task(loop(self.service), name=loop.__name__) for loop in self.leader_loops]
        COMMIT_VIA.set(None)
        self.service.notifier.notify("scheduler")

    async def _stop_loops(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- what /ready and /v1/cluster say ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {**self.election.status(), "watch_revision": self.follower.revision}

    def cluster(self) -> dict[str, Any]:
        members: list[dict[str, Any]] = []
        etcd: list[dict[str, Any]] = []
        problems: dict[str, str] = {}
        try:
            import json

            kvs, _ = self.store.range(self.store.key("members", ""), prefix=True)
            members = [json.loads(kv["value"]) for kv in kvs]
            etcd_members = self.store.post("/cluster/member/list", {}).get("members", [])
            etcd = [{"name": m.get("name"), "client_urls": m.get("clientURLs", [])} for m in etcd_members]
        except UpdraftError as exc:
            problems["etcd"] = exc.message
        leader_id = self.election.status()["leader_id"]
        for m in members:
            m["leader"] = m.get("id") == leader_id
        status = self.status()
        return {"store": "etcd", "self": status, "leader": {"id": leader_id, "url": status["leader_url"],
                                                          "term": status["term"]},
                "members": members, "etcd": etcd, "problems": problems}

    def router(self) -> APIRouter:
        """``GET /v1/cluster`` (the server mounts it behind its guard, as a node read)."""
        r = APIRouter(prefix="/v1")

        @r.get("/cluster", tags=["cluster"])
        def cluster() -> Any:
            """The servers of this control plane, which one leads and its term, and the etcd members."""
            return self.cluster()

        return r

    # -- heartbeat forwarding ---------------------------------------------------------------------------------------------
    def forward_to(self) -> str | None:
        """The leader's URL when this server does not lead (None: answer here)."""
        if self.election.leading:
            return None
        leader = self.election.leader
        return leader.url if leader is not None and leader.id != self.id else None

    async def forward(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response | None:
        url = self.forward_to()
        if url is None or self._http is None:
            return None
        try:
            return await self._http.post(url + path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.info("could not forward a heartbeat to the leader at %s: %s", url, exc)
            return None


class ForwardHeartbeats:
    """ASGI middleware: on a follower, a heartbeat goes to the leader (see the module docstring)."""

    def __init__(self, app: ASGIApp, ha: HighAvailability) -> None:
        self.app, self.ha = app, ha

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") != "POST" or not _HEARTBEAT.match(scope.get("path", ""))
                or self.ha.forward_to() is None):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        keep = {"authorization", "content-type", "traceparent"}
        headers = {k.decode(): v.decode() for k, v in scope.get("headers", []) if k.decode().lower() in keep}
        answer = await self.ha.forward(scope["path"], body, headers)
        if answer is not None and answer.status_code < 500:
            await send({"type": "http.response.start", "status": answer.status_code,
                        "headers": [(b"content-type", answer.headers.get("content-type", "application/json").encode())]})
            await send({"type": "http.response.body", "body": answer.content})
            return
        await self.app(scope, replaying(body, receive), send)
