"""Streaming a container's stdout and stderr as batches of lines (the driver's I/O, no decisions).

One reader thread per stream takes the engine's messages; one thread splits them into lines and hands over
whatever has accumulated meanwhile in one call, so a chatty task costs one outbox entry per batch, not per
line, and a quiet one still streams line by line. The engine can end a follow stream before the container's
last message (typically an unterminated last line), so once it ends the messages from the last one seen on are
read again (one short request) and the new ones delivered too.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from updraft.agent.runtime import ContainerRuntime, Stream

log = logging.getLogger("updraft.agent.logs")
Lines = list[tuple[Stream, float, str]]
_END = None


def _read(runtime: ContainerRuntime, cid: str, stream: Stream, since: float | None,
          out: queue.Queue[tuple[Stream, float, bytes] | None]) -> None:
    last, at_last = 0.0, 0  # the newest message's time, and how many messages carried it
    try:
        for frame in runtime.logs(cid, stream, True, since):
            last, at_last = (frame.at, at_last + 1) if frame.at == last else (frame.at, 1)
            out.put((stream, frame.at, frame.data))
        skip = at_last  # ``since`` is inclusive: those messages come again first
        again = last - 1e-6 if last else since  # a float cannot hold nanoseconds exactly: a little earlier
        for frame in runtime.logs(cid, stream, False, again):
            if frame.at < last:
                continue
            if frame.at == last and skip > 0:
                skip -= 1
                continue
            out.put((stream, frame.at, frame.data))
    except Exception as exc:  # logs are best effort; the result is reported regardless
        log.debug("%s of %s ended: %s", stream, cid[:12], exc)
    finally:
        out.put(_END)


def follow(runtime: ContainerRuntime, cid: str, since: float | None, on_lines: Callable[[Lines], None],
           on_end: Callable[[], None]) -> None:
    """Start following ``cid``'s output; ``on_end`` once both streams ended and every line was handed over."""
    frames: queue.Queue[tuple[Stream, float, bytes] | None] = queue.Queue(maxsize=4096)
    for stream in ("stdout", "stderr"):
        threading.Thread(target=_read, args=(runtime, cid, stream, since, frames), name=f"logs-{cid[:12]}",
                         daemon=True).start()

    def deliver() -> None:
        partial: dict[Stream, tuple[float, bytes]] = {}
        open_streams = 2
        try:
            while open_streams:
                batch = [frames.get()]
                with contextlib.suppress(queue.Empty):
                    while len(batch) < 2000:
                        batch.append(frames.get_nowait())
                lines: Lines = []
                for item in batch:
                    if item is _END:
                        open_streams -= 1
                        continue
                    stream, at, data = item
                    _, head = partial.pop(stream, (at, b""))
                    *complete, rest = (head + data).split(b"\n")
                    lines.extend((stream, at, ln.decode("utf-8", "replace")) for ln in complete)
                    if rest:
                        partial[stream] = (at, rest)
                if not open_streams:  # an unterminated last line is still a line
                    lines.extend((st, at, rest.decode("utf-8", "replace")) for st, (at, rest) in partial.items())
                if lines:
                    on_lines(lines)
        finally:
            on_end()

    threading.Thread(target=deliver, name=f"lines-{cid[:12]}", daemon=True).start()
