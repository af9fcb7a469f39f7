"""Wake-ups for long-polls and the scheduler loop, within the server's event loop.

Each topic ("node:edge-1", "task:t-…", "logs:t-…", "scheduler") has a version that moves on every change;
a waiter passes the version it last saw and returns as soon as it differs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict


class Notifier:
    def __init__(self) -> None:
        self._versions: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, list[asyncio.Future[None]]] = defaultdict(list)

    def version(self, topic: str) -> int:
        return self._versions[topic]

    def notify(self, *topics: str) -> None:
        for topic in topics:
            self._versions[topic] += 1
            for fut in self._waiters.pop(topic, []):
                if not fut.done():
                    fut.set_result(None)

    async def wait(self, topic: str, seen: int | None, timeout: float) -> int:
        """Return the topic's version once it differs from ``seen`` (or after ``timeout``)."""
        if seen is None or self._versions[topic] != seen or timeout <= 0:
            return self._versions[topic]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[topic].append(fut)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, timeout)
        if not fut.done():
            fut.cancel()
            waiters = self._waiters.get(topic)
            if waiters and fut in waiters:
                waiters.remove(fut)
        return self._versions[topic]
