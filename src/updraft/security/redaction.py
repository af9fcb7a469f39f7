"""Secret task environment (issue 15, item 7): values in ``TaskSpec.secret_env`` reach only the container.

They are set in the container like ``env`` (the agent uses :meth:`TaskSpec.container_env`), returned whole
only to roles allowed ``read-secrets`` (admin) and to the node that runs the attempt (its assignments), and
shown to everyone else as :data:`REDACTED`. No event or log line carries a spec's environment; the names of
secret variables are not secret and stay visible, so a user can see *that* a task has a ``DB_PASSWORD``.
"""

from __future__ import annotations

from collections.abc import Iterable

from updraft.model import Task, TaskSpec
from updraft.security.tokens import PERMISSIONS, Action, Role

REDACTED = "<redacted>"


def may_see_secrets(role: Role | None) -> bool:
    return role is not None and Action.READ_SECRETS in PERMISSIONS[role]


def redact_spec(spec: TaskSpec) -> TaskSpec:
    if not spec.secret_env:
        return spec
    return spec.model_copy(update={"secret_env": dict.fromkeys(spec.secret_env, REDACTED)})


def redact_task(task: Task, role: Role | None) -> Task:
    """``task`` as ``role`` may see it: secret values replaced unless the role may read secrets."""
    if may_see_secrets(role) or not task.spec.secret_env:
        return task
    return task.model_copy(update={"spec": redact_spec(task.spec)})


def redact_tasks(tasks: Iterable[Task], role: Role | None) -> list[Task]:
    return [redact_task(t, role) for t in tasks]


def scrub_secrets(text: str, spec: TaskSpec) -> str:
    """``text`` with every secret value of ``spec`` (of 4 characters or more) replaced by :data:`REDACTED`.

    For text built from a spec that must be logged or stored in an event (an error that echoes a command line,
    say). Short values are left alone: replacing every ``1`` in a message would hide more than it protects.
    """
    for value in sorted(spec.secret_env.values(), key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    return text
