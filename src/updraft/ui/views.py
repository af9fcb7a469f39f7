"""What each page shows, as data: pure functions from the control plane's values to rows (no I/O, no HTML).

The templates only lay these out, so what a page says (which node is over a threshold, which tasks a filter
keeps, how a flow is drawn) is tested without a server or a browser, as ``cli/top.py``'s ``Frame`` is.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from updraft.model import Event, EventKind, Node, Task, TaskState
from updraft.scheduler.policy import Policy

NEAR = 0.8
"""A bar is drawn ``near`` from this fraction of its threshold on, ``over`` at the threshold."""


@dataclass(frozen=True)
class Bar:
    """A load in percent drawn against the policy threshold that makes its node offload."""

    pct: int
    threshold: float

    @property
    def level(self) -> str:
        if self.pct >= self.threshold:
            return "over"
        return "near" if self.pct >= NEAR * self.threshold else "ok"

    @property
    def width(self) -> int:
        return max(0, min(100, self.pct))

    @property
    def mark(self) -> int:
        """Where the threshold is drawn, in whole percent."""
        return max(0, min(100, round(self.threshold)))


def age_text(seconds: float) -> str:
    """A heartbeat's age as the Fleet page shows it (``ui.js`` redraws it each second the same way)."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class FleetRow:
    """One node as the Fleet page shows it. Two rows compare equal when the page would look the same (the
    heartbeat's age is drawn by the browser from ``heartbeat``), so a live update sends only changed rows."""

    name: str
    state: str
    cordoned: bool
    draining: bool
    offloading: bool
    cpu: Bar
    memory: Bar
    tags: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    taints: tuple[str, ...]
    running: int
    tasks: tuple[str, ...]
    jitter_ms: int
    heartbeat: float = field(default=0.0, compare=False)
    rtt_ms: int | None = field(default=None, compare=False)
    """The agent's last heartbeat round trip; like ``heartbeat``, not a reason to redraw the row."""
    """Not compared: a heartbeat moves it every second; the page is sent the time alone (``fleet_beats``)."""

    @property
    def flags(self) -> tuple[str, ...]:
        on = (("offloading", self.offloading), ("cordoned", self.cordoned), ("draining", self.draining))
        return tuple(name for name, flag in on if flag)

    @property
    def search(self) -> str:
        """What the filter box matches against (lower case)."""
        parts = [self.name, self.state, *self.flags, *self.tags, *(f"{k}={v}" for k, v in self.labels), *self.taints]
        return " ".join(parts).lower()

    @property
    def dom_id(self) -> str:
        return "node-" + self.name


TASKS_SHOWN = 5
"""Task ids listed per node row (the count says how many there are)."""


def taint_text(key: str, value: str, effect: str) -> str:
    return f"{key}={value}:{effect}" if value else f"{key}:{effect}"


def fleet_row(node: Node, tasks: Sequence[str], policy: Policy, jitter: float = 0.0) -> FleetRow:
    """``tasks``: the ids of the live tasks placed on the node."""
    return FleetRow(
        name=node.name,
        state=str(node.state),
        cordoned=node.cordoned,
        draining=node.draining,
        offloading=node.offloading,
        cpu=Bar(round(node.metrics.cpu_pct), policy.threshold_cpu),
        memory=Bar(round(node.metrics.memory_pct), policy.threshold_memory),
        tags=tuple(node.tags),
        labels=tuple(sorted(node.labels.items())),
        taints=tuple(taint_text(t.key, t.value, str(t.effect)) for t in node.taints),
        running=len(tasks),
        tasks=tuple(sorted(tasks)[:TASKS_SHOWN]),
        heartbeat=node.last_heartbeat,
        jitter_ms=round(jitter * 1000),
        rtt_ms=round(node.metrics.rtt * 1000) if node.metrics.rtt is not None else None,
    )


def fleet_rows(
    nodes: Iterable[Node],
    on_node: Callable[[str], Sequence[str]],
    policy: Policy,
    jitter: Callable[[str], float] = lambda name: 0.0,
) -> list[FleetRow]:
    """Every node, by name; ``on_node`` gives the ids of a node's live tasks, ``jitter`` its heartbeat delay
    allowance."""
    return [fleet_row(n, on_node(n.name), policy, jitter(n.name)) for n in sorted(nodes, key=lambda n: n.name)]


def fleet_beats(before: Mapping[str, float], rows: Sequence[FleetRow]) -> dict[str, float]:
    """Heartbeat times that moved since ``before`` (node → time): sent alone, the row is not redrawn."""
    return {r.name: r.heartbeat for r in rows if before.get(r.name) != r.heartbeat}


