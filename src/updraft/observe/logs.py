"""Logging: ``text`` for people, ``json`` (one object per line) for Filebeat and friends."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

CONTEXT_FIELDS = ("task_id", "attempt", "trace_id", "node")


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str, node: str | None) -> None:
        super().__init__()
        self.component, self.node = component, node

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
            "node": getattr(record, "node", None) or self.node,
        }
        for field in CONTEXT_FIELDS[:-1]:
            value = getattr(record, field, None)
            out[field] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(fmt: str = "text", level: str = "INFO", component: str = "updraft", node: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(component, node))
    else:
        prefix = f"{component}[{node}]" if node else component
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)-7s {prefix} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "docker", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
