"""When to repeat a failed request, and how long to wait first.

Why full jitter: after a control-plane blip every agent retries at once. Exponential backoff alone keeps
those retries synchronised (they all wait 1 s, 2 s, 4 s ...); "full jitter" — sleep a uniformly random
time in ``[0, min(cap, base·2^n)]`` — spreads them out and, per the AWS Architecture Blog analysis
("Exponential Backoff And Jitter"), finishes the herd with the least total work.

Why only safe requests: repeating a request whose first copy may already have been applied must not
change the outcome. GET/HEAD/OPTIONS/PUT/DELETE are idempotent by definition (RFC 9110 §9.2.2); a POST is
safe to repeat only when the caller says so, typically because it carries an ``Idempotency-Key`` header
the server deduplicates on. The client separately retries *any* request whose connection never opened
(the request was provably not sent); that rule lives in the client, not here.

Why honour ``Retry-After``: an overloaded server answers 429 (or 503) with ``Retry-After: N`` when its admitted
work is full. A client that comes back sooner only adds to the load it is being asked to shed; one that
comes back exactly N seconds later, together with every other client refused in the same second, brings the
whole herd back at once. So the wait is at least ``Retry-After`` (capped at ``cap``, so a server cannot park a
client for an hour), stretched by up to ``retry_after_jitter`` of itself, and never shorter than the backoff
the policy would have used anyway. A 429 is a refusal at the door (RFC 6585): the server did nothing with the
request, so it is repeated whatever the method — unlike a 503, which may come from a server that failed
half-way.

Defaults: ``base = 1 s``, ``max_retries = 3`` (so at most 4 attempts), ``cap = 30 s``, ``retry_after_jitter =
0.2``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Protocol

IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
RETRY_STATUSES: frozenset[int] = frozenset({502, 503, 504})
REFUSED_STATUSES: frozenset[int] = frozenset({429})
"""Answers meaning "not now, and nothing was done": retried whatever the method, on the same endpoint."""


class RandomSource(Protocol):
    """The one method the policy needs from :class:`random.Random`; tests pass a seeded or stub one."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, for requests that are safe to repeat.

    ``attempt`` in :meth:`ceiling`/:meth:`delay` counts retries already made: the first retry uses
    ``attempt = 0`` and waits up to ``base``, the second up to ``2·base``, and so on, capped at ``cap``.
    """

    max_retries: int = 3
    base: float = 1.0
    cap: float = 30.0
    retry_statuses: frozenset[int] = RETRY_STATUSES
    refused_statuses: frozenset[int] = REFUSED_STATUSES
    retry_after_jitter: float = 0.2
    rng: RandomSource = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must be >= 0")
        if self.retry_after_jitter < 0:
            raise ValueError(f"retry_after_jitter must be >= 0, got {self.retry_after_jitter}")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries (callers that do their own retrying)."""
        return cls(max_retries=0)

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the sleep before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # 2.0**1000 is still a finite float; beyond that any positive base has long since hit the cap.
        return min(self.cap, self.base * 2.0 ** min(attempt, 1000))

    def delay(self, attempt: int) -> float:
        """Full-jitter sleep before retry number ``attempt`` (0-based)."""
        return self.rng.uniform(0.0, self.ceiling(attempt))

    def delay_after(self, attempt: int, retry_after: float | None) -> float:
        """The sleep before retry number ``attempt`` when the server asked for ``retry_after`` seconds.

        At least ``min(retry_after, cap)``, plus up to ``retry_after_jitter`` of that so clients refused
        together do not all return in the same instant; never less than the plain backoff :meth:`delay`.
        """
        backoff = self.delay(attempt)
        if retry_after is None:
            return backoff
        floor = min(max(retry_after, 0.0), self.cap)
        return max(backoff, floor + self.rng.uniform(0.0, floor * self.retry_after_jitter))

    def allows(self, retries_done: int) -> bool:
        """Whether another retry fits in the budget."""
        return retries_done < self.max_retries

    def should_retry(self, retries_done: int, *, safe: bool) -> bool:
        """Whether a request that may have reached the server can be sent again."""
        return safe and self.allows(retries_done)

    def retryable_status(self, status: int) -> bool:
        return status in self.retry_statuses

    def refused_status(self, status: int) -> bool:
        """A refusal before any work (429): repeat it, whatever the method, after the server's Retry-After."""
        return status in self.refused_statuses

    @staticmethod
    def is_safe(method: str, idempotent: bool | None = None, headers: Mapping[str, str] | None = None) -> bool:
        """See :func:`is_idempotent`."""
        return is_idempotent(method, idempotent, headers)


def is_idempotent(method: str, idempotent: bool | None = None, headers: Mapping[str, str] | None = None) -> bool:
    """Whether a request may be repeated without changing its outcome.

    An explicit ``idempotent`` wins (a caller may know a PUT has side effects, or that a POST does not).
    Otherwise: idempotent methods, or any request carrying an ``Idempotency-Key`` header.
    """
    if idempotent is not None:
        return idempotent
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    if headers:
        wanted = IDEMPOTENCY_KEY_HEADER.lower()
        return any(k.lower() == wanted for k in headers)
    return False


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3), or None if absent or unreadable.

    Either delta-seconds (``"5"``; fractions such as ``"0.5"`` are accepted too) or an HTTP-date, read
    against ``now`` (wall-clock seconds since the epoch); a date in the past means 0.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means the zone was missing
            return None
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
