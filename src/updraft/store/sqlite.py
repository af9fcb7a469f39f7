"""The embedded default store: one SQLite file in WAL mode. The only module with SQL in it.

Entities are stored as JSON with a ``rev`` column (the etcd ``mod_revision``); a global revision counter in
``meta`` moves by one per committed transaction. WAL with ``synchronous=NORMAL`` keeps every committed
transaction across a crash of the process (not necessarily of the operating system; set
``durable=True`` for ``synchronous=FULL``).

One connection writes (the control plane's single writer thread calls :meth:`commit_many`, which applies a
batch of transactions in one SQLite transaction, each inside its own savepoint); reads use one connection per
reading thread, so they neither wait for the writer nor block it (WAL readers see the last commit).

A row that cannot be read back (corrupted by hand, or written by a version whose rules were looser) is
isolated: reads skip it, log it once and list it in :meth:`broken`, so one bad record never breaks listing,
scheduling or metrics for everything else.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import pydantic

from updraft.errors import Conflict, Unavailable, UpdraftError
from updraft.model import Event, Node, Task, TaskState
from updraft.store.base import COUNTERS, KeyUse, LogEntry, Txn

log = logging.getLogger("updraft.store")
M = TypeVar("M", Task, Node)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, rev INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, rev INTEGER NOT NULL, state TEXT NOT NULL, node TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);
CREATE INDEX IF NOT EXISTS tasks_node ON tasks(node);
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, task_id TEXT NOT NULL, fingerprint TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, task_id TEXT, node TEXT,
    token INTEGER, message TEXT NOT NULL, code TEXT);
CREATE INDEX IF NOT EXISTS events_task ON events(task_id);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, token INTEGER NOT NULL, stream TEXT NOT NULL,
    at REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_task ON logs(task_id, id);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('token', 0), ('seq', 0);
"""


