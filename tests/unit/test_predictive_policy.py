"""The predictive offload policy: forecasts offload early, transient spikes are held back (pure)."""

from __future__ import annotations

from builders import NOW, node, policy, snapshot, task

from updraft.clock import FakeClock
from updraft.control.service import ControlService
from updraft.model.api import Heartbeat
from updraft.scheduler import schedule

EDGE = "edge-1"


def nodes(cpu: float) -> list:
    return [node(EDGE, tags=["edge"], cpu_pct=cpu), node("cloud-1", tags=["low-util"], cpu="8", memory="16Gi")]


def one(
    cpu: float, forecasts: dict[str, str] | None = None, transients: dict[str, str] | None = None
) -> tuple[str, str]:
    snap = snapshot(nodes(cpu), [task("t", origin=EDGE, cpu_limit="100m")], None, forecasts)
    snap = type(snap)(**{**snap.__dict__, "transients": transients or {}})
    plan = schedule(snap, policy(predictive=True), NOW)
    (p,) = plan.placements
    return p.node, p.reason


def test_a_forecast_offloads_below_the_threshold() -> None:
    where, why = one(60.0, forecasts={EDGE: "cpu trend +1.0%/s, crosses 75% in ~15 s (p=0.90)"})
    assert where == "cloud-1" and "origin predicted to overload" in why


def test_a_transient_spike_over_the_threshold_is_held_back() -> None:
    where, why = one(95.0, transients={EDGE: "cpu one-sample spike"})
    assert where == EDGE and why.startswith("local: held back") and "transient" in why


def test_without_prediction_the_same_spike_offloads() -> None:
    where, _ = one(95.0)
    assert where == "cloud-1"


def _service(tmp_path, predictive: bool) -> ControlService:  # type: ignore[no-untyped-def]
    from builders import registration

    from updraft.settings import ServerSettings
    from updraft.store import SqliteStore

    clock = FakeClock()
    settings = ServerSettings(data_dir=tmp_path, policy={"predictive": predictive, "horizon_seconds": 30})
    svc = ControlService(SqliteStore(tmp_path / "db"), settings, clock)
    svc.register(EDGE, registration(tags=["edge"]))
    svc.register("cloud-1", registration(tags=["low-util"], cpu="8"))
    return svc


def test_a_ramping_origin_is_offloaded_before_it_crosses_when_predictive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    on, off = _service(tmp_path / "on", True), _service(tmp_path / "off", False)
    for svc in (on, off):
        clock = svc.clock
        assert isinstance(clock, FakeClock)
        for second in range(40):  # 30% → 69%: a steady 1 %/s climb, still under 75 %
            svc.heartbeat(EDGE, Heartbeat(cpu_pct=30 + second, memory_pct=20))
            clock.advance(1.0)
    assert "cpu" in on.forecaster.forecasts.get(EDGE, "")
    from builders import spec

    for svc, expected in ((on, "cloud-1"), (off, EDGE)):
        task, _ = svc.submit(spec(origin=EDGE))
        svc.schedule_once()
        assert svc.task(task.id).node == expected, svc.task(task.id).reason
