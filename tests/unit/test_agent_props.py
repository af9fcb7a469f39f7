"""Properties of the agent's state machine under any order of events (Hypothesis)."""

from __future__ import annotations

from agent_harness import Harness, assignment, container
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft.agent import events as ev
from updraft.agent.state import Config

TASKS = ["a", "b", "c", "d"]
Step = tuple[str, int]
steps = st.lists(st.tuples(st.sampled_from(["assign", "unassign", "pull", "start", "exit", "tick", "deliver",
                                            "fail", "stale", "cutoff"]), st.integers(0, 3)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_never_two_starts_of_one_attempt_never_more_than_a_slot_and_deliveries_in_order(plan: list[Step]) -> None:
    h = Harness(Config(node="n1", cpu_millis=1000))
    h.boot()
    assigned: set[str] = set()
    created: dict[tuple[str, int], str] = {}
    starting: set[tuple[str, int]] = set()
    running: dict[tuple[str, int], str] = {}
    fenced: set[tuple[str, int]] = set()
    delivered: list[int] = []
    index = 1

    def note(out: list[ev.Instruction]) -> None:
        for i in out:
            if isinstance(i, ev.Create):
                assert i.key not in created, f"{i.key} created twice"
                assert i.key not in fenced, f"{i.key} created after it was fenced"
                created[i.key] = f"c-{i.key[0]}"
                starting.add(i.key)
                assert len(starting) <= 1, "more starts at once than the node has cpus"

    for action, n in plan:
        task = TASKS[n]
        key = (task, 1)
        index += 1
        if action in ("assign", "unassign"):
            (assigned.add if action == "assign" else assigned.discard)(task)
            note(h.assign(*[assignment(t) for t in sorted(assigned)], index=index))
        elif action == "pull":
            note(h.send(ev.ImagePulled(key, "i", None)))
        elif action == "start" and key in starting:
            starting.discard(key)
            running[key] = created[key]
            note(h.send(ev.ContainerStarted(key, container(task, container_id=created[key]))))
        elif action == "fail" and key in starting:
            starting.discard(key)
            note(h.send(ev.StartFailed(key, "boom")))
        elif action == "exit" and key in running:
            note(h.exited(key, running.pop(key)))
        elif action == "stale":
            fenced.add(key)
            note(h.send(ev.HeartbeatAnswered(h.clock.monotonic(), stale=(key,))))
        elif action == "cutoff":
            note(h.tick(1.5))
        elif action == "deliver":
            pending = [i for i in h.out if isinstance(i, ev.Deliver)]
            h.out.clear()
            while pending:  # answer every request, and the ones each answer lets go
                seqs = [x.seq for x in pending.pop(0).entries]
                assert seqs == sorted(seqs) and (not delivered or seqs[0] > delivered[-1]), "out of order"
                delivered.extend(seqs)
                out = h.send(ev.Delivered(tuple(seqs), ev.Outcome.OK))
                note(out)
                pending += [i for i in out if isinstance(i, ev.Deliver)]
                h.out.clear()
        else:
            note(h.tick(0.3))
    assert not [x for x in h.m.outbox if x.key in fenced], "a fenced attempt's entries are still queued"
