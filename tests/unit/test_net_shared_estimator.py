"""One RTT estimator shared by concurrent requests: one doubling per RTO used, Karn's rule extended.

Without these rules a burst of concurrent timeouts drives the RTO to its maximum within one RTO, and the
requests held by a partition answer, when it heals, with "round trips" as long as the partition — leaving
the endpoint's timeout near a minute long after the path is well again.
"""

from __future__ import annotations

import contextlib
import http.server
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.tools.faultproxy import FaultProxy  # noqa: E402
from updraft.errors import TransportError  # noqa: E402
from updraft.net import HttpClient, RetryPolicy, RttEstimator  # noqa: E402


def warmed(rtt: float = 0.1) -> RttEstimator:
    est = RttEstimator(min_rto=0.001)
    for _ in range(20):
        est.observe(rtt)
    return est


def test_concurrent_timeouts_sent_with_the_same_rto_double_it_once() -> None:
    est = warmed()
    base = est.timeout
    tickets = [est.sending() for _ in range(10)]
    for t in tickets:
        est.on_timeout(t)
    assert est.backoffs == 1 and est.timeout == pytest.approx(2 * base)
    # An attempt sent with the doubled RTO that times out doubles it again.
    est.on_timeout(est.sending())
    assert est.backoffs == 2


def test_without_tickets_every_timeout_doubles_as_before() -> None:
    est = warmed()
    for _ in range(3):
        est.on_timeout()
    assert est.backoffs == 3


def test_a_sample_overlapped_by_another_timeout_is_ambiguous() -> None:
    est = warmed()
    srtt = est.srtt
    long_one = est.sending()
    est.on_timeout(est.sending())  # another request to the endpoint timed out meanwhile
    assert est.observe(3.0, ticket=long_one) is False
    assert est.srtt == srtt and est.backoffs == 1


def test_held_requests_answering_after_a_partition_do_not_inflate_the_estimate() -> None:
    est = warmed(0.1)
    est.on_timeout(est.sending())  # the partition starts: a timeout, the RTO is backed off
    probes = [est.sending() for _ in range(5)]  # sent into the outage, before anything answered
    assert all(p.probe for p in probes)
    for p in probes:  # the partition heals: all answer at once, seconds late
        assert est.observe(4.0, ticket=p) is False
    assert est.srtt == pytest.approx(0.1) and est.backoffs == 1  # back-off kept until a valid sample
    fresh = est.sending()  # sent after the endpoint answered again: a valid sample, back-off cleared
    assert not fresh.probe
    assert est.observe(0.1, ticket=fresh) is True
    assert est.backoffs == 0 and est.timeout < 0.5


def test_a_slower_path_is_still_learnt() -> None:
    """The path really slows down (0.1 s → 1.5 s): back-off, then the first clean sample teaches it."""
    est = warmed(0.1)
    while est.timeout < 1.5:  # each level's attempt times out in turn
        est.on_timeout(est.sending())
    held = est.sending()
    assert est.observe(1.5, ticket=held) is False  # a probe: ambiguous, but the endpoint answers again
    for _ in range(10):
        est.observe(1.5, ticket=est.sending())
    assert est.srtt is not None and est.srtt > 1.0 and est.timeout > 1.5 and est.backoffs == 0


def test_a_long_poll_answer_ends_the_outage_for_probing() -> None:
    est = warmed()
    est.on_timeout(est.sending())
    assert est.sending().probe
    est.answered()
    assert not est.sending().probe


class _Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_after_a_partition_heals_the_rto_is_back_to_the_path_not_the_outage() -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with (
            FaultProxy((str(srv.server_address[0]), int(srv.server_address[1])), latency=0.05) as proxy,
            HttpClient(proxy.url, retry=RetryPolicy(max_retries=1, base=0.1)) as client,
        ):

            def call() -> None:
                with contextlib.suppress(TransportError):  # expected while the partition lasts
                    client.get("/")

            with ThreadPoolExecutor(16) as pool:
                for _ in range(20):
                    pool.submit(call)
                    time.sleep(0.05)
            path = client.stats()[0]  # the path as measured in this run, on this machine, now
            assert path.srtt is not None
            with ThreadPoolExecutor(16) as pool:
                proxy.set_blackhole(True)
                for _ in range(60):  # 3 s of partition, 20 requests a second
                    pool.submit(call)
                    time.sleep(0.05)
                proxy.set_blackhole(False)
                for _ in range(20):
                    pool.submit(call)
                    time.sleep(0.05)
            stats = client.stats()[0]
            assert stats.timeouts >= 5
            # Judged against the path measured before the partition in the same run, not against the wall clock:
            # the outage (3 s of silence, timeouts backing off) must not have leaked into the estimate.
            assert stats.srtt is not None and stats.srtt < 3 * path.srtt + 0.05, (path, stats)
            assert stats.rto < max(3 * path.rto, 1.0) and stats.rto < 3.0, (path, stats)
    finally:
        srv.shutdown()
        srv.server_close()
