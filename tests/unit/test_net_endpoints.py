"""EndpointSet: smooth WRR proportions, fail_timeout bans, backups, fallback, parsing."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from updraft.clock import FakeClock
from updraft.errors import ValidationError
from updraft.net import Endpoint, EndpointSet, parse_duration, parse_server

weights_st = st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=6)


def _set(weights: list[int], clock: FakeClock | None = None, **kw: object) -> EndpointSet:
    eps = [Endpoint(f"http://n{i}:8080", weight=w, **kw) for i, w in enumerate(weights)]
    return EndpointSet(eps, clock=clock or FakeClock())


# -- smooth weighted round robin ---------------------------------------------------------------------


@given(weights_st, st.integers(min_value=1, max_value=4))
def test_each_full_cycle_has_exact_weight_proportions(weights: list[int], cycles: int) -> None:
    es = _set(weights)
    total = sum(weights)
    for _ in range(cycles):
        counts = Counter(es.pick().url for _ in range(total))
        assert counts == {f"http://n{i}:8080": w for i, w in enumerate(weights)}


@given(weights_st, st.integers(min_value=1, max_value=200))
def test_any_prefix_stays_within_one_pick_of_the_ideal_share(weights: list[int], n: int) -> None:
    """The "smooth" in smooth WRR: no burst of one server, every prefix tracks the weights."""
    es = _set(weights)
    total = sum(weights)
    counts = Counter(es.pick().url for _ in range(n))
    for i, w in enumerate(weights):
        assert abs(counts[f"http://n{i}:8080"] - n * w / total) < len(weights)


def test_nginx_reference_sequence() -> None:
    # The example from nginx's smooth WRR commit: weights a=5, b=1, c=1 → a a b a c a a.
    es = EndpointSet.parse("http://a weight=5, http://b, http://c", clock=FakeClock())
    assert [es.pick().url[7:] for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]


# -- failures and fail_timeout -----------------------------------------------------------------------


@given(
    max_fails=st.integers(min_value=1, max_value=5),
    fail_timeout=st.integers(min_value=1, max_value=120),
    frac=st.floats(min_value=0.0, max_value=1.0),
)
def test_failed_endpoint_is_skipped_for_exactly_fail_timeout(max_fails: int, fail_timeout: int, frac: float) -> None:
    # Times are multiples of 1/1024 s so the fake clock's float arithmetic is exact.
    tick = 1 / 1024
    clock = FakeClock(start=0.0)
    es = _set([1, 1], clock, max_fails=max_fails, fail_timeout=float(fail_timeout))
    bad = es.endpoints[0]
    for i in range(max_fails):
        assert es.record_failure(bad) == (i == max_fails - 1)
    last_tick = fail_timeout * 1024 - 1
    steps = int(frac * last_tick)
    clock.advance(steps * tick)  # anywhere inside the ban
    assert all(es.pick() is not bad for _ in range(4))
    clock.advance((last_tick - steps) * tick)  # the last tick before it ends
    assert all(es.pick() is not bad for _ in range(4))
    assert es.stats()[0].down
    clock.advance(tick)  # exactly fail_timeout after the ban
    assert clock.monotonic() == fail_timeout
    assert not es.stats()[0].down
    assert bad in {es.pick() for _ in range(2)}


def test_failures_spread_wider_than_fail_timeout_do_not_ban() -> None:
    clock = FakeClock()
    es = _set([1, 1], clock, max_fails=2, fail_timeout=5.0)
    ep = es.endpoints[0]
    assert not es.record_failure(ep)
    clock.advance(5.0)  # the window has closed; this failure starts a new one
    assert not es.record_failure(ep)
    clock.advance(4.9)
    assert es.record_failure(ep)


def test_success_clears_the_failure_count() -> None:
    es = _set([1], max_fails=2)
    ep = es.endpoints[0]
    es.record_failure(ep)
    es.record_success(ep)
    assert not es.record_failure(ep)


def test_probation_after_ban_one_failure_bans_again_and_success_clears() -> None:
    clock = FakeClock()
    es = _set([1, 1], clock, max_fails=3, fail_timeout=10.0)
    ep = es.endpoints[0]
    for _ in range(3):
        es.record_failure(ep)
    clock.advance(10.0)
    assert not ep.is_down(clock.monotonic())
    assert es.record_failure(ep)  # a single failure on probation
    assert ep.is_down(clock.monotonic())
    clock.advance(10.0)
    es.record_success(ep)
    assert not es.record_failure(ep)  # back to needing max_fails


def test_max_fails_zero_never_bans() -> None:
    es = _set([1], max_fails=0)
    ep = es.endpoints[0]
    assert not any(es.record_failure(ep) for _ in range(100))
    assert es.stats()[0].failures == 100


# -- backups and fallback ----------------------------------------------------------------------------


@given(
    n_primary=st.integers(min_value=1, max_value=4),
    n_backup=st.integers(min_value=1, max_value=3),
    down=st.sets(st.integers(min_value=0, max_value=6)),
)
def test_backups_serve_only_when_every_primary_is_down(n_primary: int, n_backup: int, down: set[int]) -> None:
    clock = FakeClock()
    eps = [Endpoint(f"http://p{i}") for i in range(n_primary)]
    eps += [Endpoint(f"http://b{i}", backup=True) for i in range(n_backup)]
    es = EndpointSet(eps, clock=clock)
    down = {i for i in down if i < len(eps)}
    for i in down:
        es.record_failure(eps[i])
    picks = [es.pick() for _ in range(3 * len(eps))]
    primaries_up = [e for i, e in enumerate(eps) if not e.backup and i not in down]
    backups_up = [e for i, e in enumerate(eps) if e.backup and i not in down]
    if primaries_up:
        assert {p.url for p in picks} == {e.url for e in primaries_up}
    elif backups_up:
        assert {p.url for p in picks} == {e.url for e in backups_up}
    else:  # everything down: fall back to the earliest ban expiry (all equal here → the first)
        assert all(p is picks[0] for p in picks)


def test_all_down_falls_back_to_earliest_expiry_then_recovers_on_success() -> None:
    clock = FakeClock()
    es = EndpointSet.parse("http://a fail_timeout=30s, http://b fail_timeout=10s, http://c backup", clock=clock)
    a, b, c = es.endpoints
    es.record_failure(a)
    clock.advance(1)
    es.record_failure(c)
    clock.advance(1)
    es.record_failure(b)  # b's ban ends at t+12, a's at t+30, c's at t+11
    assert es.pick() is c
    es.record_success(c)
    assert not c.is_down(clock.monotonic())
    assert es.pick() is c  # the only endpoint up is a backup


def test_exclude_prefers_untried_then_backups_then_tried() -> None:
    es = EndpointSet.parse("http://a, http://b, http://c backup", clock=FakeClock())
    assert es.pick(exclude={"http://a"}).url == "http://b"
    assert es.pick(exclude={"http://a", "http://b"}).url == "http://c"
    assert es.pick(exclude={"http://a", "http://b", "http://c"}).url in {"http://a", "http://b"}


# -- parsing -----------------------------------------------------------------------------------------


def test_parse_nginx_server_lines() -> None:
    a = parse_server("http://a:8080 weight=3 max_fails=2 fail_timeout=5s")
    assert (a.url, a.weight, a.max_fails, a.fail_timeout, a.backup) == ("http://a:8080", 3, 2, 5.0, False)
    b = parse_server("http://b:8080 backup")
    assert (b.url, b.weight, b.max_fails, b.fail_timeout, b.backup) == ("http://b:8080", 1, 1, 10.0, True)
    c = parse_server("  server 10.0.0.3:9000/ fail_timeout=1m30s;")
    assert (c.url, c.fail_timeout) == ("http://10.0.0.3:9000", 90.0)


def test_parse_comma_separated_and_env() -> None:
    spec = "http://a:8080 weight=2, https://b:8443 backup,,"
    es = EndpointSet.parse(spec)
    assert [e.url for e in es] == ["http://a:8080", "https://b:8443"]
    assert EndpointSet.from_env("SRV", environ={"SRV": spec}).endpoints[1].backup
    assert len(EndpointSet.from_env("SRV", environ={}, default="http://x")) == 1
    with pytest.raises(ValidationError):
        EndpointSet.from_env("SRV", environ={})


@pytest.mark.parametrize(
    "line",
    [
        "",
        "http://a weight=0",
        "http://a weight=x",
        "http://a max_fails=-1",
        "http://a fail_timeout=soon",
        "http://a fail_timeout=0",
        "http://a down",
        "http://a backup=yes",
        "ftp://a",
    ],
)
def test_parse_rejects_bad_lines(line: str) -> None:
    with pytest.raises(ValidationError):
        parse_server(line)


def test_duplicate_urls_rejected() -> None:
    with pytest.raises(ValidationError):
        EndpointSet.parse("http://a, http://a/")


@pytest.mark.parametrize(
    ("text", "seconds"), [("10", 10.0), ("5s", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0), ("1.5s", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@given(
    host=st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True),
    port=st.integers(min_value=1, max_value=65535),
    weight=st.integers(min_value=1, max_value=100),
    max_fails=st.integers(min_value=0, max_value=10),
    fail_timeout_ms=st.integers(min_value=1, max_value=3_600_000),
    backup=st.booleans(),
)
def test_to_line_round_trips(
    host: str, port: int, weight: int, max_fails: int, fail_timeout_ms: int, backup: bool
) -> None:
    ep = Endpoint(
        f"http://{host}:{port}", weight=weight, max_fails=max_fails, fail_timeout=fail_timeout_ms / 1000, backup=backup
    )
    again = parse_server(ep.to_line())
    assert (again.url, again.weight, again.max_fails, again.backup) == (ep.url, weight, max_fails, backup)
    assert again.fail_timeout == pytest.approx(ep.fail_timeout)
