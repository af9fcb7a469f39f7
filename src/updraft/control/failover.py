"""What the failure detector's reports lead to: node states recorded, then due tasks drifted.

The detector (``detector.py``) only measures; these two passes, run by the server's detector loop, record
what it says through the service layer and hand the unreachable nodes' tasks back to the scheduler. Both
read the in-memory state only, so a pass over thousands of nodes costs no store read.
"""

from __future__ import annotations

from updraft.control.service import ControlService
from updraft.model import ACTIVE, DriftCause, NodeState


def check_nodes(service: ControlService) -> None:
    """Ask the failure detector about every node; record what changed. Reporting only."""
    d = service.detector
    known = set(d.nodes())
    for node in list(service.state.nodes.values()):
        if node.name not in known:
            d.restart(node.name)  # e.g. after a server restart: grant a fresh grace period
            continue
        state = d.state(node.name)
        if state == node.state or state == NodeState.READY:
            continue
        service.set_node_state(
            node.name,
            state,
            f"node {node.name} {state}: no heartbeat for {d.silence(node.name):.1f} s "
            f"(φ={d.phi(node.name):.1f}; delay allowance {d.delay_slack(node.name):.2f} s)",
        )


def drift(service: ControlService) -> int:
    """Requeue the tasks of unreachable nodes once their wait is over; the scheduler places them.

    A task pinned to the unreachable node (offloadable: false, origin there) stays: no other node may run
    it, and its agent re-adopts the container when it is back.
    """
    now = service.clock.now()
    moved = 0
    for node in list(service.state.nodes.values()):
        if node.state != NodeState.UNREACHABLE:
            continue
        silence = now - node.last_heartbeat
        for live in service.state.on_node(node.name):
            if live.state not in ACTIVE or live.pinned_to == node.name:
                continue
            task = service.store.get_task(live.id)
            if task is None:
                continue
            wait = task.spec.reschedule_after
            wait = service.settings.reschedule_after if wait is None else wait
            due = now - node.state_since >= wait
            if task.spec.on_disconnect == "stop" and task.spec.stop_after is not None:
                due = due and silence >= task.spec.stop_after + service.settings.stop_margin
            if due:
                service.requeue(task, DriftCause.UNREACHABLE, f"{node.name} unreachable for {silence:.1f} s")
                moved += 1
    return moved
