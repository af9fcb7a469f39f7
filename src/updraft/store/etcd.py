"""The store on etcd (issue 16): the same protocol as ``SqliteStore``, for several servers behind one cluster.

Client: ``etcd3gw`` (OpenStack's, maintained), which speaks etcd's JSON gRPC gateway (``/v3/``, served by
Debian's etcd 3.4) over plain HTTP with ``requests``: no gRPC build, synchronous calls, which is what the one
writer thread wants. It talks to one endpoint; :class:`_Endpoints` moves to the next on a connection error.

Layout under ``prefix`` (default ``/updraft/``)::

    tasks/<id>         Task JSON          the task's ``revision`` is the key's mod_revision
    nodes/<name>       Node JSON
    idem/<key>         {"task_id", "fingerprint"}
    counters/<name>    20-digit decimal   (zero-padded, so etcd's byte order is numeric order)
    events/<task|->/<txn>.<i>   Event JSON, on the history lease
    logs/<task>/<uuid>          one agent log batch, on the history lease
    leader, members/<id>        see ``control/leader.py``

Every :class:`Txn` is one etcd Txn. Its compares: each task and node written has ``mod_revision`` equal to the
revision it was read at (0: ``create_revision == 0``, it must not exist); an idempotency key must not exist;
the ``token`` floor must be above the stored token (``value < floor``) — tokens are only ever issued by the
leader from the counter it loaded after winning, so a floor that does not move the counter up means another
leader issued beyond it and the transaction is refused rather than issuing a token twice. The ``seq`` floor
is a nested Txn (``value < floor`` → put): a maximum, since followers accept submits too and their order may
interleave. When a commit goes through :meth:`EtcdStore.fenced`, one more compare holds it to a leadership
term (the leader key's ``create_revision``): once the leader's lease is gone, its writes fail.

A failed Txn runs read-only ranges on the same keys in its failure branch, so the error says which compare
failed (a conflicting task, a used idempotency key, lost leadership) without another round trip.

etcd is not a log store (1.5 MiB requests, a 2 GiB database by default): events and log batches are written
on a *history lease* of ``history_ttl`` seconds, re-granted every ``history_ttl / 2``, so each is kept between
half and all of that time and then removed by etcd itself. A batch of log lines is one key (the API caps a
batch at 10,000 lines and the body at 1 MiB); line ``i`` of the batch committed at revision ``r`` is sequence
number ``r * 10000 + i``. Events likewise are numbered ``r * 100000 + i``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import pydantic
import requests
import requests.adapters
from etcd3gw import exceptions as etcd_errors
from etcd3gw.client import Etcd3Client
from etcd3gw.utils import _decode, _increment_last_byte

from updraft.errors import Conflict, Unavailable, UpdraftError
from updraft.model import Event, Node, Task, TaskState
from updraft.store.base import COUNTERS, KeyUse, LogEntry, Txn

log = logging.getLogger("updraft.store.etcd")
M = TypeVar("M", Task, Node)
R = TypeVar("R")

COMMIT_THREADS = 32
LOG_SEQ = 10_000
EVENT_SEQ = 100_000


def b64(text: str | bytes) -> str:
    """Base64 of the UTF-8 bytes (etcd3gw's own helper encodes text as Latin-1, which fails on e.g. "φ")."""
    import base64

    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def counter_bytes(value: int) -> str:
    return f"{value:020d}"


def prefix_end(prefix: str) -> str:
    return _increment_last_byte(prefix)


class _Endpoints:
    """One etcd3gw client per endpoint; a call moves to the next endpoint when one cannot be reached."""

    def __init__(self, endpoints: Sequence[str], timeout: float) -> None:
        if not endpoints:
            raise ValueError("etcd: no endpoints")
        self.clients = []
        for url in endpoints:
            scheme, _, rest = url.partition("://")
            host, _, port = rest.rstrip("/").rpartition(":")
            session = requests.Session()  # as many pooled connections as concurrent commits
            session.mount(f"{scheme}://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=COMMIT_THREADS + 4))
            self.clients.append(Etcd3Client(host=host, port=int(port), protocol=scheme, timeout=timeout,
                                            api_path="/v3/", session=session))
        self._current = 0
        self._lock = threading.Lock()

    @property
    def client(self) -> Etcd3Client:
        return self.clients[self._current]

    def rotate(self) -> None:
        """Move to the next endpoint (a watch whose stream broke resumes on another member)."""
        with self._lock:
            self._current = (self._current + 1) % len(self.clients)

    def call(self, fn: Callable[[Etcd3Client], R], retry: bool = True) -> R:
        """Run ``fn`` on the current endpoint; on a connection failure try the others (``retry=False``: a write
        whose outcome would be unknown is not repeated, the caller gets Unavailable)."""
        tried = 0
        last: Exception | None = None
        while tried < len(self.clients):
            with self._lock:
                index = self._current
            try:
                return fn(self.clients[index])
            except (etcd_errors.ConnectionFailedError, etcd_errors.ConnectionTimeoutError) as exc:
                last = exc
                with self._lock:
                    if self._current == index:
                        self._current = (index + 1) % len(self.clients)
                if not retry and not _never_sent(exc):
                    break
                tried += 1
            except etcd_errors.Etcd3Exception as exc:
                raise Unavailable(f"etcd refused the request: {_why(exc)}", store="etcd") from exc
        raise Unavailable(f"etcd cannot be reached or has no quorum: {_why(last)}", store="etcd") from last


def _never_sent(exc: Exception) -> bool:
    """The connection was refused: the request never left, so even a write may go to another endpoint."""
    text = _why(exc)
    return "Connection refused" in text or "NewConnectionError" in text


def _why(exc: Exception | None) -> str:
    if exc is None:
        return "no endpoint"
    detail = getattr(exc, "detail_text", None) or str(exc)
    return " ".join(str(detail).split())[:300]


class EtcdStore:
    def __init__(
        self, endpoints: Sequence[str], prefix: str = "/updraft/", timeout: float = 2.0, history_ttl: int = 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.net = _Endpoints(endpoints, timeout)
        self.history_ttl = history_ttl
        self._clock = clock
        self._lease: tuple[int, float] | None = None  # (id, monotonic time granted)
        self._broken: dict[str, str] = {}
        self._seeded = False
        self._lease_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(COMMIT_THREADS, thread_name_prefix="updraft-etcd")

    # -- keys and raw calls ----------------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def post(self, path: str, body: dict[str, Any], retry: bool = True) -> dict[str, Any]:
        return self.net.call(lambda c: c.post(c.get_url(path), json=body), retry=retry)

    def range(self, key: str, *, prefix: bool = False, **options: Any) -> tuple[list[dict[str, Any]], int]:
        """(kvs with values decoded, header revision)."""
        body: dict[str, Any] = {"key": b64(key), **options}
        if prefix:
            body["range_end"] = b64(prefix_end(key))
        result = self.post("/kv/range", body)
        kvs = result.get("kvs", [])
        for kv in kvs:
            kv["key"] = _decode(kv["key"]).decode()
            kv["value"] = _decode(kv.get("value", "")).decode()
        return kvs, int(result["header"]["revision"])

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        body = {"compare": compare, "success": success, "failure": failure or []}
        return self.net.call(lambda c: c.post(c.get_url("/kv/txn"), data=json.dumps(body)), retry=False)

    def _history_lease(self) -> int:
        with self._lease_lock:
            now = self._clock()
            if self._lease is None or now - self._lease[1] >= self.history_ttl / 2:
                result = self.post("/lease/grant", {"TTL": self.history_ttl, "ID": 0})
                self._lease = (int(result["ID"]), now)
            return self._lease[0]

    # -- counters -----------------------------------------------------------------------------------------------
    def revision(self) -> int:
        return self.range(self.key("counters", "token"), count_only=True)[1]

    def counter(self, name: str) -> int:
        kvs, _ = self.range(self.key("counters", name))
        return int(kvs[0]["value"]) if kvs else 0

    def next_tokens(self, n: int) -> list[int]:
        for _ in range(100):
            last = self.counter("token")
            try:
                self.commit(Txn(counters={"token": last + n}))
            except Conflict:
                continue
            return list(range(last + 1, last + n + 1))
        raise Unavailable("etcd: the token counter keeps moving", store="etcd")

    # -- writes ---------------------------------------------------------------------------------------------------
    def fenced(self, term: int) -> FencedStore:
        """A view whose commits hold only while the leader key was created at revision ``term``."""
        return FencedStore(self, term)

    def commit(self, txn: Txn) -> int:
        return self._commit(txn, None)

    def commit_many(self, txns: Sequence[Txn]) -> list[int | UpdraftError]:
        return self.commit_many_fenced(txns, None)

    def commit_many_fenced(self, txns: Sequence[Txn], term: int | None) -> list[int | UpdraftError]:
        """Each txn is its own etcd Txn, all sent at once: etcd folds concurrent proposals into one Raft round
        and one fsync (its group commit). Order within a batch does not matter: two txns that touch the same
        key compare the same revision, so at most one of them can succeed, whichever goes first."""
        if len(txns) == 1:
            return [self._commit_one(txns[0], term)]
        return list(self._pool.map(lambda txn: self._commit_one(txn, term), txns))

    def _commit_one(self, txn: Txn, term: int | None) -> int | UpdraftError:
        try:
            return self._commit(txn, term)
        except (Conflict, Unavailable) as exc:
            return exc

    def _commit(self, txn: Txn, term: int | None) -> int:
        compare: list[dict[str, Any]] = []
        success: list[dict[str, Any]] = []
        failure: list[dict[str, Any]] = []
        checks: list[tuple[str, Callable[[dict[str, Any] | None], UpdraftError | None]]] = []

        def guard(key: str, cmp: dict[str, Any], check: Callable[[dict[str, Any] | None], UpdraftError | None],
                  keys_only: bool = True) -> None:
            compare.append({"key": b64(key), **cmp})
            failure.append({"request_range": {"key": b64(key), "keys_only": keys_only}})
            checks.append((key, check))

        if term is not None:
            guard(self.key("leader"), {"result": "EQUAL", "target": "CREATE", "create_revision": term},
                  partial(_still_leading, term))
        for name, floor in txn.counters.items():
            if name not in COUNTERS:
                raise ValueError(f"unknown counter {name!r}")
            key, value = self.key("counters", name), b64(counter_bytes(floor))
            less = {"key": b64(key), "result": "LESS", "target": "VALUE", "value": value}
            absent = {"key": b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
            put = {"request_put": {"key": b64(key), "value": value}}
            if name == "token":  # strictly increasing, or the whole txn is refused (see the module docstring)
                success.append(put)
                guard(key, {"result": "LESS", "target": "VALUE", "value": value},
                      partial(_token_below, floor), keys_only=False)
            else:  # a maximum: put only if the stored value is absent or lower
                success.append({"request_txn": {"compare": [absent], "success": [put],
                                                "failure": [{"request_txn": {"compare": [less], "success": [put],
                                                                             "failure": []}}]}})
        if txn.idempotency is not None:
            ikey, task_id, fingerprint = txn.idempotency
            key = self.key("idem", ikey)
            guard(key, {"result": "EQUAL", "target": "CREATE", "create_revision": 0},
                  partial(_key_free, ikey), keys_only=False)
            success.append({"request_put": {"key": b64(key),
                                            "value": b64(json.dumps({"task_id": task_id, "fingerprint": fingerprint}))}})
        for task, expect in txn.tasks:
            key = self.key("tasks", task.id)
            guard(key, _revision_is(expect), partial(_moved, expect, f"task {task.id}", {"task_id": task.id}))
            success.append({"request_put": {"key": b64(key), "value": b64(task.model_dump_json())}})
        for node, expect in txn.nodes:
            key = self.key("nodes", node.name)
            guard(key, _revision_is(expect), partial(_moved, expect, f"node {node.name}", {"node": node.name}))
            success.append({"request_put": {"key": b64(key), "value": b64(node.model_dump_json())}})
        if txn.events:
            lease, batch = self._history_lease(), uuid.uuid4().hex[:12]
            for i, event in enumerate(txn.events):
                key = self.key("events", event.task_id or "-", f"{batch}.{i:05d}")
                success.append({"request_put": {"key": b64(key), "value": b64(event.model_dump_json()),
                                                "lease": lease}})
        if not success:
            return self.revision()
        if "token" in txn.counters and not self._seeded:
            self._seed_counter("token")  # a value compare on a missing key always fails: create it at 0 once
            self._seeded = True
        try:
            result = self.txn(compare, success, failure)
        except Unavailable as exc:
            if "lease not found" in exc.message and txn.events:
                self._lease = None  # the history lease expired (e.g. after a long partition): grant a new one
            raise
        revision = int(result["header"]["revision"])
        if result.get("succeeded", False):
            return revision
        for (_key, check), response in zip(checks, result.get("responses", []), strict=False):
            kvs = response.get("response_range", {}).get("kvs", [])
            kv = kvs[0] if kvs else None
            if kv is not None and "value" in kv:
                kv["value"] = _decode(kv["value"]).decode()
            err = check(kv)
            if err is not None:
                raise err
        raise Conflict("the store moved since this transaction's reads", store="etcd")

    def _seed_counter(self, name: str) -> None:
        key = b64(self.key("counters", name))
        absent = {"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": 0}
        self.txn([absent], [{"request_put": {"key": key, "value": b64(counter_bytes(0))}}])

    def append_logs(self, task_id: str, token: int, entries: list[tuple[str, float, str]]) -> int:
        if not entries:
            return 0
        value = json.dumps({"token": token, "lines": entries})
        key = self.key("logs", task_id, uuid.uuid4().hex)
        lease = self._history_lease()
        self.net.call(lambda c: c.post(c.get_url("/kv/put"), json={"key": b64(key), "value": b64(value),
                                                                   "lease": lease}), retry=False)
        return len(entries)

    # -- reads ----------------------------------------------------------------------------------------------------
    def _parse(self, model: type[M], key: str, kv: dict[str, Any]) -> M | None:
        try:
            data = json.loads(kv["value"])
            data["revision"] = int(kv["mod_revision"])
            return model.model_validate(data)
        except (ValueError, pydantic.ValidationError) as exc:
            if key not in self._broken:
                log.error("store: %s %s cannot be read and is isolated: %s", model.__name__.lower(), key, exc)
                self._broken[key] = str(exc)
            return None

    def parse_task(self, kv: dict[str, Any]) -> Task | None:
        return self._parse(Task, kv["key"].rsplit("/", 1)[-1], kv)

    def parse_node(self, kv: dict[str, Any]) -> Node | None:
        return self._parse(Node, kv["key"].rsplit("/", 1)[-1], kv)

    def broken(self) -> list[str]:
        return sorted(self._broken)

    def get_node(self, name: str) -> Node | None:
        kvs, _ = self.range(self.key("nodes", name))
        return self.parse_node(kvs[0]) if kvs else None

    def list_nodes(self) -> list[Node]:
        kvs, _ = self.range(self.key("nodes", ""), prefix=True)
        return [n for n in map(self.parse_node, kvs) if n is not None]

    def get_task(self, task_id: str) -> Task | None:
        kvs, _ = self.range(self.key("tasks", task_id))
        return self.parse_task(kvs[0]) if kvs else None

    def list_tasks(
        self, states: Iterable[TaskState] | None = None, node: str | None = None, limit: int = 1000
    ) -> list[Task]:
        """Newest first (by creation), like the SQLite store; filtered here (etcd has no secondary index)."""
        unfiltered = states is None and node is None
        kvs, _ = self.range(self.key("tasks", ""), prefix=True, sort_order=2, sort_target=2,  # descend by create
                            **({"limit": limit} if unfiltered else {}))
        wanted = {str(s) for s in states} if states is not None else None
        out: list[Task] = []
        for kv in kvs:
            task = self.parse_task(kv)
            if task is None or (wanted is not None and str(task.state) not in wanted) or (node is not None and task.node != node):
                continue
            out.append(task)
            if len(out) >= limit:
                break
        return out

    def key_use(self, key: str) -> KeyUse | None:
        kvs, _ = self.range(self.key("idem", key))
        if not kvs:
            return None
        data = json.loads(kvs[0]["value"])
        return KeyUse(str(data["task_id"]), str(data["fingerprint"]))

    def list_events(self, task_id: str | None = None, after: int = 0, limit: int = 1000) -> list[Event]:
        base = self.key("events", task_id, "") if task_id is not None else self.key("events", "")
        kvs, _ = self.range(base, prefix=True, sort_order=1, sort_target=2,  # ascend by create revision
                            min_create_revision=max(after // EVENT_SEQ, 0))
        events = []
        for kv in sorted(kvs, key=lambda kv: (int(kv["create_revision"]), kv["key"])):
            seq = int(kv["create_revision"]) * EVENT_SEQ + int(kv["key"].rsplit(".", 1)[-1])
            if seq <= after:
                continue
            try:
                events.append(Event.model_validate_json(kv["value"]).model_copy(update={"id": seq}))
            except pydantic.ValidationError:
                log.error("store: event %s cannot be read; skipped", kv["key"])
            if len(events) >= limit:
                break
        return events

    def list_logs(self, task_id: str, after: int = 0, limit: int = 10000) -> list[LogEntry]:
        kvs, _ = self.range(self.key("logs", task_id, ""), prefix=True, sort_order=1, sort_target=2,
                            min_create_revision=max(after // LOG_SEQ, 0))
        out: list[LogEntry] = []
        for kv in sorted(kvs, key=lambda kv: int(kv["create_revision"])):
            batch = json.loads(kv["value"])
            base = int(kv["create_revision"]) * LOG_SEQ
            for i, (stream, at, data) in enumerate(batch["lines"]):
                if base + i > after:
                    out.append(LogEntry(base + i, task_id, int(batch["token"]), stream, at, data))
                    if len(out) >= limit:
                        return out
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        for client in self.net.clients:
            client.session.close()


class FencedStore:
    """The leader's view of an :class:`EtcdStore`: every commit also compares the leadership term."""

    def __init__(self, store: EtcdStore, term: int) -> None:
        self.store, self.term = store, term

    def commit_many(self, txns: Sequence[Txn]) -> list[int | UpdraftError]:
        return self.store.commit_many_fenced(txns, self.term)

    def commit(self, txn: Txn) -> int:
        return self.store._commit(txn, self.term)


def _revision_is(expect: int) -> dict[str, Any]:
    if expect == 0:
        return {"result": "EQUAL", "target": "CREATE", "create_revision": 0}
    return {"result": "EQUAL", "target": "MOD", "mod_revision": expect}


# -- what a failed compare means (each reads the key as the failure branch ranged it) ----------------------
KV = dict[str, Any] | None


def _moved(expect: int, what: str, details: dict[str, Any], kv: KV) -> Conflict | None:
    actual = int(kv["mod_revision"]) if kv else 0
    if actual == expect:
        return None
    return Conflict(f"{what} changed since revision {expect}", **details)


def _still_leading(term: int, kv: KV) -> Unavailable | None:
    if kv is not None and int(kv["create_revision"]) == term:
        return None
    return Unavailable(f"fenced: this server's leadership (term {term}) has ended; another server leads",
                       store="etcd", reason="fenced", term=term)


def _token_below(floor: int, kv: KV) -> Conflict | None:
    stored = int(kv["value"] or 0) if kv is not None else None
    if stored is not None and stored < floor:
        return None
    return Conflict(f"token counter already at {stored} (≥ {floor}): tokens were issued elsewhere", counter="token")


def _key_free(key: str, kv: KV) -> Conflict | None:
    if kv is None:
        return None
    data = json.loads(kv["value"])
    return Conflict(f"idempotency key {key!r} is already used", key=key, task_id=data["task_id"],
                    fingerprint=data["fingerprint"])
