"""Committed usage per node is kept incrementally and always equals the sum over the node's live tasks."""

from __future__ import annotations

from builders import spec
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft.control.state import ClusterState
from updraft.model import Task, TaskState
from updraft.scheduler import Usage

STATES = [TaskState.PENDING, TaskState.SCHEDULED, TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.FAILED]
SPECS = [spec(cpu="100m", memory="64Mi"), spec(cpu="2", memory="1Gi", extended={"nvidia.com/gpu": 1}),
         spec(cpu=None, memory="128Mi"), spec(cpu="500m", memory=None, cpu_limit="1")]  # fmt: skip
puts = st.lists(
    st.tuples(st.integers(0, 5), st.sampled_from(STATES), st.sampled_from([None, "n1", "n2"]), st.integers(0, 3)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(puts)
def test_usage_equals_the_sum_over_live_tasks_after_any_sequence_of_commits(
    ops: list[tuple[int, TaskState, str | None, int]],
) -> None:
    state = ClusterState()
    latest: dict[str, Task] = {}
    for revision, (i, task_state, node, which) in enumerate(ops, start=1):
        placed = node if task_state != TaskState.PENDING else None
        task = Task(id=f"t{i}", spec=SPECS[which], state=task_state, node=placed, token=revision if placed else None)
        state._put_task(task.model_copy(update={"revision": revision}))
        latest[task.id] = task
        for name in ("n1", "n2"):
            expected = Usage()  # summed afresh from the live tasks' specs, not from the state's records
            for t in latest.values():
                if t.node == name and not t.state.terminal:
                    expected = expected.plus(t.spec, started=t.state == TaskState.RUNNING)
            assert state.usage.get(name, Usage()) == expected
