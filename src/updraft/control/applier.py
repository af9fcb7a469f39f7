"""The one plan applier (DESIGN.md, decision 1).

The scheduler decided on a snapshot; by now the store may have moved. The applier re-reads each target node
and the attempts committed on it, re-checks feasibility, and commits the surviving placements in one
transaction whose compares are the tasks' revisions. A placement that no longer holds is dropped, and the task
stays pending for the next pass (Nomad's partial plan apply).
"""

from __future__ import annotations

import logging

from updraft.errors import Conflict
from updraft.model import ACTIVE, Attempt, Event, Task, TaskState
from updraft.scheduler import Plan, Usage, filters
from updraft.store import Store, Txn

log = logging.getLogger("updraft.applier")


def committed_usage(store: Store) -> dict[str, Usage]:
    usage: dict[str, Usage] = {}
    for task in store.list_tasks(ACTIVE, limit=1_000_000):
        if task.node:
            started = task.state == TaskState.RUNNING
            usage[task.node] = usage.get(task.node, Usage()).plus(task.spec, started=started)
    return usage


def _kind(placement: str) -> str:
    return {"offload": "offloaded", "local": "placed-local"}.get(placement, "placed")


def apply_plan(store: Store, plan: Plan, now: float) -> tuple[list[Task], list[Event]]:
    """Commit what still holds; return the tasks that were placed and the events recorded."""
    usage = committed_usage(store)
    txn = Txn()
    placed: list[Task] = []
    tokens = iter(store.next_tokens(len(plan.placements))) if plan.placements else iter(())
    for p in plan.placements:
        task, node = store.get_task(p.task_id), store.get_node(p.node)
        if task is None or node is None or task.state != TaskState.PENDING:
            continue
        u = usage.get(node.name, Usage())
        why = filters.check(node, task.spec, u)
        if why is not None:
            log.info("dropping placement of %s on %s: %s", task.id, node.name, why)
            continue
        usage[node.name] = u.plus(task.spec)
        token = next(tokens)
        attempt = Attempt(token=token, node=node.name, placement=p.placement, reason=p.reason, created_at=now)
        new = task.model_copy(
            update={
                "state": TaskState.SCHEDULED,
                "node": node.name,
                "token": token,
                "attempts": [*task.attempts, attempt],
                "reason": p.reason,
                "updated_at": now,
            }
        )
        kind, message = _kind(p.placement), p.reason
        if task.reason.startswith("drifted from "):
            origin_node, _, why = task.reason.removeprefix("drifted from ").partition(": ")
            kind, message = "migrated", f"drifted from {origin_node} to {node.name}: {why}"
        txn.put_task(new).event(Event(at=now, kind=kind, message=message, task_id=task.id, node=node.name, token=token))
        placed.append(new)
    for d in plan.deferrals:
        task = store.get_task(d.task_id)
        if task is not None and task.state == TaskState.PENDING and task.reason != d.reason:
            txn.put_task(task.model_copy(update={"reason": d.reason, "updated_at": now}))
            txn.event(Event(at=now, kind="deferred", message=d.reason, task_id=task.id))
    for name, mode in plan.offload_mode.items():
        node = store.get_node(name)
        if node is not None and node.offloading != mode:
            txn.put_node(node.model_copy(update={"offloading": mode}))
            verb = "entered" if mode else "left"
            txn.event(Event(at=now, kind="offload-mode", message=f"{name} {verb} offload mode", node=name))
    if not (txn.tasks or txn.nodes or txn.events):
        return [], []
    try:
        store.commit(txn)
    except Conflict as exc:
        log.info("plan conflicted (%s); the next pass will retry", exc.message)
        return [], []
    return placed, txn.events
