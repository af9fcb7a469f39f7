"""The agent's side of the link: delivery of its durable outbox, and self-fencing when cut off.

Delivery is oldest first, consecutive log lines of one attempt batched. A 409 (stale token) fences the
attempt; an unknown task or a refused entry is dropped with a warning; a transport failure stops the round and
the entry is retried, in order, once the link is back.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from updraft.errors import NotFound, StaleToken, TransportError, Unavailable, UpdraftError
from updraft.observe import tracing as otrace

if TYPE_CHECKING:
    from updraft.agent.runner import Agent

log = logging.getLogger("updraft.agent")


def sender_loop(agent: Agent) -> None:
    """Drain the outbox whenever something is queued; back off while the link is down."""
    backoff = 0.2
    while not agent.stop_event.is_set():
        agent.outbox.changed.wait(1.0)
        agent.outbox.changed.clear()
        try:
            while deliver(agent):
                pass
            backoff = 0.2
        except (TransportError, Unavailable) as exc:
            log.debug("outbox delivery paused: %s", exc)
            agent.stop_event.wait(backoff)
            backoff = min(backoff * 2, 5.0)
            agent.outbox.changed.set()


def deliver(agent: Agent) -> bool:
    """Send the oldest entries (consecutive log lines of one attempt in one request). True if any."""
    entries = agent.outbox.peek()
    if not entries:
        return False
    seq, kind, task_id, token, body = entries[0]
    seqs = [seq]
    if kind == "log":
        lines = list(body["lines"])
        size = sum(len(ln["data"]) for ln in lines)
        for s2, k2, t2, tok2, b2 in entries[1:]:
            if (k2, t2, tok2) != ("log", task_id, token) or len(lines) > 2000 or size > 256 * 1024:
                break  # well within the API's limits (10000 lines, 1 MiB bodies)
            lines.extend(b2["lines"])
            size += sum(len(ln["data"]) for ln in b2["lines"])
            seqs.append(s2)
        body = {"lines": lines}
    path = f"/v1/tasks/{task_id}/attempts/{token}/{ {'log': 'logs', 'probe': 'probes'}.get(kind, 'status') }"
    parent = agent.traces.get((task_id, token))
    span = (
        agent.tracing.start("report", parent, {"updraft.task_id": task_id, "updraft.state": body["state"]}, "client")
        if kind == "status"
        else otrace.Span(parent)
    )
    headers = {"traceparent": span.traceparent} if span.traceparent else None
    outcome = "ok"
    try:
        agent.client.post(path, json=body, idempotent=True, headers=headers)
    except StaleToken:
        agent.metrics.report(kind, "stale")
        agent.fence(task_id, token, "the control plane answered 409: stale token")
        return True
    except NotFound:
        outcome = "dropped"
        log.warning("dropping %s for unknown task %s", kind, task_id)
    except (TransportError, Unavailable) as exc:
        span.fail(str(exc))
        raise
    except UpdraftError as exc:
        outcome = "dropped"
        log.warning("dropping %s for %s: refused: %s", kind, task_id, exc)
    finally:
        span.end()
    agent.metrics.report(kind, outcome)
    if kind == "status" and body["state"] != "running":
        agent.traces.pop((task_id, token), None)
    agent.outbox.ack(seqs)
    return True


def fence_watch_loop(agent: Agent) -> None:
    """``on_disconnect: stop``: a cut-off agent stops its own copy once cut off for ``stop_after``.

    A thread of its own, so a heartbeat stuck in a dead connection cannot delay it."""
    stop_afters: dict[str, float | None] = {}
    while not agent.stop_event.wait(0.2):
        silent = agent.clock.monotonic() - agent.last_contact
        if silent <= 2 * agent.settings.heartbeat_interval:
            continue
        agent.contact(False)
        with agent.lock:
            watched = [(key, cid) for key, cid in agent.watched.items() if cid]
        for (task_id, token), cid in watched:
            if cid not in stop_afters:
                stop_afters[cid] = agent.executor.stop_after(cid)
            limit = stop_afters[cid]
            if limit is not None and silent >= limit:
                log.warning(
                    "self-fencing %s token %s: cut off for %.1f s ≥ stop_after %g s", task_id, token, silent, limit
                )
                agent.executor.stop(cid, grace=0)
                stop_afters[cid] = None
