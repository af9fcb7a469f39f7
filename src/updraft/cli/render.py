"""Rich tables for the CLI."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from updraft.cli.nodes import capacity_text
from updraft.model import Event, Node, Task

console = Console()
STATE_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "running": "cyan",
    "scheduled": "blue",
    "pending": "yellow",
    "cancelled": "magenta",
    "ready": "green",
    "suspect": "yellow",
    "unreachable": "red",
}


def _t(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3] if ts else "-"


def _styled(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


def tasks_table(tasks: list[Task]) -> None:
    table = Table("ID", "IMAGE", "STATE", "ORIGIN", "NODE", "WHY", box=None)
    for t in tasks:
        att = t.current
        table.add_row(
            t.id,
            t.spec.image,
            _styled(t.state),
            t.spec.origin or "-",
            t.node or (att.node if att else "-"),
            (t.reason or "")[:70],
        )
    console.print(table)


def nodes_table(nodes: list[Node]) -> None:
    table = Table("NAME", "STATE", "CPU", "MEM", "CAPACITY", "TAGS", "TAINTS", "FLAGS", box=None)
    for n in nodes:
        flags = ",".join(
            f for f, on in (("cordoned", n.cordoned), ("draining", n.draining), ("offloading", n.offloading)) if on
        )
        table.add_row(
            n.name,
            _styled(n.state),
            f"{n.metrics.cpu_pct:.0f}%",
            f"{n.metrics.memory_pct:.0f}%",
            capacity_text(n),
            ",".join(n.tags) or "-",
            ",".join(str(t) for t in n.taints) or "-",
            flags or "-",
        )
    console.print(table)


def task_detail(task: Task, events: list[Event]) -> None:
    console.print(f"[bold]{task.id}[/bold]  {_styled(task.state)}  {task.reason}")
    console.print(task.spec.model_dump_json(indent=2, exclude_defaults=True))
    table = Table(
        "TOKEN", "NODE", "PLACEMENT", "STATE", "STARTED", "FINISHED", "EXIT", "OOM", "ERROR", box=None, title="attempts"
    )
    for a in task.attempts:
        table.add_row(
            str(a.token),
            a.node,
            a.placement,
            _styled(a.state),
            _t(a.started_at),
            _t(a.finished_at),
            "-" if a.exit_code is None else str(a.exit_code),
            "yes" if a.oom_killed else "-",
            a.error or "-",
        )
    console.print(table)
    ev = Table("TIME", "EVENT", "NODE", "TOKEN", "MESSAGE", box=None, title="events")
    for e in events:
        ev.add_row(_t(e.at), e.kind, e.node or "-", str(e.token or "-"), e.message)
    console.print(ev)
