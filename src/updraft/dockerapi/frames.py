"""The byte formats of Docker's output streams: the multiplexing header, log timestamps, log selection.

Without a terminal (``docker run`` without ``-t``), attach and logs interleave stdout and stderr on one
connection; each chunk is preceded by an 8-byte header — the stream (1 stdout, 2 stderr), three zero bytes,
and the payload length as a big-endian uint32 — which the client's ``stdcopy`` splits apart again.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

STDOUT = 1
STDERR = 2
STREAMS = {"stdout": STDOUT, "stderr": STDERR}
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def read_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The inverse of :func:`frame` over a whole buffer (tests and tools)."""
    out, i = [], 0
    while i + 8 <= len(data):
        stream, size = struct.unpack(">BxxxL", data[i : i + 8])
        out.append((stream, data[i + 8 : i + 8 + size]))
        i += 8 + size
    return out


def rfc3339(at: float) -> str:
    """Docker's timestamp form (RFC 3339 with nanoseconds, UTC): ``2026-12-02T00:05:10.123456000Z``."""
    stamp = datetime.fromtimestamp(at, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond:06d}000Z"


def iso(at: float | None) -> str:
    """The form of ``Created``/``StartedAt``; Docker's zero time when unknown."""
    return rfc3339(at) if at else "0001-01-01T00:00:00Z"


def log_bytes(line: Mapping[str, Any], timestamps: bool) -> bytes:
    """One log line (``{stream, at, data}`` from the control plane, without its newline) as output bytes."""
    text = str(line["data"]) + "\n"
    if timestamps:
        text = f"{rfc3339(float(line['at']))} {text}"
    return text.encode()


def encode_lines(lines: Iterable[Mapping[str, Any]], streams: frozenset[str], timestamps: bool,
                 multiplexed: bool = True) -> bytes:
    """The wanted streams' lines, framed (no terminal) or raw."""
    out = bytearray()
    for line in lines:
        name = str(line.get("stream", "stdout"))
        if name not in streams:
            continue
        data = log_bytes(line, timestamps)
        out += frame(STREAMS.get(name, STDOUT), data) if multiplexed else data
    return bytes(out)


def parse_since(value: str | None) -> float | None:
    """``since``/``until``: Unix seconds with an optional fraction; 0 or empty means unset."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from updraft.errors import ValidationError

        raise ValidationError(f"invalid value for since/until: {value!r} (Unix seconds)", field="since") from None
    return seconds or None


def parse_tail(value: str | None) -> int | None:
    """``tail``: a line count, or ``all``/empty for everything."""
    if not value or value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        from updraft.errors import ValidationError

        raise ValidationError(f"invalid value for tail: {value!r} (a number or all)", field="tail") from None
    return None if n < 0 else n


def select(lines: list[dict[str, Any]], since: float | None, until: float | None) -> list[dict[str, Any]]:
    return [ln for ln in lines if (since is None or ln["at"] >= since) and (until is None or ln["at"] <= until)]
