"""Admission control refuses submits while the event loop keeps running late because of them."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from updraft.control.edge import Admission, LoopLag


async def _call(app: Any, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def test_submits_are_refused_only_while_the_loop_is_late_and_submits_are_in_flight() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def inner(scope: Any, receive: Any, send: Any) -> None:
            await release.wait()
            await send({"type": "http.response.start", "status": 201, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        lag = LoopLag()
        gate = Admission(inner, limits={"submit": 16, "read": 4}, lag=lag, max_lag=0.05)
        lag.lag = 0.2  # late, but only one submit in flight: that one goes on
        first = asyncio.create_task(_call(gate, "POST", "/v1/tasks"))
        await asyncio.sleep(0)
        assert gate.inflight["submit"] == 1
        held = [asyncio.create_task(_call(gate, "POST", "/v1/tasks")) for _ in range(1)]  # 2 of 16 = 16 // 8
        await asyncio.sleep(0)
        status, headers, body = await _call(gate, "POST", "/v1/tasks")
        assert status == 429 and headers["retry-after"] == "1"
        assert "catching up" in json.loads(body)["message"] and json.loads(body)["code"] == "busy"
        assert json.loads(body)["details"]["cause"] == "loop-lag"
        beat = asyncio.create_task(_call(gate, "POST", "/v1/nodes/n1/heartbeat"))  # never refused
        lag.lag = 0.0
        on_time = asyncio.create_task(_call(gate, "POST", "/v1/tasks"))
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(first, *held, beat, on_time)
        assert [r[0] for r in results] == [201, 201, 201, 201]
        assert gate.refused["submit"] == 1 and gate.inflight["submit"] == 0

    asyncio.run(scenario())


def test_loop_lag_rises_while_the_loop_is_blocked_and_falls_when_it_is_free() -> None:
    async def scenario() -> None:
        lag = LoopLag()
        watcher = asyncio.create_task(lag.run())
        for _ in range(200):  # each round blocks the loop for 50 ms: the timer keeps waking ≥ 40 ms late
            time.sleep(0.05)
            await asyncio.sleep(0)
            if lag.lag > 0.02:
                break
        assert lag.lag > 0.02
        for _ in range(500):
            await asyncio.sleep(0.01)
            if lag.lag < 0.01:
                break
        assert lag.lag < 0.01
        watcher.cancel()

    asyncio.run(scenario())
