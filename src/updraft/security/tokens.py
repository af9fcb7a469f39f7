"""Bearer tokens, roles and the permission table — pure decisions, no I/O.

A token reads ``upd_<id>_<secret>``: ``id`` (12 hex digits) is public and is how the store finds the record;
``secret`` is 256 random bits (43 base64url characters). The store keeps a :class:`TokenRecord` holding only
``sha256("updraft-token-v1:" + token)``, never the token.

Why SHA-256 and not scrypt or bcrypt: a slow, salted KDF exists to make guessing a *low-entropy password*
expensive after the hashes leak. A 256-bit random secret cannot be guessed however fast the hash is, so a
KDF would add no security — only tens of milliseconds of CPU to every request on a 2-core device, which is a
denial-of-service lever. The prefix separates this use of SHA-256 from any other. Hashes are compared with
:func:`hmac.compare_digest` (constant time), so response timing says nothing about how much of a guess matched.

Every decision is data (:class:`Decision`: allowed, code, message), in the project's style; the HTTP layer
turns a refusal into 401 or 403 with :meth:`Decision.error`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from updraft.errors import Forbidden, Unauthorized, UpdraftError, ValidationError
from updraft.model.limits import NodeName

PREFIX = "upd"
_TOKEN = re.compile(r"^upd_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_HASH_DOMAIN = b"updraft-token-v1:"
_DURATION = re.compile(r"^(\d{1,9})(s|m|h|d|w)?$")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    SUBMITTER = "submitter"
    NODE = "node"
    METRICS = "metrics"


class Action(StrEnum):
    """The API's operations, grouped by who may perform them."""

    SUBMIT = "submit"  # POST /v1/tasks
    READ_TASK = "read-task"  # GET /v1/tasks, /v1/tasks/{id}[/wait|/events|/logs]
    CANCEL = "cancel"  # POST /v1/tasks/{id}/cancel
    READ_NODE = "read-node"  # GET /v1/nodes, /v1/nodes/{name}, /v1/events, /v1/policy
    NODE_ADMIN = "node-admin"  # cordon, uncordon, drain, labels, taints
    NODE_AGENT = "node-agent"  # register, heartbeat, assignments, attempt status/probes/logs — as itself
    READ_METRICS = "read-metrics"  # GET /metrics
    READ_DOCS = "read-docs"  # GET /docs, /openapi.json
    READ_SECRETS = "read-secrets"  # secret_env values in task responses
    TOKEN_ADMIN = "token-admin"  # create, list, revoke tokens


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.OPERATOR: frozenset(
        {Action.SUBMIT, Action.READ_TASK, Action.CANCEL, Action.READ_NODE, Action.NODE_ADMIN,
         Action.READ_METRICS, Action.READ_DOCS}
    ),
    Role.SUBMITTER: frozenset({Action.SUBMIT, Action.READ_TASK, Action.CANCEL, Action.READ_DOCS}),
    Role.NODE: frozenset({Action.NODE_AGENT}),
    Role.METRICS: frozenset({Action.READ_METRICS}),
}
"""Who may do what. ``NODE_AGENT`` is further limited to the token's own node (see :func:`authorize`)."""


