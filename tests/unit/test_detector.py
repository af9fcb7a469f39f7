"""The φ-accrual failure detector on a FakeClock: classic behaviour, and the allowance for observed delays."""

from __future__ import annotations

from builders import registration

from updraft.clock import FakeClock
from updraft.control import ControlService
from updraft.control.detector import PhiAccrualDetector
from updraft.model import NodeState
from updraft.model.api import Heartbeat
from updraft.settings import DetectorSettings

OFFSET = 3600.0  # the agent's clock runs an hour ahead of the server's: delays are only compared, never trusted


def steady(d: PhiAccrualDetector, clock: FakeClock, beats: int, *, stamped: bool, delay: float = 0.01) -> None:
    for _ in range(beats):
        sent = clock.now() + OFFSET
        clock.advance(delay)
        d.heartbeat("n", sent_at=sent if stamped else None)
        clock.advance(1.0 - delay)


def silent_until(d: PhiAccrualDetector, clock: FakeClock, state: NodeState, limit: float = 30.0) -> float:
    """Seconds since the last heartbeat at which the detector first reports ``state`` (or worse)."""
    order = [NodeState.READY, NodeState.SUSPECT, NodeState.UNREACHABLE]
    while order.index(d.state("n")) < order.index(state):
        clock.advance(0.01)
        assert d.silence("n") < limit, f"never {state}"
    return d.silence("n")


def suspicions(d: PhiAccrualDetector, clock: FakeClock, beats: int, late_every: int, late_by: float) -> int:
    """Heartbeats every second, sent on time; every ``late_every``-th arrives ``late_by`` late (a retry).

    Returns how many times the node went from ready to suspect (checked every 10 ms, like the server loop).
    """
    count, was = 0, False
    for k in range(1, beats + 1):
        sent = clock.now() + OFFSET
        delay = late_by if k % late_every == 0 else 0.01
        for _ in range(round(delay / 0.01)):
            clock.advance(0.01)
            now = d.state("n") != NodeState.READY
            count += now and not was
            was = now
        d.heartbeat("n", sent_at=sent)
        was = False
        for _ in range(round((1.0 - 0.01) / 0.01)):  # the agent sends the next one a second after this one
            clock.advance(0.01)
            now = d.state("n") != NodeState.READY
            count += now and not was
            was = now
    return count


def test_silent_node_on_a_steady_link_is_caught_within_two_intervals() -> None:
    for stamped in (False, True):
        clock = FakeClock(1000.0)
        d = PhiAccrualDetector(DetectorSettings(), clock)
        steady(d, clock, 60, stamped=stamped)
        assert d.delay_slack("n") == 0.0  # steady delays: nothing extra, even with the clock offset
        assert 1.5 < silent_until(d, clock, NodeState.SUSPECT) < 2.0
        assert silent_until(d, clock, NodeState.UNREACHABLE) < 5.0


def test_observed_delays_keep_a_node_with_rare_retried_heartbeats_ready() -> None:
    """One heartbeat in 40 needs a retry and arrives 1.2 s late: classic φ flags each one; with delays, only the first."""
    settings = DetectorSettings()
    blind, aware = FakeClock(1000.0), FakeClock(1000.0)
    d_blind = PhiAccrualDetector(settings, blind)
    d_aware = PhiAccrualDetector(settings, aware)
    steady(d_blind, blind, 100, stamped=False)
    steady(d_aware, aware, 100, stamped=True)

    class Unstamped(PhiAccrualDetector):
        def heartbeat(self, node: str, sent_at: float | None = None) -> None:
            super().heartbeat(node)

    d_blind.__class__ = Unstamped
    assert suspicions(d_blind, blind, 400, late_every=40, late_by=1.2) >= 8
    # The first late heartbeat is a surprise for both; from then on its delay is known and allowed for.
    assert suspicions(d_aware, aware, 400, late_every=40, late_by=1.2) == 1
    assert abs(d_aware.delay_slack("n") - 1.19) < 1e-6


def test_a_node_with_a_delay_allowance_is_still_caught() -> None:
    clock = FakeClock(1000.0)
    d = PhiAccrualDetector(DetectorSettings(), clock)
    steady(d, clock, 30, stamped=True)
    sent = clock.now() + OFFSET
    clock.advance(1.0)
    d.heartbeat("n", sent_at=sent)  # one heartbeat a second late
    steady(d, clock, 30, stamped=True)
    assert abs(d.delay_slack("n") - 0.99) < 1e-6
    took = silent_until(d, clock, NodeState.SUSPECT)
    assert 2.5 < took < 3.2  # about one second later than on a clean record, and no more
    assert silent_until(d, clock, NodeState.UNREACHABLE) < 5.0


def test_allowance_is_capped_and_can_be_switched_off() -> None:
    for cap in (2.0, 0.0):
        clock = FakeClock(1000.0)
        d = PhiAccrualDetector(DetectorSettings(max_delay_slack_seconds=cap), clock)
        steady(d, clock, 5, stamped=True)
        sent = clock.now() + OFFSET
        clock.advance(30.0)  # a heartbeat held for half a minute (a healed partition releases it)
        d.heartbeat("n", sent_at=sent)
        assert d.delay_slack("n") == cap


def test_clock_step_on_the_agent_only_widens_within_the_cap() -> None:
    clock = FakeClock(1000.0)
    d = PhiAccrualDetector(DetectorSettings(), clock)
    steady(d, clock, 20, stamped=True)
    for _ in range(5):  # the agent's clock jumps back ten minutes
        sent = clock.now() + OFFSET - 600
        clock.advance(0.01)
        d.heartbeat("n", sent_at=sent)
        clock.advance(0.99)
    assert d.delay_slack("n") == 2.0
    assert d.state("n") == NodeState.READY


def test_service_passes_sent_at_to_the_detector(service: ControlService, fake_clock: FakeClock) -> None:
    service.register("n1", registration())
    for delay in (0.05, 0.05, 0.85, 0.05):
        sent = fake_clock.now()
        fake_clock.advance(delay)
        service.heartbeat("n1", Heartbeat(cpu_pct=1, memory_pct=1, sent_at=sent))
        fake_clock.advance(1.0 - delay)
    assert abs(service.detector.delay_slack("n1") - 0.8) < 1e-6


def test_reregistration_starts_a_fresh_history(service: ControlService, fake_clock: FakeClock) -> None:
    """After an agent restart the long silence must not teach the detector that 10 s gaps are normal."""
    service.register("n", registration())
    for _ in range(20):
        fake_clock.advance(1.0)
        service.heartbeat("n", Heartbeat(cpu_pct=1, memory_pct=1))
    fake_clock.advance(10.0)  # the agent was down
    service.register("n", registration())
    for _ in range(5):
        fake_clock.advance(1.0)
        service.heartbeat("n", Heartbeat(cpu_pct=1, memory_pct=1))
    fake_clock.advance(2.2)
    assert service.detector.state("n") == NodeState.UNREACHABLE


def test_the_first_heartbeat_after_registration_is_not_an_interval(
    service: ControlService, fake_clock: FakeClock
) -> None:
    """Agents heartbeat right after registering; that ~0 s gap must not widen a young history's deviation."""
    service.register("n", registration())
    fake_clock.advance(0.01)
    service.heartbeat("n", Heartbeat(cpu_pct=1, memory_pct=1))
    for _ in range(3):
        fake_clock.advance(1.0)
        service.heartbeat("n", Heartbeat(cpu_pct=1, memory_pct=1))
    fake_clock.advance(1.9)
    assert service.detector.state("n") == NodeState.UNREACHABLE
