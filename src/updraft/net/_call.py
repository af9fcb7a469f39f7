"""The decisions behind one logical request, shared by the sync and async clients.

Why a separate object: the two clients differ only in how they send and how they sleep. Everything else —
which endpoint, which timeout, whether an outcome is a failure, whether to retry and where, what to raise
— lives here once, so the two cannot drift apart.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from updraft import errors
from updraft.clock import Clock
from updraft.net.endpoints import Endpoint, EndpointSet
from updraft.net.retry import RetryPolicy, parse_retry_after
from updraft.net.rtt import RttTicket

log = logging.getLogger("updraft.net")

# Statuses mapped to project errors when the body is not one of the server's {code, message, details}
# documents (a proxy's HTML page, a framework default, an old server).
_BY_STATUS: dict[int, type[errors.UpdraftError]] = {
    400: errors.ValidationError,
    401: errors.Unauthorized,
    403: errors.Unauthorized,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.ValidationError,
    429: errors.Busy,
    502: errors.Unavailable,
    503: errors.Unavailable,
    504: errors.Unavailable,
}

# The request provably never reached the server, so repeating it is safe whatever the method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures of the path or the peer (as opposed to local misuse such as an unsupported URL scheme).
_NETWORK = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)


def error_from_response(response: httpx.Response) -> errors.UpdraftError:
    """The project exception for a non-2xx response: rebuilt from the body's ``code`` when present."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        return errors.from_payload(body)
    cls = _BY_STATUS.get(response.status_code, errors.UpdraftError)
    excerpt = response.text[:200] if body is None else str(body)[:200]
    return cls(
        f"HTTP {response.status_code} from {response.request.url}: {excerpt}",
        http_status=response.status_code,
    )


