"""Logging: ``text`` for people, ``json`` (one object per line) for Filebeat and friends.

Every JSON line has the same keys — ``timestamp, level, component, node, task_id, attempt, trace_id,
logger, message`` — with ``null`` where a value does not apply, so a shipper's mapping never changes shape.
``task_id``, ``attempt`` (the fencing token) and ``trace_id`` come from the record (``extra=``) or, failing
that, from :func:`log_context`, which a thread or task sets once for the attempt it works on.

A line is one record, whatever the record holds: in ``text`` mode control characters in a message (a newline
in a name an attacker chose, an ANSI escape, a bidi override) are shown escaped (``\n``, ``\x1b``), and in both
modes a lone surrogate is replaced, so no value can forge a line or make a record unwritable.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from updraft.model import Event

CONTEXT_FIELDS = ("task_id", "attempt", "trace_id")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # not tab
_context: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar("updraft_log", default=None)


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Attach ``task_id=…, attempt=…, trace_id=…`` to every record logged inside (this thread or task)."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str, node: str | None) -> None:
        super().__init__()
        self.component, self.node = component, node

    def format(self, record: logging.LogRecord) -> str:
        ctx = _context.get() or {}
        out: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": self.component,
            "node": getattr(record, "node", None) or ctx.get("node") or self.node,
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            out[field] = value if value is not None else ctx.get(field)
        out["logger"] = record.name
        out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        line = unsurrogate(json.dumps(out, default=str, ensure_ascii=False))
        return line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")  # line breaks to some readers


def unsurrogate(text: str) -> str:
    """``text`` encodable as UTF-8: a lone surrogate becomes ``?`` (the stream would refuse the whole line)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def escape_controls(text: str) -> str:
    """One line: control characters shown as escapes (``\n``, ``\x1b``, ``\u202e``), surrogates replaced."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), unsurrogate(text))


class TextFormatter(logging.Formatter):
    """The text format, one record per line: the message and its context are escaped (see module doc).

    A traceback (``exc_info``) is appended below as usual — it is written by our code, not chosen by a caller.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        record.ctx = escape_controls(str(getattr(record, "ctx", "")))
        return super().formatMessage(record)


class _TextContext(logging.Filter):
    """In text mode, suffix a record with its task and attempt, when it has them."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get() or {}
        task = getattr(record, "task_id", None) or ctx.get("task_id")
        attempt = getattr(record, "attempt", None)
        attempt = ctx.get("attempt") if attempt is None else attempt
        record.ctx = f" [{task}/{attempt}]" if task and attempt is not None else (f" [{task}]" if task else "")
        return True


def setup_logging(fmt: str = "text", level: str = "INFO", component: str = "updraft", node: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(component, node))
    else:
        prefix = f"{component}[{node}]" if node else component
        prefix = escape_controls(prefix).replace("%", "%%")
        handler.setFormatter(TextFormatter(f"%(asctime)s %(levelname)-7s {prefix} %(name)s:%(ctx)s %(message)s"))
        handler.addFilter(_TextContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "docker", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class EventLog:
    """A service listener: every committed event becomes one log line (``updraft.events``, INFO)."""

    def __init__(self) -> None:
        self.log = logging.getLogger("updraft.events")

    def __call__(self, event: Event) -> None:
        if self.log.isEnabledFor(logging.INFO):
            self.log.info(
                "%s: %s",
                event.kind,
                event.message,
                extra={"task_id": event.task_id, "attempt": event.token, "node": event.node, "event": event.kind},
            )