class SqliteStore:
    def __init__(self, path: str | Path, durable: bool = False) -> None:
        self.path = str(path)
        self._memory = self.path == ":memory:"
        self._sync = "FULL" if durable else "NORMAL"
        if not self._memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.RLock()  # the writer connection
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._broken: dict[str, str] = {}
        self._db = self._connect()
        self._db.executescript(_SCHEMA)
        if not self._memory:
            for suffix in ("", "-wal", "-shm"):  # task env may hold secrets: owner only
                if os.path.exists(self.path + suffix):
                    os.chmod(self.path + suffix, 0o600)

    def _connect(self, cache_kib: int = 8192) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open the store at {self.path}: {exc}") from exc
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._sync}")
        db.execute(f"PRAGMA cache_size=-{cache_kib}")  # per connection: the readers get a small one
        return db

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (the writer's own for an in-memory database)."""
        if self._memory:
            return self._db
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect(cache_kib=128)
            with self._lock:
                self._readers.append(db)
        return db

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        if self._memory:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        return self._reader().execute(sql, args).fetchall()

    # -- counters -------------------------------------------------------------------------------------
    def _bump(self, key: str, n: int = 1) -> int:
        row = self._db.execute("UPDATE meta SET value = value + ? WHERE key = ? RETURNING value", (n, key)).fetchone()
        return int(row[0])

    def revision(self) -> int:
        return self.counter("revision")

    def counter(self, name: str) -> int:
        return int(self._read("SELECT value FROM meta WHERE key = ?", (name,))[0][0])  # type: ignore[call-overload]

    def next_tokens(self, n: int) -> list[int]:
        with self._lock, _Transaction(self._db):
            last = self._bump("token", n)
        return list(range(last - n + 1, last + 1))

    # -- writes ---------------------------------------------------------------------------------------
    def commit(self, txn: Txn) -> int:
        result = self.commit_many([txn])[0]
        if isinstance(result, UpdraftError):
            raise result
        return result

    def commit_many(self, txns: Sequence[Txn]) -> list[int | UpdraftError]:
        out: list[int | UpdraftError] = []
        with self._lock, _Transaction(self._db):
            for txn in txns:
                self._db.execute("SAVEPOINT txn")
                try:
                    out.append(self._apply(txn))
                except UpdraftError as exc:
                    self._db.execute("ROLLBACK TO txn")
                    out.append(exc)
                self._db.execute("RELEASE txn")
        return out

    def _apply(self, txn: Txn) -> int:
        db = self._db
        rev = self._bump("revision")
        for name, floor in txn.counters.items():
            if name not in COUNTERS:
                raise ValueError(f"unknown counter {name!r}")
            db.execute("UPDATE meta SET value = MAX(value, ?) WHERE key = ?", (floor, name))
        if txn.idempotency is not None:
            key, task_id, fingerprint = txn.idempotency
            row = db.execute("SELECT task_id, fingerprint FROM idempotency WHERE key = ?", (key,)).fetchone()
            if row:
                raise Conflict(
                    f"idempotency key {key!r} is already used", key=key, task_id=row[0], fingerprint=row[1]
                )
            db.execute("INSERT INTO idempotency (key, task_id, fingerprint) VALUES (?, ?, ?)", (key, task_id, fingerprint))
        for task, expect in txn.tasks:
            row = db.execute("SELECT rev FROM tasks WHERE id = ?", (task.id,)).fetchone()
            if (row[0] if row else 0) != expect:
                raise Conflict(f"task {task.id} changed since revision {expect}", task_id=task.id)
            data = task.model_copy(update={"revision": rev}).model_dump_json()
            db.execute(
                "INSERT INTO tasks (id, rev, state, node, data) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
                "SET rev = excluded.rev, state = excluded.state, node = excluded.node, data = excluded.data",
                (task.id, rev, str(task.state), task.node, data),
            )
        for node, expect in txn.nodes:
            row = db.execute("SELECT rev FROM nodes WHERE name = ?", (node.name,)).fetchone()
            if (row[0] if row else 0) != expect:
                raise Conflict(f"node {node.name} changed since revision {expect}", node=node.name)
            data = node.model_copy(update={"revision": rev}).model_dump_json()
            db.execute(
                "INSERT INTO nodes (name, rev, data) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                "SET rev = excluded.rev, data = excluded.data",
                (node.name, rev, data),
            )
        db.executemany(
            "INSERT INTO events (at, kind, task_id, node, token, message, code) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.at, str(e.kind), e.task_id, e.node, e.token, e.message, e.code) for e in txn.events],
        )
        return rev

    def append_logs(self, task_id: str, token: int, entries: list[tuple[str, float, str]]) -> int:
        with self._lock, _Transaction(self._db):
            self._db.executemany(
                "INSERT INTO logs (task_id, token, stream, at, data) VALUES (?, ?, ?, ?, ?)",
                [(task_id, token, stream, at, data) for stream, at, data in entries],
            )
            return len(entries)

    # -- reads ----------------------------------------------------------------------------------------
    def _parse(self, model: type[M], key: str, data: object) -> M | None:
        try:
            return model.model_validate_json(str(data))
        except pydantic.ValidationError as exc:
            if key not in self._broken:
                log.error("store: %s %s cannot be read and is isolated: %s", model.__name__.lower(), key, exc)
                self._broken[key] = str(exc)
            return None

    def _parse_all(self, model: type[M], rows: list[tuple[object, ...]]) -> list[M]:
        parsed = (self._parse(model, str(r[0]), r[1]) for r in rows)
        return [m for m in parsed if m is not None]

    def broken(self) -> list[str]:
        return sorted(self._broken)

    def get_node(self, name: str) -> Node | None:
        rows = self._read("SELECT name, data FROM nodes WHERE name = ?", (name,))
        return self._parse(Node, name, rows[0][1]) if rows else None

    def list_nodes(self) -> list[Node]:
        return self._parse_all(Node, self._read("SELECT name, data FROM nodes ORDER BY name"))

    def get_task(self, task_id: str) -> Task | None:
        rows = self._read("SELECT id, data FROM tasks WHERE id = ?", (task_id,))
        return self._parse(Task, task_id, rows[0][1]) if rows else None

    def list_tasks(
        self, states: Iterable[TaskState] | None = None, node: str | None = None, limit: int = 1000
    ) -> list[Task]:
        sql, args = "SELECT id, data FROM tasks WHERE 1=1", list[object]()
        if states is not None:
            wanted = [str(s) for s in states]
            sql += f" AND state IN ({','.join('?' * len(wanted))})"
            args += wanted
        if node is not None:
            sql += " AND node = ?"
            args.append(node)
        sql += " ORDER BY rowid DESC LIMIT ?"
        args.append(limit)
        return self._parse_all(Task, self._read(sql, args))

    def key_use(self, key: str) -> KeyUse | None:
        rows = self._read("SELECT task_id, fingerprint FROM idempotency WHERE key = ?", (key,))
        return KeyUse(str(rows[0][0]), str(rows[0][1])) if rows else None

    def list_events(self, task_id: str | None = None, after: int = 0, limit: int = 1000) -> list[Event]:
        sql = "SELECT id, at, kind, task_id, node, token, message, code FROM events WHERE id > ?"
        args: list[object] = [after]
        if task_id is not None:
            sql += " AND task_id = ?"
            args.append(task_id)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        keys = ("id", "at", "kind", "task_id", "node", "token", "message", "code")
        return [Event.model_validate(dict(zip(keys, r, strict=True))) for r in self._read(sql, args)]

    def list_logs(self, task_id: str, after: int = 0, limit: int = 10000) -> list[LogEntry]:
        rows = self._read(
            "SELECT id, task_id, token, stream, at, data FROM logs WHERE task_id = ? AND id > ? ORDER BY id LIMIT ?",
            (task_id, after, limit),
        )
        return [LogEntry(*r) for r in rows]  # type: ignore[arg-type]

    def close(self) -> None:
        with self._lock:
            for db in self._readers:
                db.close()
            self._db.close()


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
