"""Probe verdicts and single checks (the schedule and the restarts are the state machine's: test_agent_state)."""

from __future__ import annotations

from updraft.agent.probes import Verdict, check
from updraft.model.spec import Probe


def test_verdict_flips_after_thresholds() -> None:
    probe = Probe(kind="tcp", port=1, failure_threshold=3, success_threshold=2)
    live = Verdict(probe, passing=True)
    assert [live.observe(ok) for ok in (False, False, True, False, False)] == [False] * 5  # a success resets
    assert live.observe(False) and not live.passing
    assert not live.observe(True) and live.observe(True) and live.passing


class Target:
    def __init__(self, code: int | None) -> None:
        self.code = code

    def pid(self) -> int | None:
        return None

    def address(self) -> str | None:
        return None

    def exec(self, command: list[str], timeout: float) -> int | None:
        return self.code


def test_exec_checks_read_the_exit_code_and_never_raise() -> None:
    probe = Probe(kind="exec", command=["true"], timeout_seconds=2)
    assert check(probe, Target(0)) == (True, "exit code 0")
    assert check(probe, Target(1)) == (False, "exit code 1")
    assert check(probe, Target(None)) == (False, "timed out after 2 s")
    assert check(Probe(kind="tcp", port=80), Target(0)) == (False, "the container has no network address")
