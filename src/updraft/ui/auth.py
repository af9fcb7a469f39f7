"""Who is looking: a login with a token, kept as a server-side session behind an HttpOnly cookie.

The dashboard has the API's roles because it asks the API's :class:`~updraft.security.http.Guard` (the server
puts it on ``app.state.guard``): the token typed at the login is checked by ``guard.principal`` and kept in
the session on the server, never in the browser; every request checks it again, so a revoked or expired
token ends the session at once. The browser holds only a random session id, in a cookie that is
``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it) and ``Secure`` over TLS.

Actions (cordon, uncordon, drain, cancel) are POSTs that must also carry the session's CSRF token (header
``X-CSRF-Token`` or form field ``csrf``), compared in constant time, and an ``Origin``, when the browser sends
one, naming this server; each is authorized by ``guard.decide`` for the same action the API route requires.

With authentication off (``--no-auth``, loopback only) the Guard answers every caller as the anonymous admin,
and so does the dashboard: each visitor gets a session at once, for its CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from starlette.requests import Request

from updraft.errors import Forbidden, Unauthorized
from updraft.security.http import Principal
from updraft.security.tokens import PERMISSIONS, Action, Role

COOKIE = "updraft_ui"
CSRF_HEADER = "x-csrf-token"
IDLE_SECONDS = 8 * 3600.0
LIFETIME_SECONDS = 24 * 3600.0
MAX_SESSIONS = 10_000
MAX_TOKEN_CHARS = 512

UI_ACTIONS = (Action.READ_NODE, Action.READ_TASK)
"""A role needs one of these to use the dashboard at all."""


class GuardLike(Protocol):
    """What the dashboard needs of :class:`updraft.security.http.Guard`."""

    def principal(self, token: str | None) -> Principal: ...

    def decide(self, who: Principal, action: Action, node: str | None = None) -> Principal: ...


@dataclass
class Session:
    id: str
    token: str | None
    csrf: str
    created: float
    seen: float


@dataclass
class Sessions:
    """Sessions in memory (a server restart logs everyone out), bounded, idle and absolute expiry."""

    now: Callable[[], float]
    idle: float = IDLE_SECONDS
    lifetime: float = LIFETIME_SECONDS
    limit: int = MAX_SESSIONS
    _by_id: OrderedDict[str, Session] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, token: str | None) -> Session:
        at = self.now()
        session = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), at, at)
        with self._lock:
            self._by_id[session.id] = session
            while len(self._by_id) > self.limit:
                self._by_id.popitem(last=False)
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 100:
            return None
        at = self.now()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if at - session.seen >= self.idle or at - session.created >= self.lifetime:
                del self._by_id[sid]
                return None
            session.seen = at
            self._by_id.move_to_end(sid)
            return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


@dataclass(frozen=True)
class Viewer:
    """A request's principal and session; ``fresh`` when the session was made for this request (auth off)."""

    who: Principal
    session: Session
    fresh: bool = False

    @property
    def role(self) -> Role:
        return self.who.role

    def may(self, action: Action) -> bool:
        return action in PERMISSIONS[self.role]


class LoginRequired(Exception):
    """No valid session: pages redirect to the login, live streams and actions answer 401."""


def may_use_ui(who: Principal) -> bool:
    return any(a in PERMISSIONS[who.role] for a in UI_ACTIONS)


def check_token_text(token: str) -> str:
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_CHARS or any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
        raise Unauthorized("the token is not valid", reason="malformed")
    return token


def check_origin(request: Request) -> None:
    """Refuse a POST whose ``Origin`` names another site (browsers send it on every cross-origin POST)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Forbidden("the request came from another origin", reason="csrf")


def check_csrf(request: Request, session: Session, form_value: str | None = None) -> None:
    """Refuse a state-changing request without this session's CSRF token, or from another origin."""
    check_origin(request)
    given = request.headers.get(CSRF_HEADER) or form_value or ""
    if not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise Forbidden("missing or wrong CSRF token; reload the page", reason="csrf")


def set_cookie(response: object, request: Request, session: Session) -> None:
    from starlette.responses import Response

    assert isinstance(response, Response)
    response.set_cookie(
        COOKIE,
        session.id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
        max_age=int(LIFETIME_SECONDS),
    )
