"""What the failure detector's reports lead to: node states recorded, then due tasks drifted.

The detector (``detector.py``) only measures; these two passes, run by the server's detector loop, record
what it says through the service layer and hand the unreachable nodes' tasks back to the scheduler.
"""

from __future__ import annotations

from updraft.control.service import ControlService
from updraft.model import ACTIVE, NodeState


def check_nodes(service: ControlService) -> None:
    """Ask the failure detector about every node; record what changed. Reporting only."""
    for node in service.store.list_nodes():
        if node.name not in service.detector.nodes():
            service.detector.restart(node.name)  # e.g. after a server restart: grant a fresh grace period
            continue
        state = service.detector.state(node.name)
        if state == node.state or (state == NodeState.READY):
            continue
        d = service.detector
        service.set_node_state(
            node.name,
            state,
            f"node {node.name} {state}: no heartbeat for {d.silence(node.name):.1f} s "
            f"(φ={d.phi(node.name):.1f}; delay allowance {d.delay_slack(node.name):.2f} s)",
        )


def drift(service: ControlService) -> int:
    """Requeue the tasks of unreachable nodes once their wait is over; the scheduler places them."""
    now = service.clock.now()
    moved = 0
    for node in service.store.list_nodes():
        if node.state != NodeState.UNREACHABLE:
            continue
        silence = now - node.last_heartbeat
        for task in service.store.list_tasks(ACTIVE, node=node.name):
            wait = task.spec.reschedule_after
            wait = service.settings.reschedule_after if wait is None else wait
            due = now - node.state_since >= wait
            if task.spec.on_disconnect == "stop" and task.spec.stop_after is not None:
                due = due and silence >= task.spec.stop_after + service.settings.stop_margin
            if due:
                service.requeue(task, f"drifted from {node.name}: {node.name} unreachable for {silence:.1f} s")
                moved += 1
    return moved
