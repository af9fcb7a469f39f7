"""The one plan applier (DESIGN.md, decision 1).

The scheduler decided on a snapshot; by now the cluster may have moved. The applier re-reads each task and
target node from the in-memory state (which mirrors every commit), re-checks feasibility against the usage
committed since, and builds one transaction whose compares are the tasks' revisions. A placement that no
longer holds is dropped and the task stays pending for the next pass (Nomad's partial plan apply); if the
store moved under the whole transaction, the commit fails with Conflict and nothing is placed.

Fencing tokens are issued here, from the state's counter, and the transaction records the floor, so a token is
never issued twice, across restarts too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from updraft.control.state import ClusterState
from updraft.model import Attempt, DriftCause, Event, EventKind, Task, TaskState
from updraft.scheduler import Plan, Usage, filters
from updraft.store import Txn

log = logging.getLogger("updraft.applier")

_KINDS = {"offload": EventKind.OFFLOADED, "local": EventKind.PLACED_LOCAL}


def apply_plan(
    state: ClusterState, plan: Plan, now: float, decided: Mapping[str, Task] | None = None
) -> tuple[Txn, list[Task]]:
    """The transaction that commits what still holds, and the tasks it places. ``decided``: the tasks the
    pass decided on, used as they are when the state still holds them pending at the same revision (so they
    are not parsed again); any other is re-read from the state."""
    txn = Txn()

    def now_pending(task_id: str) -> Task | None:
        seen, live = (decided or {}).get(task_id), state.live(task_id)
        if seen is not None and live is not None and live.state == TaskState.PENDING and live.revision == seen.revision:
            return seen
        return state.pending_task(task_id)

    placed: list[Task] = []
    usage: dict[str, Usage] = {}
    tokens = iter(state.issue("token", len(plan.placements))) if plan.placements else iter(())
    for p in plan.placements:
        task, node = now_pending(p.task_id), state.node(p.node)
        if task is None or node is None or task.state != TaskState.PENDING:
            continue
        u = usage.get(node.name) or state.usage.get(node.name, Usage())
        why = filters.check(node, task.spec, u)
        if why is not None:
            log.info("dropping placement of %s on %s: %s", task.id, node.name, why)
            continue
        usage[node.name] = u.plus(task.spec)
        token = next(tokens)
        txn.counters["token"] = token
        code = getattr(p, "code", None)
        attempt = Attempt(token=token, node=node.name, placement=p.placement, reason=p.reason, created_at=now)
        new = task.model_copy(
            update={
                "state": TaskState.SCHEDULED,
                "node": node.name,
                "token": token,
                "attempts": [*task.attempts, attempt],
                "reason": p.reason,
                "drifted_from": None,
                "drift_cause": None,
                "drift_why": "",
                "updated_at": now,
            }
        )
        kind, message = _KINDS.get(p.placement, EventKind.PLACED), p.reason
        if task.drifted_from is not None:
            kind = EventKind.MIGRATED
            why = task.drift_why or ("node drained" if task.drift_cause == DriftCause.DRAINED else "node unreachable")
            message = f"drifted from {task.drifted_from} to {node.name}: {why}; {p.reason}"
        event = Event(
            at=now, kind=kind, message=message, task_id=task.id, node=node.name, token=token,
            code=str(code) if code is not None else None,
        )
        txn.put_task(new).event(event)
        placed.append(new)
    for d in plan.deferrals:
        task = now_pending(d.task_id)
        if task is not None and task.state == TaskState.PENDING and task.reason != d.reason:
            code = getattr(d, "code", None)
            txn.put_task(task.model_copy(update={"reason": d.reason, "updated_at": now}))
            txn.event(
                Event(
                    at=now, kind=EventKind.DEFERRED, message=d.reason, task_id=task.id,
                    code=str(code) if code is not None else None,
                )
            )
    for name, mode in plan.offload_mode.items():
        node = state.node(name)
        if node is not None and node.offloading != mode:
            txn.put_node(node.model_copy(update={"offloading": mode}))
            verb = "entered" if mode else "left"
            txn.event(
                Event(
                    at=now, kind=EventKind.OFFLOAD_MODE, message=f"{name} {verb} offload mode", node=name,
                    code="offload-on" if mode else "offload-off",
                )
            )
    return txn, placed
