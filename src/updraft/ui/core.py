"""What every dashboard route shares: the control plane's service, the templates, sessions, the recorders.

Reads here are from memory (``ClusterState``, the recorders); anything that reads the store is called with
``asyncio.to_thread`` by the routes, so no page ever blocks the event loop that answers heartbeats.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from updraft.errors import Unauthorized, Unavailable
from updraft.security.tokens import Action
from updraft.ui.auth import COOKIE, GuardLike, LoginRequired, Sessions, Viewer, set_cookie
from updraft.ui.recorders import EventRing, FlowRecorder
from updraft.ui.views import FleetRow, age_text, fleet_rows

if TYPE_CHECKING:
    from jinja2 import Environment

    from updraft.control.service import ControlService

HERE = Path(__file__).parent
FLEET_FRESH = 0.5
ROW_CACHE = 8192
"""Rendered fleet rows kept (a row per node and role kind, a few generations of changing loads)."""
_HB, _AGE = "__updraft_hb__", "__updraft_age__"
FLEET_VIEWS = 64
"""Fleet pages whose rows are remembered, so their live stream sends only what changed since the render."""

SECURITY_HEADERS = {
    # Every script and style is a file of the package: no inline code, so an injected tag cannot run.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

NAV = (
    ("fleet", "Fleet", Action.READ_NODE),
    ("flows", "Flows", Action.READ_NODE),
    ("tasks", "Tasks", Action.READ_TASK),
    ("events", "Events", Action.READ_NODE),
)


class Ui:
    def __init__(self, service: ControlService) -> None:
        self.service = service
        self.state = service.state
        self.notifier = service.notifier
        self.sessions = Sessions(service.clock.now)
        self.flows = FlowRecorder(service.state.pending_task)
        self.events = EventRing()
        self._fleet_views: OrderedDict[str, dict[str, FleetRow]] = OrderedDict()
        self._fleet_cache: tuple[int, float, list[FleetRow]] | None = None
        self._fleet_lock = threading.Lock()
        self._row_cache: OrderedDict[tuple[FleetRow, bool], str] = OrderedDict()
        self._row_lock = threading.Lock()

    def now(self) -> float:
        return self.service.clock.now()

    @functools.cached_property
    def env(self) -> Environment:
        """The templates, loaded when a page is first asked for (jinja2 costs ~9 MB a server need not pay
        while nobody opens the dashboard)."""
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # templates ship in the package; no stat per render
        )
        env.filters["clock"] = lambda at: time.strftime("%H:%M:%S", time.localtime(at)) if at else "-"
        env.globals["age"] = age_text
        env.filters["stamp"] = lambda at: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"
        return env

    @functools.cached_property
    def _fleet_row_macro(self) -> Any:
        return self.macro("fleet_row")

    # -- who is looking ------------------------------------------------------------------------------------
    def guard(self, request: Request) -> GuardLike:
        """The server's Guard, the one its API routes ask (``app.state.guard``); without one, nobody gets in."""
        found: GuardLike | None = getattr(request.app.state, "guard", None)
        if found is None:
            raise Unavailable("the dashboard needs the server's guard (app.state.guard)")
        return found

    async def viewer(self, request: Request) -> Viewer:
        """The FastAPI dependency of every page: the session's principal, checked again now (thread: the
        guard may read its tokens from the store). Raises :class:`LoginRequired`."""
        guard = self.guard(request)
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            try:  # authentication off: everyone is the anonymous admin, with a session for the CSRF token
                who = await asyncio.to_thread(guard.principal, None)
            except Unauthorized as exc:
                raise LoginRequired() from exc
            return Viewer(who, self.sessions.create(None), fresh=True)
        try:
            who = await asyncio.to_thread(guard.principal, session.token)
        except Unauthorized as exc:
            self.sessions.drop(session.id)
            raise LoginRequired() from exc
        return Viewer(who, session)

    # -- rendering -------------------------------------------------------------------------------------------
    def page(self, request: Request, viewer: Viewer, name: str, status: int = 200, **context: Any) -> Response:
        nav = [(key, title) for key, title, action in NAV if viewer.may(action)]
        html = self.env.get_template(name).render(
            viewer=viewer, nav=nav, csrf=viewer.session.csrf, now=self.now(), **context
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if viewer.fresh:
            set_cookie(response, request, viewer.session)
        return response

    def fragment(self, name: str, status: int = 200, **context: Any) -> Response:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def macro(self, name: str) -> Any:
        return getattr(self.env.get_template("_macros.html").module, name)

    def row_html(self, row: FleetRow, may_act: bool, now: float) -> str:
        """A node's row as HTML. Rendered once per (row, may_act) for every open page and every load — a row
        is a frozen value of what it shows — with the heartbeat time and its age filled in per use."""
        key = (row, may_act)
        with self._row_lock:
            html = self._row_cache.get(key)
            if html is not None:
                self._row_cache.move_to_end(key)
        if html is None:
            html = str(self._fleet_row_macro(row, may_act, _HB, _AGE))
            with self._row_lock:
                self._row_cache[key] = html
                while len(self._row_cache) > ROW_CACHE:
                    self._row_cache.popitem(last=False)
        age = age_text(now - row.heartbeat) if row.heartbeat else "never"
        return html.replace(_HB, repr(row.heartbeat), 1).replace(_AGE, age, 1)

    def rows_html(self, rows: list[FleetRow], may_act: bool, now: float) -> Markup:
        return Markup("\n".join(self.row_html(r, may_act, now) for r in rows))

    # -- the fleet, from memory ----------------------------------------------------------------------------
    def fleet(self) -> list[FleetRow]:
        """Every node's row, from memory. Shared by all open Fleet pages: rows built less than ``FLEET_FRESH``
        seconds ago are reused unless an event was committed since (a cordon shows at once; metrics, which come
        with heartbeats and commit nothing, at most that late), so many viewers cost what one does."""
        events, mono = self.notifier.version("events"), self.service.clock.monotonic()
        with self._fleet_lock:
            cached = self._fleet_cache
            if cached is not None and cached[0] == events and mono - cached[1] < FLEET_FRESH:
                return cached[2]
            with self.state.lock:
                nodes = list(self.state.nodes.values())
                by_node = {name: list(tasks) for name, tasks in self.state.by_node.items()}
            rows = fleet_rows(
                nodes, lambda name: by_node.get(name, []), self.service.policy, self.service.detector.delay_slack
            )
            self._fleet_cache = (events, mono, rows)
            return rows

    def remember_fleet(self, rows: list[FleetRow]) -> str:
        view = secrets.token_urlsafe(9)
        self._fleet_views[view] = {r.name: r for r in rows}
        while len(self._fleet_views) > FLEET_VIEWS:
            self._fleet_views.popitem(last=False)
        return view

    def recall_fleet(self, view: str) -> dict[str, FleetRow]:
        return self._fleet_views.pop(view, {})
