"""The dashboard's pages and actions under ``/ui`` (live streams are in ``live.py``).

Pages answer from memory where the control plane keeps the answer (the fleet, flows, recent events, a live
task); the rest (finished tasks, a task's events and logs) is read from the store in a worker thread.
Actions are the API's own service commands, authorized by the same Guard for the same actions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from updraft.errors import Forbidden, NotFound, PayloadTooLarge, Unauthorized, UpdraftError
from updraft.model import Node, Task, TaskState
from updraft.security.redaction import redact_task
from updraft.security.tokens import Action
from updraft.ui.auth import COOKIE, Viewer, check_csrf, check_origin, check_token_text, may_use_ui, set_cookie
from updraft.ui.core import SECURITY_HEADERS, Ui
from updraft.ui.views import TaskFilter, fleet_summary, flow_picture, spec_text, summarize_flows, tone

TASKS_SHOWN = 200
TASKS_SCANNED = 5000
FLOW_WINDOWS = (1, 5, 15)
LOG_LINES = 10_000
NODE_ACTIONS = ("cordon", "uncordon", "drain")
MAX_FORM_BYTES = 8192


def _forbid(viewer: Viewer, action: Action) -> None:
    if not viewer.may(action):
        raise Forbidden(f"role {viewer.role} may not {action}", reason="forbidden")


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"body: larger than {MAX_FORM_BYTES} bytes", field="body", limit=MAX_FORM_BYTES)
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def build_ui_router(ui: Ui) -> APIRouter:
    r = APIRouter(prefix="/ui", include_in_schema=False)
    look = Depends(ui.viewer)
    store, service = ui.service.store, ui.service

    def refused(request: Request, viewer: Viewer, exc: UpdraftError) -> Response:
        return ui.page(request, viewer, "error.html", status=exc.status, error=exc)

    # -- login -------------------------------------------------------------------------------------------
    @r.get("/login")
    async def login_page(request: Request) -> Response:
        return ui.fragment("login.html", error=None)

    @r.post("/login")
    async def login(request: Request) -> Response:
        check_origin(request)  # no other site may log a browser in (to a session of its own choosing)
        form = await _form(request)
        guard = ui.guard(request)
        try:
            token = check_token_text(form.get("token", ""))
            who = await asyncio.to_thread(guard.principal, token)
        except Unauthorized as exc:
            return ui.fragment("login.html", status=401, error=exc.message)
        if not may_use_ui(who):
            return ui.fragment("login.html", status=403, error=f"role {who.role} cannot use the dashboard")
        session = ui.sessions.create(token)
        response = RedirectResponse("/ui/", status_code=303, headers=SECURITY_HEADERS)
        set_cookie(response, request, session)
        return response

    @r.post("/logout")
    async def logout(request: Request, viewer: Viewer = look) -> Response:
        form = await _form(request)
        check_csrf(request, viewer.session, form.get("csrf"))
        ui.sessions.drop(viewer.session.id)
        response = RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @r.get("/")
    async def home(viewer: Viewer = look) -> Response:
        target = "/ui/fleet" if viewer.may(Action.READ_NODE) else "/ui/tasks"
        return RedirectResponse(target, status_code=303)

    # -- fleet, flows, events: from memory -------------------------------------------------------------------
    @r.get("/fleet")
    async def fleet(request: Request, viewer: Viewer = look) -> Response:
        if not viewer.may(Action.READ_NODE):
            return refused(request, viewer, Forbidden(f"role {viewer.role} may not {Action.READ_NODE}"))
        rows = await asyncio.to_thread(ui.fleet)
        view = ui.remember_fleet(rows)
        may_act = viewer.may(Action.NODE_ADMIN)

        def render() -> Response:  # rows come from the shared cache; the rest would still block the loop
            rows_html = ui.rows_html(rows, may_act, ui.now())
            return ui.page(
                request, viewer, "fleet.html", rows=rows, rows_html=rows_html, summary=fleet_summary(rows),
                view=view, policy=service.policy, may_act=may_act, page="fleet",
            )

        return await asyncio.to_thread(render)

    @r.get("/flows")
    async def flows(request: Request, viewer: Viewer = look, minutes: int = 15) -> Response:
        if not viewer.may(Action.READ_NODE):
            return refused(request, viewer, Forbidden(f"role {viewer.role} may not {Action.READ_NODE}"))
        minutes = minutes if minutes in FLOW_WINDOWS else 15
        since = ui.now() - minutes * 60
        summary = summarize_flows(ui.flows.since(since), since)
        return ui.page(
            request, viewer, "flows.html", summary=summary, picture=flow_picture(summary), minutes=minutes,
            windows=FLOW_WINDOWS, page="flows", htmx=True,
        )

    @r.get("/events")
    async def events(request: Request, viewer: Viewer = look) -> Response:
        if not viewer.may(Action.READ_NODE):
            return refused(request, viewer, Forbidden(f"role {viewer.role} may not {Action.READ_NODE}"))
        recent = ui.events.after(0, limit=200)
        return ui.page(
            request, viewer, "events.html", events=list(reversed(recent)), last=ui.events.last(), tone=tone,
            page="events",
        )

    # -- tasks: the store, in a worker thread -----------------------------------------------------------------
    @r.get("/tasks")
    async def tasks(request: Request, viewer: Viewer = look) -> Response:
        if not viewer.may(Action.READ_TASK):
            return refused(request, viewer, Forbidden(f"role {viewer.role} may not {Action.READ_TASK}"))
        filt = TaskFilter.parse(request.query_params)
        states = [filt.state] if filt.state is not None else None
        # state and node are filtered by the store; origin and the search only here, over the newest tasks
        scan = TASKS_SCANNED if (filt.origin or filt.q) else TASKS_SHOWN
        found = await asyncio.to_thread(store.list_tasks, states, filt.node or None, scan)
        shown = filt.apply(found, TASKS_SHOWN)
        return ui.page(
            request, viewer, "tasks.html", tasks=shown, filter=filt, states=list(TaskState),
            nodes=sorted(ui.state.nodes), scanned=len(found), limit=TASKS_SHOWN, page="tasks",
            may_cancel=viewer.may(Action.CANCEL), htmx=True,
        )

    @r.get("/tasks/{task_id}")
    async def task(request: Request, task_id: str, viewer: Viewer = look) -> Response:
        if not viewer.may(Action.READ_TASK):
            return refused(request, viewer, Forbidden(f"role {viewer.role} may not {Action.READ_TASK}"))
        try:
            found = await _task(task_id)
        except NotFound as exc:
            return refused(request, viewer, exc)
        timeline, lines = await asyncio.gather(
            asyncio.to_thread(store.list_events, task_id),
            asyncio.to_thread(store.list_logs, task_id, 0, LOG_LINES),
        )
        shown = redact_task(found, None)  # secret values never reach a screen, whatever the role
        return ui.page(
            request, viewer, "task.html", task=shown, spec=spec_text(shown), timeline=timeline, logs=lines, tone=tone,
            events_after=timeline[-1].id if timeline else 0, logs_after=lines[-1].seq if lines else 0,
            may_cancel=viewer.may(Action.CANCEL), page="tasks",
        )

    async def _task(task_id: str) -> Task:
        if len(task_id) > 64:
            raise NotFound(f"no task {task_id[:64]!r}", field="task_id")
        live = service.live_task(task_id)
        return live if live is not None else await asyncio.to_thread(service.task, task_id)

    # -- actions ---------------------------------------------------------------------------------------------
    async def act(request: Request, viewer: Viewer, action: Action, node: str | None, run: Callable[[], Any]) -> Any:
        check_csrf(request, viewer.session)
        _forbid(viewer, action)
        await asyncio.to_thread(ui.guard(request).decide, viewer.who, action, node)
        return await asyncio.to_thread(run)

    @r.post("/nodes/{name}/{verb}")
    async def node_action(request: Request, name: str, verb: str, viewer: Viewer = look) -> Response:
        if verb not in NODE_ACTIONS:
            raise NotFound(f"no action {verb[:20]!r}", field="action")
        commands: dict[str, Callable[[], Node]] = {
            "cordon": lambda: service.cordon(name, True),
            "uncordon": lambda: service.cordon(name, False),
            "drain": lambda: service.drain(name),
        }
        node: Node = await act(request, viewer, Action.NODE_ADMIN, name, commands[verb])
        done = {"cordon": "cordoned", "uncordon": "uncordoned", "drain": "draining"}[verb]
        return ui.fragment("_flash.html", tone="good", message=f"node {node.name} {done}")

    @r.post("/tasks/{task_id}/cancel")
    async def cancel(request: Request, task_id: str, viewer: Viewer = look) -> Response:
        done: Task = await act(request, viewer, Action.CANCEL, None, lambda: service.cancel(task_id))
        return ui.fragment("_flash.html", tone="good", message=f"task {done.id} {done.state}")

    return r
