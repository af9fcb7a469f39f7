"""CPU weights of an agent's containers: requests as Kubernetes maps them, the spare CPU to the oldest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from updraft.agent.cpu import CpuBook, Running, cpu_weights, request_shares, usable_millis


def row(cid: str, started: float, request: int = 100, limited: bool = False) -> Running:
    return Running(cid, started, request, limited)


def test_requests_map_to_weights_as_in_kubernetes() -> None:
    assert request_shares(100) == 102
    assert request_shares(1000) == 1024
    assert request_shares(1) == 2  # the kernel's minimum
    assert request_shares(0) == 1024  # no request: Docker's default weight


def test_the_oldest_container_gets_the_unrequested_cpu() -> None:
    weights = cpu_weights([row("b", 2.0), row("a", 1.0), row("c", 3.0)], 1000)
    assert weights == {"a": 1024 - 2 * 102, "b": 102, "c": 102}


def test_shared_keeps_kubernetes_weights() -> None:
    assert cpu_weights([row("a", 1.0), row("b", 2.0)], 1000, "shared") == {"a": 102, "b": 102}


def test_a_container_with_a_cpu_limit_is_passed_over() -> None:
    weights = cpu_weights([row("a", 1.0, limited=True), row("b", 2.0)], 1000)
    assert weights == {"a": 102, "b": 1024 - 102}


def test_no_spare_cpu_means_requests_only() -> None:
    rows = [row(str(i), float(i), request=300) for i in range(4)]  # 1200m requested of 1000m
    assert set(cpu_weights(rows, 1000).values()) == {307}


@given(
    st.lists(st.tuples(st.integers(0, 4000), st.booleans()), min_size=1, max_size=12),
    st.integers(100, 16000),
)
def test_every_container_keeps_at_least_its_guaranteed_share(rows: list[tuple[int, bool]], capacity: int) -> None:
    """Weights are relative: a container's share under full contention is its weight over the sum. Giving the
    spare to one container never pushes another below the share its request guarantees on this node."""
    running = [Running(str(i), float(i), req, limited) for i, (req, limited) in enumerate(rows)]
    weights = cpu_weights(running, capacity)
    total = sum(weights.values())
    requested = {r.container_id: request_shares(r.request_millis) for r in running}
    guaranteed_total = max(capacity * 1024 // 1000, sum(requested.values()))
    for cid, weight in weights.items():
        assert weight >= requested[cid]
        assert weight / total >= requested[cid] / guaranteed_total - 1e-9


def test_usable_cpu_is_the_smallest_of_declared_cpuset_and_host() -> None:
    assert usable_millis(None, None, 4) == 4000
    assert usable_millis(500, "0", 4) == 500
    assert usable_millis(None, "0-1,3", 8) == 3000
    assert usable_millis(4000, "1", 8) == 1000


def test_weights_follow_containers_as_they_start_and_end() -> None:
    cpu = CpuBook(1000, "oldest")
    assert cpu.started(row("a", 1.0), applied=102) == [("a", 1024)]  # alone: all of it
    assert cpu.started(row("b", 2.0), applied=102) == [("a", 1024 - 102)]
    assert cpu.applied == {"a": 922, "b": 102}
    assert cpu.ended("a") == [("b", 1024)] and cpu.applied == {"b": 1024}
    assert cpu.ended("a") == []


def test_a_failed_update_is_made_again_on_the_next_change() -> None:
    cpu = CpuBook(1000, "oldest")
    assert cpu.started(row("a", 1.0), applied=102) == [("a", 1024)]
    cpu.failed("a")  # docker away
    assert cpu.started(row("b", 2.0), applied=102) == [("a", 922)]
    assert cpu.applied == {"a": 922, "b": 102}


def test_a_new_container_is_created_with_the_weight_it_will_have() -> None:
    cpu = CpuBook(1000, "oldest")
    lone = row("a", 1.0)
    assert cpu.weight_if_started(lone) == 1024  # alone: all of the node's weight, set at creation
    assert cpu.started(lone, applied=1024) == []  # nothing to update once it runs
    newer = row("b", 2.0)
    assert cpu.weight_if_started(newer) == 102
    assert cpu.started(newer, applied=102) == [("a", 922)]  # only the oldest's spare shrinks
