"""The agent's pure reconcile step: assignments and observed containers in, actions out."""

from __future__ import annotations

from builders import spec

from updraft.agent.reconcile import Key, Observed, Start, Stop, Watch, reconcile
from updraft.model.api import Assignment


def want(task_id: str, token: int) -> Assignment:
    return Assignment(task_id=task_id, token=token, spec=spec())


def seen(task_id: str, token: int, running: bool = True) -> Observed:
    return Observed(task_id=task_id, token=token, container_id=f"c-{task_id}-{token}", running=running)


def run(
    desired: list[Assignment] = [],  # noqa: B006 - never mutated
    observed: list[Observed] = [],  # noqa: B006
    finished: set[Key] | None = None,
    watched: set[Key] | None = None,
    stale: set[Key] | None = None,
) -> list[Start | Stop | Watch]:
    return reconcile(desired, observed, finished or set(), watched or set(), stale)


def test_nothing_to_do() -> None:
    assert run() == []
    assert run([want("a", 1)], [seen("a", 1)], watched={("a", 1)}) == []


def test_starts_what_is_assigned_and_not_observed() -> None:
    a, b = want("a", 1), want("b", 2)
    assert run([a, b]) == [Start(a), Start(b)]


def test_does_not_start_twice_what_it_already_follows() -> None:
    assert run([want("a", 1)], watched={("a", 1)}) == []


def test_never_restarts_a_finished_attempt() -> None:
    assert run([want("a", 1)], finished={("a", 1)}) == []
    # a new attempt of the same task is a different key and does start
    b = want("a", 2)
    assert run([b], finished={("a", 1)}) == [Start(b)]


def test_stops_running_containers_that_are_not_assigned() -> None:
    actions = run([], [seen("a", 1)])
    assert actions == [Stop("c-a-1", "a", 1, "no longer assigned to this node")]


def test_fencing_stops_the_old_attempt_and_starts_the_new_one() -> None:
    new = want("a", 5)
    actions = run([new], [seen("a", 4)], watched={("a", 4)})
    assert Stop("c-a-4", "a", 4, "no longer assigned to this node") in actions
    assert Start(new) in actions and len(actions) == 2


def test_stale_tokens_are_stopped_even_if_still_listed() -> None:
    # the server said (a, 1) is superseded before the assignment list caught up
    actions = run([want("a", 1)], [seen("a", 1)], watched={("a", 1)}, stale={("a", 1)})
    assert actions == [Stop("c-a-1", "a", 1, "superseded by a newer attempt")]
    assert run([want("a", 1)], stale={("a", 1)}) == []  # and never started


def test_re_adopted_containers_are_watched() -> None:
    obs = seen("a", 1)
    assert run([want("a", 1)], [obs]) == [Watch(obs)]  # after an agent restart: follow, do not restart


def test_exited_unassigned_containers_are_watched_for_their_result() -> None:
    done = seen("a", 1, running=False)
    assert run([], [done]) == [Watch(done)]
    assert run([], [done], watched={("a", 1)}) == []


def test_a_stopped_but_assigned_container_is_not_restarted() -> None:
    done = seen("a", 1, running=False)
    assert run([want("a", 1)], [done], finished={("a", 1)}) == [Watch(done)]
    assert run([want("a", 1)], [done], finished={("a", 1)}, watched={("a", 1)}) == []


def test_mixed_reconcile() -> None:
    keep, new = want("keep", 1), want("new", 3)
    observed = [seen("keep", 1), seen("gone", 2), seen("old", 1, running=False)]
    actions = run([keep, new], observed, watched={("keep", 1)})
    assert actions == [
        Stop("c-gone-2", "gone", 2, "no longer assigned to this node"),
        Watch(observed[2]),
        Start(new),
    ]
