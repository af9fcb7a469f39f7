"""The embedded default store: one SQLite file in WAL mode. The only module with SQL in it.

Entities are stored as JSON with a ``rev`` column (the etcd ``mod_revision``); a global revision counter in
``meta`` moves by one per committed transaction. WAL with ``synchronous=NORMAL`` keeps every committed
transaction across a crash of the process (not necessarily of the operating system; set
``durable=True`` for ``synchronous=FULL``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from updraft.errors import Conflict, Unavailable
from updraft.model import Event, Node, Task, TaskState
from updraft.store.base import LogEntry, Txn

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, rev INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, rev INTEGER NOT NULL, state TEXT NOT NULL, node TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, task_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, task_id TEXT, node TEXT,
    token INTEGER, message TEXT NOT NULL);
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
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open the store at {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(_SCHEMA)

    # -- counters -------------------------------------------------------------------------------------
    def _bump(self, key: str, n: int = 1) -> int:
        row = self._db.execute("UPDATE meta SET value = value + ? WHERE key = ? RETURNING value", (n, key)).fetchone()
        return int(row[0])

    def revision(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0])

    def next_tokens(self, n: int) -> list[int]:
        with self._lock, self._tx():
            last = self._bump("token", n)
        return list(range(last - n + 1, last + 1))

    def next_seq(self) -> int:
        with self._lock, self._tx():
            return self._bump("seq")

    # -- writes ---------------------------------------------------------------------------------------
    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def commit(self, txn: Txn) -> int:
        with self._lock, self._tx():
            rev = self._bump("revision")
            for task, expect in txn.tasks:
                row = self._db.execute("SELECT rev FROM tasks WHERE id = ?", (task.id,)).fetchone()
                if (row[0] if row else 0) != expect:
                    raise Conflict(f"task {task.id} changed since revision {expect}", task_id=task.id)
                data = task.model_copy(update={"revision": rev}).model_dump_json()
                self._db.execute(
                    "INSERT OR REPLACE INTO tasks (id, rev, state, node, data) VALUES (?, ?, ?, ?, ?)",
                    (task.id, rev, str(task.state), task.node, data),
                )
            for node, expect in txn.nodes:
                row = self._db.execute("SELECT rev FROM nodes WHERE name = ?", (node.name,)).fetchone()
                if (row[0] if row else 0) != expect:
                    raise Conflict(f"node {node.name} changed since revision {expect}", node=node.name)
                data = node.model_copy(update={"revision": rev}).model_dump_json()
                self._db.execute(
                    "INSERT OR REPLACE INTO nodes (name, rev, data) VALUES (?, ?, ?)", (node.name, rev, data)
                )
            if txn.idempotency is not None:
                key = txn.idempotency[0]
                if self._db.execute("SELECT 1 FROM idempotency WHERE key = ?", (key,)).fetchone():
                    raise Conflict(f"idempotency key {key!r} is already used", key=key)
                self._db.execute("INSERT INTO idempotency (key, task_id) VALUES (?, ?)", txn.idempotency)
            self._db.executemany(
                "INSERT INTO events (at, kind, task_id, node, token, message) VALUES (?, ?, ?, ?, ?, ?)",
                [(e.at, e.kind, e.task_id, e.node, e.token, e.message) for e in txn.events],
            )
            return rev

    def append_logs(self, task_id: str, token: int, entries: list[tuple[str, float, str]]) -> int:
        with self._lock, self._tx():
            self._db.executemany(
                "INSERT INTO logs (task_id, token, stream, at, data) VALUES (?, ?, ?, ?, ?)",
                [(task_id, token, stream, at, data) for stream, at, data in entries],
            )
            return len(entries)

    # -- reads ----------------------------------------------------------------------------------------
    def get_node(self, name: str) -> Node | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM nodes WHERE name = ?", (name,)).fetchone()
        return Node.model_validate_json(row[0]) if row else None

    def list_nodes(self) -> list[Node]:
        with self._lock:
            rows = self._db.execute("SELECT data FROM nodes ORDER BY name").fetchall()
        return [Node.model_validate_json(r[0]) for r in rows]

    def get_task(self, task_id: str) -> Task | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return Task.model_validate_json(row[0]) if row else None

    def list_tasks(
        self, states: Iterable[TaskState] | None = None, node: str | None = None, limit: int = 1000
    ) -> list[Task]:
        sql, args = "SELECT data FROM tasks WHERE 1=1", []
        if states is not None:
            wanted = [str(s) for s in states]
            sql += f" AND state IN ({','.join('?' * len(wanted))})"
            args += wanted
        if node is not None:
            sql += " AND node = ?"
            args.append(node)
        sql += " ORDER BY rowid DESC LIMIT ?"
        args.append(str(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [Task.model_validate_json(r[0]) for r in rows]

    def task_for_key(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT task_id FROM idempotency WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def list_events(self, task_id: str | None = None, after: int = 0, limit: int = 1000) -> list[Event]:
        sql = "SELECT id, at, kind, task_id, node, token, message FROM events WHERE id > ?"
        args: list[object] = [after]
        if task_id is not None:
            sql += " AND task_id = ?"
            args.append(task_id)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [Event(id=r[0], at=r[1], kind=r[2], task_id=r[3], node=r[4], token=r[5], message=r[6]) for r in rows]

    def list_logs(self, task_id: str, after: int = 0, limit: int = 10000) -> list[LogEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, task_id, token, stream, at, data FROM logs WHERE task_id = ? AND id > ? ORDER BY id LIMIT ?",
                (task_id, after, limit),
            ).fetchall()
        return [LogEntry(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
