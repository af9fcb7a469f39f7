"""Who may do what, and how they prove it: tokens and roles, TLS certificates, secret redaction.

Pure or thin: :mod:`tokens` decides (no I/O), :mod:`pki` creates keys and certificates (files written by the
CLI), :mod:`redaction` hides secret task environment from roles that may not read it. Two edges are imported
by their users only (they pull in FastAPI or file I/O): :mod:`http` (the per-route guard and the token routes)
and :mod:`serving` (first admin token, unsafe listeners refused, TLS contexts). The threat model and set-up are
in docs/security.md.
"""

from updraft.security.redaction import REDACTED, may_see_secrets, redact_spec, redact_task, redact_tasks, scrub_secrets
from updraft.security.tokens import (
    PERMISSIONS,
    Action,
    Decision,
    Role,
    TokenRecord,
    authenticate,
    authorize,
    bearer,
    generate,
    hash_token,
    may_bind,
    parse_duration,
    token_id,
)

__all__ = [
    "PERMISSIONS",
    "REDACTED",
    "Action",
    "Decision",
    "Role",
    "TokenRecord",
    "authenticate",
    "authorize",
    "bearer",
    "generate",
    "hash_token",
    "may_bind",
    "may_see_secrets",
    "parse_duration",
    "redact_spec",
    "redact_task",
    "redact_tasks",
    "scrub_secrets",
    "token_id",
]
