"""Live updates: server-sent event streams woken by the control plane's :class:`Notifier`.

Each stream waits on a notifier topic ("events" moves on every commit that records an event, "task:<id>"
and "logs:<id>" on a task's changes and log lines) with a timeout, so a quiet cluster costs one wake-up a
second per open page. What a stream sends is what changed since it last sent:

* ``/ui/live/fleet``: the rows of nodes whose row differs from what the page shows, and the heartbeat times
  that moved (a time alone: the page redraws the age, not the row). Metrics arrive with heartbeats, which
  commit nothing, so the fleet is compared twice a second as well as on every event;
* ``/ui/live/event-feed``: events from the in-memory ring after the last one sent (not ``…/events``: the API's
  admission control counts GETs of paths ending so as bounded reads, and a stream stays open);
* ``/ui/live/task/<id>``: the task's state and attempts, its new events and log lines (store reads in a
  worker thread), then ``done`` once it is finished and its logs are all sent;
* ``/ui/live/pulse``: a ``pulse`` at most once a second while events are committed (pages that re-read).

Every stream checks its session again each minute and ends with ``logout`` when it is no longer valid.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from updraft.errors import Forbidden, NotFound, Unauthorized
from updraft.security.redaction import redact_task
from updraft.security.tokens import Action
from updraft.ui.auth import Viewer
from updraft.ui.core import Ui
from updraft.ui.views import FleetRow, fleet_beats, fleet_changes, fleet_summary, tone

TICK = 1.0
FLEET_TICK = 0.5
"""Heartbeats commit nothing, so the fleet is also compared this often (its rows are shared: ``Ui.fleet``)."""
KEEPALIVE = 15.0
RECHECK = 60.0
MAX_EVENTS = 200


def sse(name: str, data: Any) -> str:
    """One server-sent event; JSON has no raw newlines, so one ``data:`` line carries it."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def stream(body: AsyncIterator[str]) -> StreamingResponse:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def build_live_router(ui: Ui) -> APIRouter:
    r = APIRouter(prefix="/ui/live", include_in_schema=False)
    look = Depends(ui.viewer)
    notifier, store, service = ui.notifier, ui.service.store, ui.service

    def need(viewer: Viewer, action: Action) -> None:
        if not viewer.may(action):
            raise Forbidden(f"role {viewer.role} may not {action}", reason="forbidden")

    async def still_valid(request: Request, viewer: Viewer, checked: list[float]) -> bool:
        """Re-check the session's token at most once a ``RECHECK``; False once it is revoked or expired."""
        if await request.is_disconnected():
            return False
        mono = service.clock.monotonic()
        if mono - checked[0] < RECHECK:
            return True
        checked[0] = mono
        if ui.sessions.get(viewer.session.id) is None:
            return False
        try:
            await asyncio.to_thread(ui.guard(request).principal, viewer.session.token)
        except Unauthorized:
            ui.sessions.drop(viewer.session.id)
            return False
        return True

    @r.get("/fleet")
    async def fleet(request: Request, viewer: Viewer = look, view: Annotated[str, Query(max_length=40)] = "") -> Any:
        need(viewer, Action.READ_NODE)
        may_act = viewer.may(Action.NODE_ADMIN)
        summary_html = ui.macro("fleet_summary")

        def step(shown: dict[str, FleetRow], beats: dict[str, float]) -> tuple[str, dict[str, FleetRow]]:
            """One update, serialised: what changed since ``shown`` (run in a worker thread: 1,000 rows take
            milliseconds to compare, and a hundred changed rows make a 100 kB message; the event loop answers
            heartbeats)."""
            rows = ui.fleet()
            changed, gone = fleet_changes(shown, rows)
            moved = fleet_beats(beats, rows)
            now = ui.now()
            update: dict[str, Any] = {"now": now, "hb": {"node-" + n: at for n, at in moved.items()}}
            if changed or gone:
                update["rows"] = {r.dom_id: ui.row_html(r, may_act, now) for r in changed}
                update["gone"] = ["node-" + n for n in gone]
                update["summary"] = str(summary_html(fleet_summary(rows)))
                shown = {r.name: r for r in rows}
            beats.update(moved)
            for name in gone:
                beats.pop(name, None)
            return sse("rows", update), shown

        async def body() -> AsyncIterator[str]:
            shown = ui.recall_fleet(view)
            beats = {name: r.heartbeat for name, r in shown.items()}
            seen, checked = notifier.version("events"), [service.clock.monotonic()]
            while await still_valid(request, viewer, checked):
                message, shown = await asyncio.to_thread(step, shown, beats)
                yield message
                seen = await notifier.wait("events", seen, FLEET_TICK)
            yield sse("logout", {})

        return stream(body())

    @r.get("/event-feed")
    async def events(request: Request, viewer: Viewer = look, after: Annotated[int, Query(ge=0)] = 0) -> Any:
        need(viewer, Action.READ_NODE)
        event_row = ui.macro("event_row")

        async def body() -> AsyncIterator[str]:
            last, checked = after, [service.clock.monotonic()]
            while await still_valid(request, viewer, checked):
                seen = notifier.version("events")
                new = ui.events.after(last, MAX_EVENTS)
                if new:
                    last = new[-1].seq
                    rows = [str(event_row(n.event, tone(n.event.kind))) for n in reversed(new)]
                    yield sse("events", {"rows": rows, "last": last})
                else:
                    yield ": keepalive\n\n"
                await notifier.wait("events", seen, KEEPALIVE)
            yield sse("logout", {})

        return stream(body())

    @r.get("/pulse")
    async def pulse(request: Request, viewer: Viewer = look) -> Any:
        async def body() -> AsyncIterator[str]:
            seen, checked = notifier.version("events"), [service.clock.monotonic()]
            while await still_valid(request, viewer, checked):
                now = await notifier.wait("events", seen, KEEPALIVE)
                if now != seen:
                    seen = now
                    yield sse("pulse", {"now": ui.now()})
                    await asyncio.sleep(TICK)
                else:
                    yield ": keepalive\n\n"
            yield sse("logout", {})

        return stream(body())

    @r.get("/task/{task_id}")
    async def task(
        request: Request,
        task_id: str,
        viewer: Viewer = look,
        events_after: Annotated[int, Query(ge=0)] = 0,
        logs_after: Annotated[int, Query(ge=0)] = 0,
    ) -> Any:
        need(viewer, Action.READ_TASK)
        if len(task_id) > 64:
            raise NotFound("no such task", field="task_id")
        state_html, event_row = ui.macro("task_state"), ui.macro("event_row")
        may_cancel = viewer.may(Action.CANCEL)
        first = service.live_task(task_id) or await asyncio.to_thread(store.get_task, task_id)
        if first is None:
            raise NotFound(f"no task {task_id!r}", field="task_id")

        async def body() -> AsyncIterator[str]:
            """Reads the store (in threads) only when the task's or its logs' topic moved since the last read."""
            task_topic, logs_topic = f"task:{task_id}", f"logs:{task_id}"
            ev_after, log_after, checked = events_after, logs_after, [service.clock.monotonic()]
            read_task = read_logs = -1
            shown, current = None, first
            while await still_valid(request, viewer, checked):
                task_v, logs_v = notifier.version(task_topic), notifier.version(logs_topic)
                if task_v != read_task:
                    read_task = task_v
                    found = service.live_task(task_id) or await asyncio.to_thread(store.get_task, task_id)
                    if found is None:
                        break
                    current = found
                    events = await asyncio.to_thread(store.list_events, task_id, ev_after)
                    if current.revision != shown:
                        shown = current.revision
                        html = str(state_html(redact_task(current, None), may_cancel))
                        yield sse("task", {"html": html, "state": str(current.state)})
                    if events:
                        ev_after = events[-1].id
                        yield sse("events", {"rows": [str(event_row(e, tone(e.kind))) for e in events]})
                lines = []
                if logs_v != read_logs or current.state.terminal:
                    read_logs = logs_v
                    lines = await asyncio.to_thread(store.list_logs, task_id, log_after)
                    if lines:
                        log_after = lines[-1].seq
                        yield sse("logs", {"lines": [{"stream": ln.stream, "data": ln.data} for ln in lines]})
                if current.state.terminal and not lines:
                    yield sse("done", {"state": str(current.state)})
                    return
                if task_v == notifier.version(task_topic) and logs_v == notifier.version(logs_topic):
                    # quiet: wait for either topic, half a tick each, then look again
                    await notifier.wait(task_topic, task_v, TICK / 2)
                    if notifier.version(task_topic) == task_v:
                        await notifier.wait(logs_topic, logs_v, TICK / 2)
            yield sse("logout", {})

        return stream(body())

    return r
