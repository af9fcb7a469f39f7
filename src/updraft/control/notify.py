"""Wake-ups for long-polls and the scheduler loop, within the server's event loop.

Each topic ("node:edge-1", "task:t-…", "logs:t-…", "scheduler") has a version that moves on every change;
a waiter passes the version it last saw and returns as soon as it differs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

WAKE_CHUNK = 64


class Notifier:
    def __init__(self) -> None:
        self._versions: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, list[asyncio.Future[None]]] = defaultdict(list)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that owns the waiters; notifications from other threads are handed to it."""
        self._loop = loop

    def version(self, topic: str) -> int:
        return self._versions[topic]

    def waiting(self, topic: str) -> bool:
        """Whether a long-poll waits on ``topic`` now (a hint, read from any thread)."""
        return bool(self._waiters.get(topic))

    def notify(self, *topics: str) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:  # e.g. a sync route in the thread pool: futures are not thread-safe
                loop.call_soon_threadsafe(self._notify, topics)
                return
        self._notify(topics)

    def _notify(self, topics: tuple[str, ...]) -> None:
        woken: list[asyncio.Future[None]] = []
        for topic in topics:
            self._versions[topic] += 1
            woken += self._waiters.pop(topic, [])
        self._wake(woken)

    def _wake(self, futures: list[asyncio.Future[None]]) -> None:
        """Wake at most ``WAKE_CHUNK`` waiters per turn of the loop. A plan that places a thousand tasks wakes
        a thousand long-polls at once; woken together they would hold the loop for a whole burst, and a
        heartbeat or probe that arrives meanwhile would wait behind all of them. Versions have moved already,
        so a waiter woken a turn later still answers with the news."""
        for fut in futures[:WAKE_CHUNK]:
            if not fut.done():
                fut.set_result(None)
        if len(futures) > WAKE_CHUNK:
            futures[WAKE_CHUNK].get_loop().call_soon(self._wake, futures[WAKE_CHUNK:])

    async def wait(self, topic: str, seen: int | None, timeout: float) -> int:
        """Return the topic's version once it differs from ``seen`` (or after ``timeout``)."""
        if seen is None or self._versions[topic] != seen or timeout <= 0:
            return self._versions[topic]
        loop = asyncio.get_running_loop()
        self._loop = self._loop or loop
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters[topic].append(fut)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, timeout)
        if not fut.done():
            fut.cancel()
            waiters = self._waiters.get(topic)
            if waiters and fut in waiters:
                waiters.remove(fut)
        return self._versions[topic]
