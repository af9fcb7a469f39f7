"""A simulated fleet for the dashboard's scale test: nodes that speak the agents' wire protocol, no Docker.

As ``bench/load.py`` does: ``PUT /v1/nodes/{name}`` once per node, then heartbeats with a CPU load that moves
on every beat, each node once per ``interval`` (spread evenly over it), from one asyncio loop in a thread, with
``bench/_http1``'s small client (httpx's per-request cost would let the beats fall behind on 2 busy cores).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from bench._http1 import Connection, ProtocolError

CAPACITY = {"cpu": "4", "memory": "8Gi"}
ZONES = ("a", "b", "c", "d")
WORKERS = 8


def node_name(i: int) -> str:
    return f"sim-{i:04d}"


def registration(i: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "capacity": CAPACITY,
        "tags": ["edge"] if i % 3 else ["low-util"],
        "labels": {"zone": ZONES[i % len(ZONES)], "rack": f"r{i % 17}"},
    }
    if i % 10 == 0:
        body["taints"] = [{"key": "maintenance", "value": "soon", "effect": "PreferNoSchedule"}]
    return body


def load_at(i: int, beat: int) -> tuple[float, float]:
    """A CPU load that changes on every beat (some nodes over the 75 % threshold), and a memory load."""
    return float((i * 37 + beat * 11) % 100), float((i * 13) % 90)


class SimulatedFleet:
    def __init__(
        self, url: str, n: int, interval: float, skip: frozenset[str] = frozenset(),
        headers: dict[str, str] | None = None,
    ) -> None:
        """``headers``: the credentials the nodes present (the tests use the admin's, allowed every action)."""
        self.url, self.n, self.interval, self.skip = url, n, interval, skip
        self.headers = headers or {}
        self.beats = 0
        self.errors = 0
        self.latency_ms: list[float] = []
        """Each answered heartbeat's round trip, as this client saw it (``bench/ui.py`` reads and resets it)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, concurrency: int = 32) -> None:
        async def run() -> None:
            sem = asyncio.Semaphore(concurrency)
            async with httpx.AsyncClient(base_url=self.url, timeout=30, headers=self.headers) as http:

                async def one(i: int) -> None:
                    async with sem:
                        r = await http.put(f"/v1/nodes/{node_name(i)}", json=registration(i))
                        r.raise_for_status()

                await asyncio.gather(*(one(i) for i in range(self.n)))

        # In a thread of its own: Playwright's sync API keeps an event loop running in the caller's.
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _capture(errors, lambda: asyncio.run(run())))
        thread.start()
        thread.join()
        if errors:
            raise errors[0]

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._beat_all()), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    async def _beat_all(self) -> None:
        """``WORKERS`` connections, each beating its share of the nodes in turn, paced over the interval."""
        names = [(i, node_name(i)) for i in range(self.n) if node_name(i) not in self.skip]
        shares = [names[w::WORKERS] for w in range(WORKERS)]
        await asyncio.gather(*(self._worker(share) for share in shares if share))

    async def _worker(self, share: list[tuple[int, str]]) -> None:
        url = httpx.URL(self.url)
        conn = Connection(url.host, url.port or 80)
        loop = asyncio.get_running_loop()
        step = self.interval / len(share)
        beat, start = 0, loop.time()
        try:
            while not self._stop.is_set():
                for k, (i, name) in enumerate(share):
                    if self._stop.is_set():
                        return
                    delay = start + (beat * len(share) + k) * step - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    cpu, mem = load_at(i, beat)
                    sent = loop.time()
                    try:
                        reply = await conn.request(
                            "POST", f"/v1/nodes/{name}/heartbeat", {"cpu_pct": cpu, "memory_pct": mem},
                            headers=self.headers, timeout=10,
                        )
                        ok = reply.status == 200
                    except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError):
                        ok = False
                    if ok:
                        self.beats += 1
                        self.latency_ms.append((loop.time() - sent) * 1000)
                    else:
                        self.errors += 1
                beat += 1
        finally:
            conn.close()


def _capture(errors: list[BaseException], fn: Any) -> None:
    try:
        fn()
    except BaseException as exc:  # handed to the calling thread
        errors.append(exc)
