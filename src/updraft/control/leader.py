"""Leader election on an etcd lease, and the fencing term every leader write carries (issue 16).

Each server holds one lease (TTL ``etcd_lease_ttl``, renewed every third of it) with its member key on it
(``members/<id>``: id and URL, listed by ``GET /v1/cluster``). To lead, a server creates the ``leader`` key on
its lease in a Txn that requires the key to be absent (``create_revision == 0``). The key's
``create_revision`` is the **term**: etcd revisions only grow, so terms strictly increase across leaders and
restarts, and no two servers can hold the same one. The leader's loops commit through
``EtcdStore.fenced(term)``, whose every Txn also compares ``create_revision(leader) == term``; when the
leader's lease is gone (it died, stalled, or was cut off from etcd), etcd deletes the key, and any write the
old leader still sends fails — fenced, whatever the old process believes.

The leader steps down on its own as soon as a keepalive says the lease is gone, or when no keepalive has
succeeded for a whole TTL (it cannot know, so it assumes the worst). Followers learn of the key's deletion from
their watch (``follow.py``) and campaign at once; otherwise every third of the TTL.

Pure decisions are in :func:`keepalive_verdict`; the class is the thin I/O around it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from updraft.errors import UpdraftError
from updraft.store.etcd import EtcdStore, b64

log = logging.getLogger("updraft.leader")


@dataclass(frozen=True)
class LeaderInfo:
    id: str
    url: str
    term: int


def keepalive_verdict(ttl_left: int | None, since_ok: float, ttl: float) -> str:
    """What a leader does after a keepalive (``ttl_left``: etcd's answer, None: no answer): ``keep`` leading, or
    step down because the lease is ``gone`` (etcd said so: TTL ≤ 0) or ``unknown`` (no keepalive succeeded for a
    whole TTL: it may have expired and another server may lead)."""
    if ttl_left is not None:
        return "keep" if ttl_left > 0 else "gone"
    return "unknown" if since_ok >= ttl else "keep"


class Election:
    """Campaign, keep the lease alive, and call ``on_change(leading, term)`` when leadership starts or ends."""

    def __init__(
        self,
        store: EtcdStore,
        member_id: str,
        url: str,
        ttl: int,
        on_change: Callable[[bool, int], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.id, self.url, self.ttl = store, member_id, url, ttl
        self.on_change, self.clock = on_change, clock
        self.lease: int | None = None
        self.leading = False
        self.term = 0
        self.leader: LeaderInfo | None = None
        self.last_ok = clock()
        self.error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="updraft-election", daemon=True)

    # -- control -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """The leader key is gone (seen by the watch): campaign now rather than at the next tick."""
        self._wake.set()

    def stop(self) -> None:
        """Stop, and give the lease back so that another server can lead at once (not after the TTL)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(5)
        if self.lease is not None:
            try:
                self.store.post("/kv/lease/revoke", {"ID": self.lease}, retry=False)
            except UpdraftError as exc:
                log.info("could not revoke the lease on stop (it expires by itself): %s", exc.message)
        if self.leading:
            self._step_down("stopping")

    def observe(self, value: str | None, create_revision: int) -> None:
        """The leader key as the watch saw it (None: deleted)."""
        if value is None:
            self.leader = None
            self.poke()
            return
        self.leader = _parse(value, create_revision)

    # -- the loop --------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        tick = self.ttl / 3
        while not self._stop.is_set():
            try:
                self._tick()
                self.error = None
            except UpdraftError as exc:
                self.error = exc.message
                log.warning("election: %s", exc.message)
            except Exception:  # the election must go on; the error is logged with its trace
                log.exception("election step failed")
            if self.leading and keepalive_verdict(None, self.clock() - self.last_ok, self.ttl) != "keep":
                self._step_down("no keepalive succeeded for a whole lease TTL")
            self._wake.wait(tick)
            self._wake.clear()

    def _tick(self) -> None:
        if self.lease is None:
            self._new_lease()
        else:
            self._keepalive()
        if not self.leading and self.lease is not None:
            self._campaign()

    def _new_lease(self) -> None:
        result = self.store.post("/lease/grant", {"TTL": self.ttl, "ID": 0})
        self.lease = int(result["ID"])
        self.last_ok = self.clock()
        member = json.dumps({"id": self.id, "url": self.url, "since": time.time()})
        self.store.post("/kv/put", {"key": b64(self.store.key("members", self.id)), "value": b64(member),
                                    "lease": self.lease})

    def _keepalive(self) -> None:
        assert self.lease is not None
        result = self.store.post("/lease/keepalive", {"ID": self.lease})
        left = int(result.get("result", {}).get("TTL", 0))
        verdict = keepalive_verdict(left, self.clock() - self.last_ok, self.ttl)
        if verdict == "keep" and self.leading and self.clock() - self.last_ok >= self.ttl:
            verdict = "unknown"  # alive now, but silent for a whole TTL: step down (the check below) all the same
        if verdict == "keep":
            self.last_ok = self.clock()
            return
        log.warning("lease %x is gone (%s)", self.lease, verdict)
        if self.leading:
            self._step_down(f"the lease is {verdict}")  # revokes it
        self.lease = None
        self._new_lease()

    def _campaign(self) -> None:
        key = b64(self.store.key("leader"))
        value = json.dumps({"id": self.id, "url": self.url})
        result = self.store.txn(
            [{"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
            [{"request_put": {"key": key, "value": b64(value), "lease": self.lease}}],
            [{"request_range": {"key": key}}],
        )
        if result.get("succeeded", False):
            term = int(result["header"]["revision"])
            self.leader = LeaderInfo(self.id, self.url, term)
            self.leading, self.term = True, term
            log.info("leading: %s is the leader, term %d", self.id, term)
            self._notify(True, term)
            return
        kvs = result["responses"][0].get("response_range", {}).get("kvs", [])
        if kvs:
            from etcd3gw.utils import _decode

            self.leader = _parse(_decode(kvs[0]["value"]).decode(), int(kvs[0]["create_revision"]))

    def _step_down(self, why: str) -> None:
        """Stop leading, and let the lease go: were it kept alive, the leader key on it would outlive this
        term and nobody (this server included) could lead."""
        log.warning("no longer leading (term %d): %s", self.term, why)
        self.leading = False
        if self.leader is not None and self.leader.id == self.id:
            self.leader = None
        self._notify(False, self.term)
        lease, self.lease = self.lease, None
        if lease is not None and not self._stop.is_set():
            # unreachable: it expires by itself, since nothing keeps it alive any more
            with contextlib.suppress(UpdraftError):
                self.store.post("/kv/lease/revoke", {"ID": lease}, retry=False)

    def _notify(self, leading: bool, term: int) -> None:
        try:
            self.on_change(leading, term)
        except Exception:  # a failing callback must not stop the election
            log.exception("leadership change handler failed")

    def status(self) -> dict[str, Any]:
        leader = self.leader
        return {
            "id": self.id,
            "url": self.url,
            "leader": self.leading,
            "term": self.term if self.leading else (leader.term if leader else None),
            "leader_id": leader.id if leader else None,
            "leader_url": leader.url if leader else None,
            "error": self.error,
        }


def _parse(value: str, create_revision: int) -> LeaderInfo | None:
    try:
        data = json.loads(value)
        return LeaderInfo(str(data["id"]), str(data["url"]), create_revision)
    except (ValueError, KeyError, TypeError):
        return None
