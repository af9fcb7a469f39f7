"""Log injection: whatever a record holds, it is one line in text mode and one JSON object in json mode."""

from __future__ import annotations

import io
import json
import logging

import pytest

from updraft.observe.logs import escape_controls, log_context, setup_logging

HOSTILE = [
    "edge-1\n2026-12-02 00:00:00,000 INFO    server updraft.events: node-ready: evil",
    "a\rb",
    "\x1b[2J\x1b[31mred",
    "bidi \u202e txt.exe",
    "line\u2028sep",
    "lone \ud800 surrogate",
    "nul \x00 byte",
]


def capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    setup_logging(fmt, "INFO", component="server", node="n1\nforged")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return logging.getLogger("updraft.test"), stream


@pytest.mark.parametrize("value", HOSTILE)
def test_text_logs_keep_one_record_per_line(value: str) -> None:
    log, stream = capture("text")
    with log_context(task_id=value, attempt=3):
        log.info("node %s registered", value)
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n"), out
    assert "\r" not in out and "\x1b" not in out and "\u202e" not in out and "\x00" not in out
    out.encode("utf-8")
    assert "registered" in out


@pytest.mark.parametrize("value", HOSTILE)
def test_json_logs_keep_one_object_per_line(value: str) -> None:
    log, stream = capture("json")
    log.info("node %s registered", value, extra={"task_id": value})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"].startswith("node ") and record["node"] == "n1\nforged"
    lines[0].encode("utf-8")


def test_a_traceback_still_follows_its_record() -> None:
    log, stream = capture("text")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed for %s", "x\ny")
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("failed for x\\ny") and rest[0].startswith("Traceback")


def test_escape_controls() -> None:
    assert escape_controls("a\nb\tc") == "a\\nb\tc"
    assert escape_controls("\x1b[0m") == "\\x1b[0m"
    assert escape_controls("grüß 👋") == "grüß 👋"


def teardown_module() -> None:
    logging.getLogger().handlers[:] = []
