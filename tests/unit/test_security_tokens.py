"""Tokens, roles and the permission table (security/tokens.py) and secret redaction (security/redaction.py)."""

from __future__ import annotations

import itertools

import pytest
from builders import task

from updraft.errors import Forbidden, Unauthorized, ValidationError
from updraft.model import TaskSpec
from updraft.security import (
    PERMISSIONS,
    REDACTED,
    Action,
    Role,
    TokenRecord,
    authenticate,
    authorize,
    bearer,
    generate,
    hash_token,
    may_bind,
    parse_duration,
    redact_task,
    scrub_secrets,
    token_id,
)

NOW = 1_000_000.0


def store_of(*records: TokenRecord) -> dict[str, TokenRecord]:
    return {r.id: r for r in records}


def test_a_token_is_shown_once_and_stored_only_hashed() -> None:
    token, record = generate(Role.SUBMITTER, NOW, ttl=3600)
    assert token.startswith("upd_") and token_id(token) == record.id
    assert len(token.removeprefix(f"upd_{record.id}_")) == 43  # 256 bits, base64url (which may hold "_")
    assert record.hash == hash_token(token) and token not in record.model_dump_json()
    assert "hash" not in record.public() and token not in repr(record)
    assert record.expires_at == NOW + 3600


def test_tokens_are_unique() -> None:
    tokens = {generate(Role.ADMIN, NOW)[0] for _ in range(200)}
    assert len(tokens) == 200


def test_authenticate() -> None:
    token, record = generate(Role.OPERATOR, NOW, ttl=60)
    lookup = store_of(record).get
    assert authenticate(token, lookup, NOW) == (record, authenticate(token, lookup, NOW)[1])
    assert authenticate(token, lookup, NOW)[1].allowed
    cases = {
        None: "missing",
        "": "missing",
        "s3cret": "malformed",
        token[:-1] + ("A" if token[-1] != "A" else "B"): "unknown",  # right id, wrong secret
        generate(Role.OPERATOR, NOW)[0]: "unknown",  # an id the store does not know
    }
    for presented, code in cases.items():
        got, decision = authenticate(presented, lookup, NOW)
        assert got is None and decision.code == code and decision.status == 401
        assert isinstance(decision.error(), Unauthorized)
    assert authenticate(token, lookup, NOW + 60)[1].code == "expired"
    revoked = record.model_copy(update={"revoked_at": NOW})
    assert authenticate(token, store_of(revoked).get, NOW)[1].code == "revoked"


def test_bearer_header() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer(None) is None and bearer("Basic abc") is None and bearer("Bearer ") is None


# -- the table ---------------------------------------------------------------------------------------------
EXPECTED = {
    Role.ADMIN: set(Action),
    Role.OPERATOR: {"submit", "read-task", "cancel", "read-node", "node-admin", "read-metrics", "read-docs"},
    Role.SUBMITTER: {"submit", "read-task", "cancel", "read-docs"},
    Role.NODE: {"node-agent"},
    Role.METRICS: {"read-metrics"},
}


@pytest.mark.parametrize(
    ("role", "action"), list(itertools.product(Role, Action)), ids=lambda v: str(v)
)
def test_the_permission_table(role: Role, action: Action) -> None:
    _, record = generate(role, NOW, node="edge-1" if role is Role.NODE else None)
    decision = authorize(record, action, resource_node="edge-1")
    assert decision.allowed is (action in EXPECTED[role])
    if not decision.allowed:
        assert decision.status == 403 and isinstance(decision.error(), Forbidden)
        with pytest.raises(Forbidden):
            decision.check()


def test_only_admin_reads_secrets_and_manages_tokens() -> None:
    assert [r for r in Role if Action.READ_SECRETS in PERMISSIONS[r]] == [Role.ADMIN]
    assert [r for r in Role if Action.TOKEN_ADMIN in PERMISSIONS[r]] == [Role.ADMIN]


def test_a_node_token_acts_only_as_its_own_node() -> None:
    _, a = generate(Role.NODE, NOW, node="a")
    assert authorize(a, Action.NODE_AGENT, "a").allowed
    b = authorize(a, Action.NODE_AGENT, "b")
    assert not b.allowed and b.code == "wrong_node" and b.status == 403
    assert not authorize(a, Action.NODE_AGENT, None).allowed
    assert not authorize(a, Action.READ_TASK).allowed and not authorize(a, Action.SUBMIT).allowed


def test_a_join_token_binds_once_and_cannot_take_a_held_name() -> None:
    _, join = generate(Role.NODE, NOW)
    _, holder = generate(Role.NODE, NOW, node="edge-1")
    first = authorize(join, Action.NODE_AGENT, "edge-2")
    assert first.allowed and first.code == "bind" and first.node == "edge-2"
    assert may_bind(join, "edge-2", [join, holder], NOW).allowed
    taken = may_bind(join, "edge-1", [join, holder], NOW)
    assert not taken.allowed and taken.code == "taken" and taken.status == 403
    # a revoked or expired holder no longer holds the name
    assert may_bind(join, "edge-1", [holder.model_copy(update={"revoked_at": NOW})], NOW).allowed
    assert may_bind(join, "edge-1", [holder.model_copy(update={"expires_at": NOW})], NOW).allowed
    bound = join.model_copy(update={"node": "edge-2"})
    assert authorize(bound, Action.NODE_AGENT, "edge-2").code == "ok"
    assert not authorize(bound, Action.NODE_AGENT, "edge-1").allowed


def test_generate_refuses_nonsense() -> None:
    with pytest.raises(ValidationError):
        generate(Role.SUBMITTER, NOW, node="edge-1")
    with pytest.raises(ValidationError):
        generate(Role.ADMIN, NOW, ttl=0)
    with pytest.raises(ValidationError):
        generate(Role.ADMIN, NOW, ttl=float("inf"))


@pytest.mark.parametrize(("text", "seconds"), [("3600", 3600), ("90m", 5400), ("12h", 43200), ("30d", 2592000),
                                               ("2w", 1209600), ("1s", 1)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "0", "-1h", "1y", "1.5h", "9" * 20, "h"])
def test_parse_duration_refuses(bad: str) -> None:
    with pytest.raises(ValidationError):
        parse_duration(bad)


# -- secrets -----------------------------------------------------------------------------------------------
def test_secret_env_is_redacted_for_every_role_but_admin() -> None:
    t = task(env={"MODE": "fast"}, secret_env={"DB_PASSWORD": "hunter22"})
    for role in (Role.OPERATOR, Role.SUBMITTER, Role.NODE, Role.METRICS, None):
        shown = redact_task(t, role)
        assert shown.spec.secret_env == {"DB_PASSWORD": REDACTED} and shown.spec.env == {"MODE": "fast"}
        assert "hunter22" not in shown.model_dump_json()
        assert shown.id == t.id and shown.revision == t.revision
    assert redact_task(t, Role.ADMIN).spec.secret_env == {"DB_PASSWORD": "hunter22"}
    assert t.spec.container_env()["DB_PASSWORD"] == "hunter22"  # the container still gets it


def test_scrub_secrets() -> None:
    spec = TaskSpec(image="busybox", secret_env={"A": "hunter22", "B": "1"})
    assert scrub_secrets("exec failed: hunter22 1", spec) == f"exec failed: {REDACTED} 1"
