"""The agent's decisions, with no I/O (in the manner of dask's worker state machine).

Inputs are what the control plane wants (assignments), what Docker has (observed containers) and what the
agent already finished; the output is a list of actions for the executor. Fencing falls out of it: a
container whose (task, token) is not assigned any more is stopped, whatever the reason — cancelled,
drained, drifted or superseded.
"""

from __future__ import annotations

from dataclasses import dataclass

from updraft.model.api import Assignment

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Observed:
    task_id: str
    token: int
    container_id: str
    running: bool


@dataclass(frozen=True, slots=True)
class Start:
    assignment: Assignment


@dataclass(frozen=True, slots=True)
class Stop:
    container_id: str
    task_id: str
    token: int
    reason: str


@dataclass(frozen=True, slots=True)
class Watch:
    """Follow a container the agent did not start in this process (re-adopted after a restart)."""

    observed: Observed


Action = Start | Stop | Watch


def reconcile(
    desired: list[Assignment],
    observed: list[Observed],
    finished: set[Key],
    watched: set[Key],
    stale: set[Key] | None = None,
) -> list[Action]:
    """What to do so that Docker matches the assignments.

    ``finished`` are attempts whose result is already in the outbox (never start them again); ``watched``
    are attempts this process already follows; ``stale`` are tokens the server told us are superseded.
    """
    stale = stale or set()
    want = {(a.task_id, a.token): a for a in desired if (a.task_id, a.token) not in stale}
    actions: list[Action] = []
    have: set[Key] = set()
    for obs in observed:
        key = (obs.task_id, obs.token)
        have.add(key)
        if key not in want:
            if obs.running:
                why = "superseded by a newer attempt" if key in stale else "no longer assigned to this node"
                actions.append(Stop(obs.container_id, obs.task_id, obs.token, why))
            elif key not in watched:
                actions.append(Watch(obs))  # exited while we were away: report its result
        elif key not in watched:
            actions.append(Watch(obs))
    for key, assignment in want.items():
        if key not in have and key not in finished and key not in watched:
            actions.append(Start(assignment))
    return actions
