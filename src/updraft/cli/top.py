"""``updraft top``: a live view of a burst — each node's load against the offload thresholds, and each task
with where it ran and why. It reads the HTTP API only (nodes, tasks, policy), once per ``--interval``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from updraft.cli.render import STATE_STYLE

if TYPE_CHECKING:
    from updraft.model import Node, Task
    from updraft.sdk import Client

PLACEMENT_STYLE = {"offload": "bold magenta", "local": "green", "anywhere": "blue"}
BAR = 20


@dataclass
class Frame:
    """One refresh worth of data, so rendering is a pure function (and testable without a server)."""

    nodes: list[Node]
    tasks: list[Task]
    policy: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


def fetch(client: Client, limit: int) -> Frame:
    active = [t for state in ("pending", "scheduled", "running") for t in client.list(state=state, limit=10_000)]
    recent = client.list(limit=limit)
    counts = Counter(t.state.value for t in active)
    seen = {t.id for t in recent}
    tasks = recent + [t for t in active if t.id not in seen]
    policy = client.http.get("/v1/policy").json()
    return Frame(client.nodes(), tasks, policy, dict(counts))


def load_bar(pct: float, threshold: float) -> Text:
    """``████████│░░░░  62% / 75%``: the fill is the load, the bar mark is the threshold."""
    filled = max(0, min(BAR, round(pct / 100 * BAR)))
    mark = max(0, min(BAR - 1, round(threshold / 100 * BAR)))
    style = "red" if pct >= threshold else "yellow" if pct >= 0.8 * threshold else "green"
    bar = Text()
    for i in range(BAR):
        if i == mark:
            bar.append("│", style="bold white")
        else:
            bar.append("█" if i < filled else "░", style=style if i < filled else "grey37")
    bar.append(f" {pct:3.0f}% / {threshold:.0f}%", style=style)
    return bar


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def nodes_table(frame: Frame) -> Table:
    cpu_t, mem_t = float(frame.policy.get("threshold_cpu", 75)), float(frame.policy.get("threshold_memory", 80))
    running = Counter(t.node for t in frame.tasks if t.state in ("scheduled", "running") and t.node)
    table = Table(title="nodes", title_justify="left", box=None, expand=False)
    for col in ("NODE", "STATE", "CPU", "MEMORY", "TASKS", "HEARTBEAT", "TAGS", "FLAGS"):
        table.add_column(col, no_wrap=True)
    for n in sorted(frame.nodes, key=lambda n: n.name):
        flags = [
            f for f, on in (("offloading", n.offloading), ("cordoned", n.cordoned), ("draining", n.draining)) if on
        ]
        table.add_row(
            n.name,
            Text(n.state.value, style=STATE_STYLE.get(n.state.value, "")),
            load_bar(n.metrics.cpu_pct, cpu_t),
            load_bar(n.metrics.memory_pct, mem_t),
            str(running.get(n.name, 0)),
            _age(max(0.0, frame.at - n.last_heartbeat)) + " ago",
            ",".join(n.tags) or "-",
            Text(",".join(flags) or "-", style="bold magenta" if n.offloading else ""),
        )
    return table


def _why(t: Task) -> str:
    """Why it runs where it runs (the placement's reason); for a waiting or failed task, what holds it."""
    att = t.current
    if att is None or t.state == "pending":
        return t.reason[:160]
    if t.state == "failed" and att.error:
        return f"{att.reason} — {att.error}"[:160]
    return att.reason[:160]


def tasks_table(frame: Frame, limit: int) -> Table:
    table = Table(title="tasks (newest first)", title_justify="left", box=None, expand=False)
    for col in ("TASK", "STATE", "WHERE", "HOW", "READY", "RESTARTS", "AGE", "WHY"):
        table.add_column(col, no_wrap=col != "WHY", overflow="fold" if col == "WHY" else "ellipsis")
    for t in sorted(frame.tasks, key=lambda t: -t.created_at)[:limit]:
        att = t.current
        origin = t.spec.origin or "*"
        node = t.node or (att.node if att else None)
        where = f"{origin} → {node}" if node and node != origin else (node or origin)
        how = att.placement if att else "-"
        ready = "-" if att is None or att.ready is None else ("yes" if att.ready else "no")
        table.add_row(
            t.id,
            Text(t.state.value, style=STATE_STYLE.get(t.state.value, "")),
            where,
            Text(how, style=PLACEMENT_STYLE.get(how, "")),
            Text(ready, style="green" if ready == "yes" else "red" if ready == "no" else ""),
            str(att.restarts) if att and att.restarts else "-",
            _age(max(0.0, frame.at - t.created_at)),
            _why(t),
        )
    return table


def summary(frame: Frame) -> Text:
    p = frame.policy
    offload = "on" if p.get("enable_offload", True) else "off"
    text = Text.assemble(
        ("updraft top", "bold"),
        f"  offload {offload} · thresholds cpu {p.get('threshold_cpu', '?')}% memory {p.get('threshold_memory', '?')}%"
        f" · targets {','.join(p.get('target_node_tags', [])) or '-'}   ",
    )
    for state in ("pending", "scheduled", "running"):
        text.append(f"{state} {frame.counts.get(state, 0)}  ", style=STATE_STYLE[state])
    placements = Counter(t.current.placement for t in frame.tasks if t.current)
    text.append(f"shown: local {placements.get('local', 0)} · offloaded {placements.get('offload', 0)}", style="dim")
    return text


def render(frame: Frame, limit: int = 20) -> Group:
    return Group(summary(frame), Text(""), nodes_table(frame), Text(""), tasks_table(frame, limit))


def run(client: Client, interval: float = 1.0, limit: int = 20, once: bool = False) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if once:
        console.print(render(fetch(client, limit), limit))
        return
    from updraft.errors import UpdraftError

    frame = fetch(client, limit)
    with Live(render(frame, limit), console=console, screen=True, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                try:
                    frame = fetch(client, limit)
                except UpdraftError as exc:  # keep the last picture; say why it is not moving
                    warning = Text(f"cannot refresh: {exc.message}", style="bold red")
                    live.update(Group(warning, render(frame, limit)), refresh=True)
                    continue
                live.update(render(frame, limit), refresh=True)
        except KeyboardInterrupt:
            return
