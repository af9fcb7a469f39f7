"""The web dashboard at ``/ui``: the fleet, where work went and why, tasks and events, live (issue 18).

Server-rendered pages (Jinja2) with a little JavaScript: a vendored htmx for forms and fragments, and
``static/ui.js`` for the live streams, sorting, filtering and the confirmed actions. Every asset ships in the
package (no CDN; an air-gapped site works). Layout::

    views.py      pure: nodes, tasks, events → rows, filters, the flow picture (tested without a browser)
    recorders.py  listeners on the commit path: recent events, where work went (memory, never the store)
    auth.py       login with a token → a server-side session (HttpOnly, SameSite=Strict cookie), CSRF
    core.py       what the routes share: the service, templates, sessions, the fleet from ClusterState
    routes.py     pages and actions;  live.py  server-sent event streams fed by the Notifier

The server mounts it with one call, ``mount(app, service)``; the roles are the API's (``app.state.guard``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from updraft.ui.auth import LoginRequired
from updraft.ui.core import HERE, Ui
from updraft.ui.live import build_live_router
from updraft.ui.routes import build_ui_router

if TYPE_CHECKING:
    from updraft.control.service import ControlService

__all__ = ["Ui", "mount"]


def mount(app: FastAPI, service: ControlService) -> Ui:
    """Serve the dashboard under ``/ui`` and record what its pages show from the commit path."""
    ui = Ui(service)
    ui.flows.note(service.state.pending())
    service.listeners += [ui.events, ui.flows]
    app.include_router(build_ui_router(ui))
    app.include_router(build_live_router(ui))
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    async def login_required(request: Request, exc: Exception) -> Response:
        if request.method == "GET" and not request.url.path.startswith("/ui/live/"):
            return RedirectResponse("/ui/login", status_code=303)
        body = {"code": "unauthorized", "message": "log in again", "details": {"login": "/ui/login"}}
        return JSONResponse(body, status_code=401)

    app.add_exception_handler(LoginRequired, login_required)
    app.state.ui = ui
    return ui
