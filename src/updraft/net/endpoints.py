"""A set of control-plane endpoints with nginx ``upstream`` semantics.

Why nginx's model: operators already know it, and it answers the questions a multi-replica client must
answer — how to share load unevenly (``weight``), when to stop sending to a sick replica (``max_fails``
failures within ``fail_timeout``), for how long (``fail_timeout``), and what to use when every primary is
sick (``backup``). Server lines are written in nginx syntax::

    http://a:8080 weight=3 max_fails=2 fail_timeout=5s
    http://b:8080 backup

and a whole set as a comma-separated value, e.g. ``UPDRAFT_SERVERS="http://a:8080 weight=2, http://b:8080"``.

Selection is nginx's *smooth weighted round robin*: over any ``sum(weights)`` consecutive picks from an
unchanged healthy set, each endpoint is chosen exactly ``weight`` times, interleaved rather than in bursts.

Health: an endpoint that fails ``max_fails`` times within ``fail_timeout`` seconds is skipped for
``fail_timeout`` seconds (``max_fails=0`` disables this). When the ban expires the endpoint is *on
probation*, as in nginx: its first failure bans it again at once, its first success clears it.

Two deliberate departures from a plain "fail when nothing is healthy":

* ``pick(exclude=...)`` lets a retrying request avoid endpoints it already tried; like nginx's
  ``proxy_next_upstream`` it moves on to backups once every primary is down *or already tried*.
* If every endpoint is banned, ``pick`` returns the one whose ban expires first instead of failing: a
  client with nowhere else to go should still try, and a success there lifts the ban immediately.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from updraft.clock import Clock, SystemClock
from updraft.errors import ValidationError
from updraft.net._syntax import format_duration, normalise_url, parse_duration
from updraft.net.rtt import RttEstimator

DEFAULT_WEIGHT = 1
DEFAULT_MAX_FAILS = 1
DEFAULT_FAIL_TIMEOUT = 10.0


@dataclass(frozen=True)
class EndpointStats:
    """Counters and estimator state of one endpoint, for metrics and benchmarks.

    ``down``/``down_for``: benched now, and for how many more seconds. ``fails``: failures in the current
    ``fail_timeout`` window. ``srtt``/``rttvar``: None until the first valid sample. ``rto``: the timeout
    the next request would get (back-off included). ``requests``: attempts sent here; ``retries``: those
    that were a retry of a request first sent elsewhere or earlier; ``failures``: attempts that failed
    (connect error, timeout, dropped connection, 502/503/504); ``timeouts``: the failures that were
    timeouts; ``refused``: attempts the endpoint answered 429 (backpressure: alive, but "not now").
    """

    url: str
    backup: bool
    weight: int
    down: bool
    down_for: float
    fails: int
    srtt: float | None
    rttvar: float | None
    rto: float
    requests: int
    failures: int
    retries: int
    timeouts: int
    refused: int = 0


class Endpoint:
    """One server URL: its nginx parameters, its health state and its RTT estimator.

    Health and counters are mutated by :class:`EndpointSet` under its lock; read them via :meth:`stats`.
    """

    def __init__(
        self,
        url: str,
        *,
        weight: int = DEFAULT_WEIGHT,
        max_fails: int = DEFAULT_MAX_FAILS,
        fail_timeout: float = DEFAULT_FAIL_TIMEOUT,
        backup: bool = False,
        rtt: RttEstimator | None = None,
    ) -> None:
        if weight < 1:
            raise ValidationError(f"weight must be >= 1, got {weight}", url=url)
        if max_fails < 0:
            raise ValidationError(f"max_fails must be >= 0, got {max_fails}", url=url)
        if fail_timeout <= 0:
            raise ValidationError(f"fail_timeout must be > 0, got {fail_timeout}", url=url)
        self.url = normalise_url(url)
        self.weight = weight
        self.max_fails = max_fails
        self.fail_timeout = fail_timeout
        self.backup = backup
        self.rtt = rtt or RttEstimator()
        self.current_weight = 0  # smooth-WRR state
        self.fails = 0  # failures in the current fail_timeout window
        self.down_until: float | None = None  # set on ban; kept after expiry to mark probation
        self._window_start: float | None = None
        self.requests = self.failures = self.retries = self.timeouts = self.refused = 0

    def __repr__(self) -> str:
        return f"Endpoint({self.to_line()!r})"

    def to_line(self) -> str:
        """The nginx ``server`` line that :func:`parse_server` turns back into this endpoint."""
        parts = [self.url]
        if self.weight != DEFAULT_WEIGHT:
            parts.append(f"weight={self.weight}")
        if self.max_fails != DEFAULT_MAX_FAILS:
            parts.append(f"max_fails={self.max_fails}")
        if self.fail_timeout != DEFAULT_FAIL_TIMEOUT:
            parts.append(f"fail_timeout={format_duration(self.fail_timeout)}")
        if self.backup:
            parts.append("backup")
        return " ".join(parts)

    def is_down(self, now: float) -> bool:
        return self.down_until is not None and now < self.down_until

    def _record_failure(self, now: float) -> bool:
        """Count a failure; returns True if the endpoint is (now) banned."""
        self.failures += 1
        if self.max_fails == 0:
            return False
        if self.down_until is not None:  # banned already (used as a fallback) or on probation
            self.down_until = now + self.fail_timeout
            return True
        if self._window_start is None or now - self._window_start >= self.fail_timeout:
            self._window_start, self.fails = now, 0
        self.fails += 1
        if self.fails >= self.max_fails:
            self.down_until = now + self.fail_timeout
            self.fails, self._window_start = 0, None
            return True
        return False

    def _record_success(self) -> None:
        self.fails, self._window_start, self.down_until = 0, None, None

    def stats(self, now: float) -> EndpointStats:
        snap = self.rtt.snapshot()
        down = self.is_down(now)
        return EndpointStats(
            url=self.url,
            backup=self.backup,
            weight=self.weight,
            down=down,
            down_for=(self.down_until - now) if down and self.down_until is not None else 0.0,
            fails=self.fails,
            srtt=snap.srtt,
            rttvar=snap.rttvar,
            rto=snap.rto,
            requests=self.requests,
            failures=self.failures,
            retries=self.retries,
            timeouts=self.timeouts,
            refused=self.refused,
        )


class EndpointSet:
    """Endpoints plus the selection and health bookkeeping shared by every request of a client."""

    def __init__(self, endpoints: Iterable[Endpoint | str], *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._endpoints: list[Endpoint] = [e if isinstance(e, Endpoint) else parse_server(e) for e in endpoints]
        if not self._endpoints:
            raise ValidationError("an endpoint set needs at least one server")
        urls = [e.url for e in self._endpoints]
        if len(set(urls)) != len(urls):
            raise ValidationError("duplicate server URLs", servers=urls)
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, spec: str | Iterable[str], *, clock: Clock | None = None) -> EndpointSet:
        """Build from server lines; a string may hold several, separated by commas, ``;`` or newlines."""
        items = [spec] if isinstance(spec, str) else list(spec)
        lines = [part for item in items for part in re.split(r"[,;\n]", item) if part.strip()]
        return cls([parse_server(line) for line in lines], clock=clock)

    @classmethod
    def from_env(
        cls,
        name: str,
        *,
        default: str | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> EndpointSet:
        """Build from the environment variable ``name`` (comma-separated server lines)."""
        value = (os.environ if environ is None else environ).get(name) or default
        if not value:
            raise ValidationError(f"environment variable {name} is not set", variable=name)
        return cls.parse(value, clock=clock)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(list(self._endpoints))

    def __len__(self) -> int:
        return len(self._endpoints)

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints)

    def pick(self, exclude: Collection[str] = ()) -> Endpoint:
        """Choose the endpoint for the next attempt; ``exclude`` holds URLs this request already tried."""
        with self._lock:
            now = self._clock.monotonic()
            up = [e for e in self._endpoints if not e.is_down(now)]
            fresh = [e for e in up if e.url not in exclude]
            for pool in (
                [e for e in fresh if not e.backup],
                [e for e in fresh if e.backup],
                [e for e in up if not e.backup],
                [e for e in up if e.backup],
            ):
                if pool:
                    return _smooth_wrr(pool)
            # Everything is banned: try the endpoint that would come back first rather than give up.
            return min(self._endpoints, key=lambda e: e.down_until if e.down_until is not None else now)

    def record_attempt(self, ep: Endpoint, *, retry: bool) -> None:
        with self._lock:
            ep.requests += 1
            if retry:
                ep.retries += 1

    def record_failure(self, ep: Endpoint, *, timeout: bool = False) -> bool:
        """Count a failed attempt (connect error, timeout, 502/503/504); True if the endpoint is banned."""
        with self._lock:
            if timeout:
                ep.timeouts += 1
            return ep._record_failure(self._clock.monotonic())

    def record_refusal(self, ep: Endpoint) -> None:
        """The endpoint answered 429: alive (no ban), but shedding load."""
        with self._lock:
            ep.refused += 1

    def record_success(self, ep: Endpoint) -> None:
        """The endpoint answered; clears its failure count and any ban."""
        with self._lock:
            ep._record_success()

    def stats(self) -> list[EndpointStats]:
        with self._lock:
            now = self._clock.monotonic()
            return [e.stats(now) for e in self._endpoints]


def _smooth_wrr(pool: list[Endpoint]) -> Endpoint:
    """nginx's smooth weighted round robin (ngx_http_upstream_get_peer)."""
    total = 0
    best: Endpoint | None = None
    for ep in pool:
        ep.current_weight += ep.weight
        total += ep.weight
        if best is None or ep.current_weight > best.current_weight:
            best = ep
    assert best is not None
    best.current_weight -= total
    return best


def parse_server(line: str) -> Endpoint:
    """Parse one nginx-style server line (an optional leading ``server`` and trailing ``;`` are ignored)."""
    tokens = line.strip().rstrip(";").split()
    if tokens and tokens[0] == "server":
        tokens = tokens[1:]
    if not tokens:
        raise ValidationError("empty server line", line=line)
    weight, max_fails, fail_timeout, backup = DEFAULT_WEIGHT, DEFAULT_MAX_FAILS, DEFAULT_FAIL_TIMEOUT, False
    for tok in tokens[1:]:
        key, sep, value = tok.partition("=")
        try:
            if key == "backup" and not sep:
                backup = True
            elif key == "weight" and sep:
                weight = int(value)
            elif key == "max_fails" and sep:
                max_fails = int(value)
            elif key == "fail_timeout" and sep:
                fail_timeout = parse_duration(value)
            else:
                raise ValidationError(f"unknown server parameter {tok!r}", line=line)
        except ValueError as exc:
            raise ValidationError(f"bad value in {tok!r}: {exc}", line=line) from exc
    return Endpoint(tokens[0], weight=weight, max_fails=max_fails, fail_timeout=fail_timeout, backup=backup)