class TokenRecord(BaseModel):
    """What the store keeps about a token: never the token itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    role: Role
    node: NodeName | None = Field(default=None, description="node tokens: the only node it may act as")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", repr=False)
    created_at: float = Field(allow_inf_nan=False)
    expires_at: float | None = Field(default=None, allow_inf_nan=False)
    revoked_at: float | None = Field(default=None, allow_inf_nan=False)
    description: str = Field(default="", max_length=200)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def public(self) -> dict[str, object]:
        """The record as ``updraft token list`` shows it (no hash)."""
        return self.model_dump(mode="json", exclude={"hash"})


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: str
    """``ok``, ``bind`` (allowed; bind a join token to ``node`` now), ``missing``, ``malformed``, ``unknown``,
    ``expired``, ``revoked``, ``forbidden``, ``wrong_node``, ``unbound``, ``taken``."""
    message: str
    node: str | None = None

    @property
    def status(self) -> int:
        if self.allowed:
            return 200
        return 401 if self.code in _UNAUTHENTICATED else 403

    def error(self) -> UpdraftError:
        """The exception to raise for a refusal (401 Unauthorized or 403 Forbidden)."""
        cls = Unauthorized if self.status == 401 else Forbidden
        return cls(self.message, reason=self.code)

    def check(self) -> None:
        """Raise :meth:`error` unless allowed."""
        if not self.allowed:
            raise self.error()


_UNAUTHENTICATED = frozenset({"missing", "malformed", "unknown", "expired", "revoked"})
OK = Decision(True, "ok", "allowed")


# -- tokens ------------------------------------------------------------------------------------------------
def hash_token(token: str) -> str:
    return hashlib.sha256(_HASH_DOMAIN + token.encode("utf-8", "surrogatepass")).hexdigest()


def token_id(token: str) -> str | None:
    """The public id of a well-formed token (the store's lookup key), or None."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def generate(
    role: Role,
    now: float,
    *,
    node: str | None = None,
    ttl: float | None = None,
    description: str = "",
    randbytes: Callable[[int], bytes] = secrets.token_bytes,
) -> tuple[str, TokenRecord]:
    """A new token (shown once) and the record to store. ``node`` only for the node role."""
    if node is not None and role is not Role.NODE:
        raise ValidationError("--node is only for --role node", field="node")
    if ttl is not None and not 0 < ttl <= 10 * 365 * 86400:
        raise ValidationError("ttl: must be positive and at most ten years", field="ttl")
    ident = randbytes(6).hex()
    secret = base64.urlsafe_b64encode(randbytes(32)).decode().rstrip("=")
    token = f"{PREFIX}_{ident}_{secret}"
    record = TokenRecord(
        id=ident,
        role=role,
        node=node,
        hash=hash_token(token),
        created_at=now,
        expires_at=None if ttl is None else now + ttl,
        description=description,
    )
    return token, record


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def authenticate(
    presented: str | None, lookup: Callable[[str], TokenRecord | None], now: float
) -> tuple[TokenRecord | None, Decision]:
    """Who presented ``presented``: the record and ``ok``, or None and why not (every refusal is a 401)."""
    if not presented:
        return None, Decision(False, "missing", "a bearer token is required (Authorization: Bearer …)")
    ident = token_id(presented)
    if ident is None:
        return None, Decision(False, "malformed", "the bearer token is not an updraft token (upd_…)")
    record = lookup(ident)
    # Compare even when the id is unknown, so the time taken does not tell a known id from an unknown one.
    expected = record.hash if record is not None else "0" * 64
    matches = hmac.compare_digest(hash_token(presented), expected)
    if record is None or not matches:
        return None, Decision(False, "unknown", "the bearer token is not valid")
    if record.revoked_at is not None:
        return None, Decision(False, "revoked", f"token {record.id} was revoked")
    if record.expired(now):
        return None, Decision(False, "expired", f"token {record.id} has expired")
    return record, OK


def authorize(record: TokenRecord, action: Action, resource_node: str | None = None) -> Decision:
    """May ``record`` perform ``action`` (on ``resource_node``, for node-agent actions)?

    A node token acts only as its own node. A node token created without ``--node`` is a *join token*: it is
    allowed on its first register (``code == "bind"``, ``node`` set) and the caller binds it to that name —
    after :func:`may_bind` agrees — so from then on it is that node's token.
    """
    if action not in PERMISSIONS[record.role]:
        return Decision(False, "forbidden", f"role {record.role} may not {action}")
    if action is not Action.NODE_AGENT or record.role is not Role.NODE:
        return OK
    if resource_node is None:
        return Decision(False, "wrong_node", "a node token acts only on its own node's resources")
    if record.node is None:
        return Decision(True, "bind", f"join token {record.id} binds to node {resource_node}", node=resource_node)
    if not hmac.compare_digest(record.node.encode(), resource_node.encode()):
        return Decision(False, "wrong_node", f"this token acts only as node {record.node}")
    return Decision(True, "ok", "allowed", node=record.node)


def may_bind(record: TokenRecord, name: str, holders: Iterable[TokenRecord], now: float) -> Decision:
    """Whether join token ``record`` may take node name ``name``: not while another live token holds it."""
    for other in holders:
        if other.id == record.id or other.node != name or other.revoked_at is not None or other.expired(now):
            continue
        return Decision(False, "taken", f"node name {name} is held by another identity (token {other.id})")
    return Decision(True, "bind", f"token {record.id} binds to node {name}", node=name)


def parse_duration(text: str) -> float:
    """``"3600"``, ``"90m"``, ``"12h"``, ``"30d"``, ``"2w"`` → seconds (for ``--ttl``)."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValidationError(f"ttl: {text[:40]!r} is not a duration (e.g. 3600, 90m, 12h, 30d, 2w)", field="ttl")
    return float(int(match.group(1)) * _UNITS[match.group(2)])
