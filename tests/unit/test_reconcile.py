"""Reconciliation in the agent's state machine: assignments and observed containers in, actions out."""

from __future__ import annotations

from agent_harness import Harness, assignment, container, of, statuses

from updraft.agent import events as ev


def test_nothing_to_do_when_docker_matches_the_assignments() -> None:
    h = Harness()
    h.boot(containers=(container("a"),))
    out = h.assign(assignment("a"))
    assert not of(out, ev.Pull) and not of(out, ev.Stop) and not of(out, ev.Create)


def test_starts_what_is_assigned_and_not_observed() -> None:
    h = Harness()
    h.boot()
    assert [p.key for p in of(h.assign(assignment("a"), assignment("b", 2)), ev.Pull)] == [("a", 1), ("b", 2)]
    assert not of(h.assign(assignment("a"), assignment("b", 2), index=2), ev.Pull)  # not twice


def test_stale_tokens_are_never_started() -> None:
    h = Harness()
    h.boot()
    h.send(ev.HeartbeatAnswered(h.clock.monotonic(), stale=(("a", 1),)))
    assert not of(h.assign(assignment("a")), ev.Pull)


def test_an_attempt_unassigned_while_pulling_is_never_created() -> None:
    h = Harness()
    h.boot()
    h.assign(assignment("a"))
    h.assign(index=2)
    assert not of(h.send(ev.ImagePulled(("a", 1), "i", None)), ev.Create)


def test_an_attempt_unassigned_while_starting_is_stopped_once_it_runs() -> None:
    h = Harness()
    h.boot()
    h.assign(assignment("a"))
    h.send(ev.ImagePulled(("a", 1), "i", None))
    h.assign(index=2)
    assert of(h.started(("a", 1), "ca"), ev.Stop)[0].container_id == "ca"


def test_mixed_reconcile_after_a_restart() -> None:
    h = Harness()
    keep, gone, old = container("keep"), container("gone", 2), container("old", running=False, exit_code=1)
    h.boot(containers=(keep, gone, old))
    out = h.assign(assignment("keep"), assignment("new", 3))
    assert of(out, ev.Stop) == [ev.Stop(("gone", 2), gone.container_id, 1.0, "no longer assigned to this node")]
    assert [p.key for p in of(out, ev.Pull)] == [("new", 3)]
    assert [s["exit_code"] for s in statuses(h.out, ("old", 1))] == [1]  # exited while away: its result goes


def test_a_restarted_agent_removes_a_fenced_copy_it_finds() -> None:
    h = Harness()
    h.send(ev.HeartbeatAnswered(h.clock.monotonic(), stale=(("a", 1),)))
    out = h.boot(containers=(container("a"),))
    assert of(out, ev.Remove) == [ev.Remove(("a", 1), "c-a-1")] and not of(out, ev.Wait)