class Call:
    """State of one ``request()`` across its attempts.

    Backpressure: a 429 is a refusal before any work, so it is retried whatever the method, on the *same*
    endpoint (another route to an overloaded server, or an independent backup, is no answer to "not now"),
    without benching it (it answered), after the server's ``Retry-After``. A 503 keeps its failover rules;
    when it carries ``Retry-After``, going back to that endpoint waits at least that long.
    """

    def __init__(
        self,
        endpoints: EndpointSet,
        policy: RetryPolicy,
        method: str,
        path: str,
        *,
        safe: bool,
        timeout: float | None,
        wait: float | None,
        clock: Clock | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.policy = policy
        self.clock = clock or endpoints.clock
        self.method = method.upper()
        self.path = path
        self.safe = safe
        self.explicit_timeout = timeout
        self.wait = wait
        self.tried: list[str] = []
        self.retries = 0
        self._sleeps = 0
        self._last_cause = ""
        self._last_exc: BaseException | None = None
        self._sent = False
        self._ep: Endpoint | None = None
        self._retried_here = False
        self._ticket: RttTicket | None = None
        self._retry_after: dict[str, float] = {}  # per endpoint URL: the last Retry-After it sent
        self._stay: Endpoint | None = None  # set by a refusal (429): the next attempt goes back there
        self.started = 0.0

    @property
    def adaptive(self) -> bool:
        """Whether the RTT estimator sets the timeout (and so learns from this request)."""
        return self.explicit_timeout is None

    def next_attempt(self) -> tuple[Endpoint, float]:
        """Pick the endpoint for the next attempt and the backoff to sleep before sending to it.

        Going to an endpoint this request has not tried needs no backoff — that endpoint has not been
        asked yet; going back to one already tried sleeps per the policy (full jitter), and at least the
        ``Retry-After`` it last sent. After a refusal (429) the next attempt goes back to the same endpoint.
        """
        ep, self._stay = self._stay or self.endpoints.pick(exclude=set(self.tried)), None
        delay = 0.0
        if ep.url in self.tried:
            delay = self.policy.delay_after(self._sleeps, self._retry_after.get(ep.url))
            self._sleeps += 1
        return ep, delay

    def begin(self, ep: Endpoint, now: float) -> None:
        self._ep = ep
        self._retried_here = ep.url in self.tried  # Karn: a resent request yields no RTT sample
        self._ticket = ep.rtt.sending()  # nor, when the estimator says so, do concurrent or probing ones
        self.endpoints.record_attempt(ep, retry=bool(self.tried))
        self.tried.append(ep.url)
        self.started = now

    def url(self, ep: Endpoint) -> str:
        return ep.url + "/" + self.path.lstrip("/")

    def timeout(self, ep: Endpoint) -> httpx.Timeout:
        if self.explicit_timeout is not None:
            return httpx.Timeout(self.explicit_timeout)
        rto = ep.rtt.timeout
        if self.wait is not None:  # long poll: connect fast, but let the server hold the response
            return httpx.Timeout(rto, read=self.wait + rto)
        return httpx.Timeout(rto)

    def on_response(self, response: httpx.Response, now: float) -> bool:
        """Classify a response: True to return it, False to retry; raises a project error otherwise."""
        ep = self._current()
        status = response.status_code
        if self.policy.refused_status(status) or self.policy.retryable_status(status):
            after = parse_retry_after(response.headers.get("Retry-After"), self.clock.now())
            if after is not None:
                self._retry_after[ep.url] = after
        if self.policy.refused_status(status):
            return self._on_refused(ep, response, now)
        if self.policy.retryable_status(status):
            self.endpoints.record_failure(ep)
            cause = error_from_response(response)
            self._note(ep, f"HTTP {status}", cause, sent=True)
            if self._may_retry(sent=True):
                return False
            if not self.safe:
                raise cause
            raise self.give_up()
        self._answered(ep, now)
        if 200 <= status < 300:
            return True
        raise error_from_response(response)

    def _on_refused(self, ep: Endpoint, response: httpx.Response, now: float) -> bool:
        """A 429: the endpoint is alive and did nothing; come back to it later, or raise its answer."""
        self._answered(ep, now)
        self.endpoints.record_refusal(ep)
        cause = error_from_response(response)
        self._note(ep, f"HTTP {response.status_code}", cause, sent=False)
        if self._may_retry(sent=False):
            self._stay = ep
            return False
        raise cause  # the server's own answer ("overloaded"), not "no endpoint answered"

    def _answered(self, ep: Endpoint, now: float) -> None:
        if self.adaptive and self.wait is None:
            ep.rtt.observe(now - self.started, retried=self._retried_here, ticket=self._ticket)
        else:
            ep.rtt.answered()
        self.endpoints.record_success(ep)

    def on_error(self, exc: httpx.HTTPError) -> None:
        """Handle a transport exception: returns to retry, raises otherwise."""
        ep = self._current()
        if not isinstance(exc, _NOT_SENT + _NETWORK):
            raise exc
        timed_out = isinstance(exc, httpx.TimeoutException)
        if not isinstance(exc, httpx.PoolTimeout):  # local pool exhaustion is not the endpoint's fault
            self.endpoints.record_failure(ep, timeout=timed_out)
            if timed_out and self.adaptive:
                ep.rtt.on_timeout(self._ticket)
        sent = not isinstance(exc, _NOT_SENT)
        self._note(ep, f"{type(exc).__name__}: {exc}".rstrip(": "), exc, sent=sent)
        if not self._may_retry(sent=sent):
            raise self.give_up()

    def give_up(self) -> errors.TransportError:
        unique = list(dict.fromkeys(self.tried))
        err = errors.TransportError(
            f"{self.method} {self.path}: no endpoint answered after {len(self.tried)} attempt(s) "
            f"(tried {', '.join(unique)}); last error: {self._last_cause}",
            method=self.method,
            path=self.path,
            endpoints=unique,
            attempts=len(self.tried),
            last_cause=self._last_cause,
            sent=self._sent,
        )
        err.__cause__ = self._last_exc
        return err

    def _may_retry(self, *, sent: bool) -> bool:
        ok = self.policy.should_retry(self.retries, safe=self.safe or not sent)
        if ok:
            self.retries += 1
            log.debug(
                "retrying %s %s (retry %d, last error: %s)", self.method, self.path, self.retries, self._last_cause
            )
        return ok

    def _note(self, ep: Endpoint, cause: str, exc: BaseException, *, sent: bool) -> None:
        self._last_cause = f"{ep.url}: {cause}"
        self._last_exc = exc
        self._sent = self._sent or sent  # once any copy may have arrived, the outcome is unknown

    def _current(self) -> Endpoint:
        if self._ep is None:
            raise RuntimeError("begin() must be called before classifying an outcome")
        return self._ep