def fleet_changes(
    before: Mapping[str, FleetRow], rows: Sequence[FleetRow]
) -> tuple[list[FleetRow], list[str]]:
    """Rows that differ from what the browser shows, and names of nodes it shows that are gone."""
    changed = [r for r in rows if before.get(r.name) != r]
    names = {r.name for r in rows}
    return changed, sorted(n for n in before if n not in names)


@dataclass(frozen=True)
class FleetSummary:
    nodes: int
    by_state: dict[str, int]
    offloading: int
    cordoned: int
    running: int


def fleet_summary(rows: Sequence[FleetRow]) -> FleetSummary:
    return FleetSummary(
        nodes=len(rows),
        by_state=dict(Counter(r.state for r in rows)),
        offloading=sum(r.offloading for r in rows),
        cordoned=sum(r.cordoned for r in rows),
        running=sum(r.running for r in rows),
    )


# -- tasks -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskFilter:
    """The Tasks page's filters: a state, a node, an origin, and a search by id or image."""

    state: TaskState | None = None
    node: str = ""
    origin: str = ""
    q: str = ""

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> TaskFilter:
        """From query parameters; an unknown state is ignored rather than refused (it is a filter form)."""
        raw = params.get("state", "")
        state = TaskState(raw) if raw in TaskState.__members__.values() else None
        return cls(
            state=state,
            node=params.get("node", "").strip()[:253],
            origin=params.get("origin", "").strip()[:253],
            q=params.get("q", "").strip()[:200],
        )

    def matches(self, task: Task) -> bool:
        if self.state is not None and task.state != self.state:
            return False
        if self.node and task.node != self.node:
            return False
        if self.origin and task.spec.origin != self.origin:
            return False
        if self.q:
            q = self.q.lower()
            hay = (task.id, task.spec.image, task.image_tag or "")
            return any(q in h.lower() for h in hay)
        return True

    def apply(self, tasks: Iterable[Task], limit: int) -> list[Task]:
        out = []
        for t in tasks:
            if self.matches(t):
                out.append(t)
                if len(out) >= limit:
                    break
        return out


TONES: dict[EventKind, str] = {
    EventKind.OFFLOADED: "offload",
    EventKind.MIGRATED: "offload",
    EventKind.DRIFTED: "warn",
    EventKind.DEFERRED: "warn",
    EventKind.RETRY: "warn",
    EventKind.STALE_REPORT: "warn",
    EventKind.NOT_READY: "warn",
    EventKind.RESTARTED: "warn",
    EventKind.IMAGE_PIN_DEFERRED: "warn",
    EventKind.IMAGE_UNVERIFIED: "warn",
    EventKind.SUCCEEDED: "good",
    EventKind.READY: "good",
    EventKind.NODE_READY: "good",
    EventKind.FAILED: "bad",
    EventKind.CANCELLED: "bad",
    EventKind.IMAGE_PIN_FAILED: "bad",
    EventKind.NODE_SUSPECT: "warn",
    EventKind.NODE_UNREACHABLE: "bad",
    EventKind.NODE_CORDONED: "warn",
    EventKind.NODE_DRAINING: "warn",
}


def tone(kind: EventKind) -> str:
    """The colour family an event is drawn in (CSS class ``tone-…``)."""
    return TONES.get(kind, "info")


def spec_text(task: Task) -> str:
    """The spec as people read it: JSON without the defaults (secrets must already be redacted)."""
    return json.dumps(task.spec.model_dump(mode="json", exclude_defaults=True), indent=2, sort_keys=True)


# -- flows -----------------------------------------------------------------------------------------------------
LOCAL = "local"


@dataclass(frozen=True)
class Flow:
    """One decision: a task from ``origin`` (None: submitted with none) placed on ``target`` (None: deferred)."""

    at: float
    task_id: str
    origin: str | None
    target: str | None
    kind: str
    code: str | None


@dataclass
class FlowPair:
    origin: str
    target: str
    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)

    @property
    def offloaded(self) -> bool:
        return self.origin != self.target and self.origin != NO_ORIGIN


NO_ORIGIN = "(no origin)"


@dataclass
class FlowSummary:
    since: float
    pairs: list[FlowPair]
    deferred: Counter[str]
    kinds: Counter[str]
    codes: Counter[str]

    @property
    def placed(self) -> int:
        return sum(p.count for p in self.pairs)


