"""Leader election's pure decisions, and the watch's grouping of changes by etcd revision."""

from __future__ import annotations

from updraft.control.follow import group_by_revision
from updraft.control.leader import keepalive_verdict


def test_keepalive_verdict_trusts_etcd_then_the_clock() -> None:
    assert keepalive_verdict(2, since_ok=0.5, ttl=2) == "keep"
    assert keepalive_verdict(0, since_ok=0.5, ttl=2) == "gone"
    assert keepalive_verdict(-1, since_ok=0.5, ttl=2) == "gone"
    assert keepalive_verdict(None, since_ok=1.9, ttl=2) == "keep"  # no answer yet, but within the lease
    assert keepalive_verdict(None, since_ok=2.0, ttl=2) == "unknown"  # a whole TTL without an answer: step down


def test_changes_are_grouped_by_the_revision_of_their_txn() -> None:
    events = [{"kv": {"mod_revision": r, "key": k}} for r, k in [(5, "a"), (5, "b"), (6, "c"), (8, "d"), (8, "e")]]
    groups = [(rev, [e["kv"]["key"] for e in group]) for rev, group in group_by_revision(events)]
    assert groups == [(5, ["a", "b"]), (6, ["c"]), (8, ["d", "e"])]


def test_updraft_cluster_shows_the_leader_its_term_and_every_server() -> None:
    from updraft.cli.cluster import render

    view = {
        "leader": {"id": "s1", "url": "http://b:8470", "term": 42},
        "members": [{"id": "s0", "url": "http://a:8470", "since": 0, "leader": False},
                    {"id": "s1", "url": "http://b:8470", "since": 0, "leader": True}],
        "etcd": [{"name": "m0", "client_urls": ["http://e:2379"]}],
        "problems": {},
    }
    text = render(view)
    assert "leader: s1  term 42  http://b:8470" in text
    assert "  * s1  http://b:8470" in text and "    s0  http://a:8470" in text and "m0  http://e:2379" in text
    assert "(none" in render({"leader": {"id": None, "term": None}, "members": [], "etcd": []})