def summarize_flows(flows: Iterable[Flow], since: float) -> FlowSummary:
    """Placements since ``since`` grouped by (origin, target), with their kinds and reason codes; deferrals
    counted by code."""
    pairs: dict[tuple[str, str], FlowPair] = {}
    deferred: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    for f in flows:
        if f.at < since:
            continue
        code = f.code or "-"
        if f.target is None:
            deferred[code] += 1
            continue
        origin = f.origin or NO_ORIGIN
        pair = pairs.setdefault((origin, f.target), FlowPair(origin, f.target))
        pair.count += 1
        pair.kinds[f.kind] += 1
        pair.codes[code] += 1
        kinds[f.kind] += 1
        codes[code] += 1
    ordered = sorted(pairs.values(), key=lambda p: (-p.count, p.origin, p.target))
    return FlowSummary(since, ordered, deferred, kinds, codes)


@dataclass(frozen=True)
class Box:
    name: str
    y: float
    height: float
    count: int


@dataclass(frozen=True)
class Link:
    origin: str
    target: str
    count: int
    path: str
    width: float
    offloaded: bool
    title: str


@dataclass(frozen=True)
class FlowPicture:
    width: int
    height: int
    origins: list[Box]
    targets: list[Box]
    links: list[Link]


def flow_picture(summary: FlowSummary, width: int = 760, row: int = 28, max_nodes: int = 40) -> FlowPicture:
    """A two-column Sankey: origins on the left, targets on the right, a band per pair as wide as its count.

    At most ``max_nodes`` boxes a side (the busiest); the rest are folded into "(other)".
    """

    def side(counts: Counter[str]) -> list[tuple[str, int]]:
        top = counts.most_common()
        if len(top) <= max_nodes:
            return sorted(top)
        kept = top[: max_nodes - 1]
        return [*sorted(kept), ("(other)", sum(c for _, c in top[max_nodes - 1 :]))]

    left: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for p in summary.pairs:
        left[p.origin] += p.count
        right[p.target] += p.count
    lefts, rights = side(left), side(right)
    keep_l, keep_r = {n for n, _ in lefts}, {n for n, _ in rights}
    height = max(len(lefts), len(rights), 1) * row + 10
    band = row * 0.7
    busiest = max([c for _, c in lefts] + [c for _, c in rights] + [1])
    scale = band / busiest  # the busiest box is filled by its bands; widths are the same at both ends

    def boxes(items: list[tuple[str, int]]) -> dict[str, Box]:
        return {name: Box(name, 5 + i * row, band, count) for i, (name, count) in enumerate(items)}

    lb, rb = boxes(lefts), boxes(rights)
    x0, x1 = 180, width - 180
    links: dict[tuple[str, str], tuple[int, bool, Counter[str]]] = {}
    for p in summary.pairs:
        o = p.origin if p.origin in keep_l else "(other)"
        t = p.target if p.target in keep_r else "(other)"
        count, off, codes = links.get((o, t), (0, False, Counter()))
        links[(o, t)] = (count + p.count, off or p.offloaded, codes + p.codes)
    # Bands leave each origin and reach each target stacked, in the order of the other end (fewer crossings).
    used_l: dict[str, float] = dict.fromkeys(lb, 0.0)
    used_r: dict[str, float] = dict.fromkeys(rb, 0.0)
    order = sorted(links.items(), key=lambda kv: (lb[kv[0][0]].y, rb[kv[0][1]].y))
    drawn = []
    for (o, t), (count, off, codes) in order:
        w = count * scale
        y0 = lb[o].y + used_l[o] + w / 2
        y1 = rb[t].y + used_r[t] + w / 2
        used_l[o] += w
        used_r[t] += w
        mid = (x0 + x1) / 2
        path = f"M{x0},{y0:.1f} C{mid:.1f},{y0:.1f} {mid:.1f},{y1:.1f} {x1},{y1:.1f}"
        why = ", ".join(f"{c} {code}" for code, c in codes.most_common())
        drawn.append(Link(o, t, count, path, max(1.5, w), off, f"{o} → {t}: {count} ({why})"))
    return FlowPicture(width, height, list(lb.values()), list(rb.values()), drawn)


def flow_of(event: Event, origin: str | None) -> Flow | None:
    """The flow a committed event records, if it is a placement or a deferral."""
    kind = EventKind(event.kind)
    if event.task_id is None:
        return None
    if kind in (EventKind.PLACED, EventKind.PLACED_LOCAL, EventKind.OFFLOADED, EventKind.MIGRATED):
        return Flow(event.at, event.task_id, origin, event.node, str(kind), event.code)
    if kind is EventKind.DEFERRED:
        return Flow(event.at, event.task_id, origin, None, str(kind), event.code)
    return None
