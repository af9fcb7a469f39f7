"""A durable outbox: reports and logs wait here, in order, until the control plane has taken them.

While an edge node is cut off it keeps running and keeps writing here; when the link returns the agent
delivers the entries in order. The file survives ``kill -9`` of the agent. It also remembers which attempts
finished, so a restarted agent never starts one of them again. Which entry goes next, and what an answer
means, is the state machine's decision (:mod:`updraft.agent.state`); this is only the disk.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

from updraft.agent.events import Entry, EntryKind
from updraft.agent.runtime import Key

MAX_BATCH_LINES, MAX_BATCH_BYTES = 2000, 256 * 1024  # well within the API's limits (10000 lines, 1 MiB)


def next_batch(entries: list[Entry]) -> tuple[Entry, ...]:
    """What to send next: the oldest entry, with the log lines of the same attempt queued right after it."""
    first = entries[0]
    batch = [first]
    if first.kind is EntryKind.LOG:
        lines = len(first.body["lines"])
        size = sum(len(x["data"]) for x in first.body["lines"])
        for x in entries[1:]:
            if x.kind is not EntryKind.LOG or x.key != first.key or lines > MAX_BATCH_LINES or size > MAX_BATCH_BYTES:
                break
            batch.append(x)
            lines += len(x.body["lines"])
            size += sum(len(y["data"]) for y in x.body["lines"])
    return tuple(batch)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,
    task_id TEXT NOT NULL, token INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS finished (task_id TEXT NOT NULL, token INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (task_id, token));
"""


class Outbox:
    def __init__(self, path: str | Path) -> None:
        folder = Path(path).parent
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # task results and log lines wait here: owner only
        old = os.umask(0o077)
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        finally:
            os.umask(old)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()  # the driver writes; /metrics reads the length
        self._synchronous = ""

    def _sync(self, durable: bool) -> None:
        """FULL: the commit is on disk when it returns (fsync of the WAL). NORMAL: it survives the process
        (kill -9) at once and power loss from the next FULL commit on, which fsyncs the WAL with everything
        before it. Log lines and acks are NORMAL: a line per frame, each fsynced, would throttle a chatty task's
        output to the disk's fsync rate; a lost ack only means a resend."""
        mode = "FULL" if durable else "NORMAL"
        if mode != self._synchronous:
            self._db.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode

    def put(self, entry: Entry, finished_at: float | None = None) -> None:
        with self._lock:
            self._sync(entry.kind is not EntryKind.LOG or finished_at is not None)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO outbox (seq, kind, task_id, token, body) VALUES (?, ?, ?, ?, ?)",
                (entry.seq, entry.kind.value, *entry.key, json.dumps(entry.body)),
            )
            if finished_at is not None:
                self._db.execute("INSERT OR IGNORE INTO finished VALUES (?, ?, ?)", (*entry.key, finished_at))
            self._db.execute("COMMIT")

    def entries(self) -> list[Entry]:
        with self._lock:
            rows = self._db.execute("SELECT seq, kind, task_id, token, body FROM outbox ORDER BY seq").fetchall()
        return [Entry(r[0], EntryKind(r[1]), (r[2], r[3]), json.loads(r[4])) for r in rows]

    def ack(self, seqs: tuple[int, ...] | list[int]) -> None:
        with self._lock:
            self._sync(False)
            self._db.execute("BEGIN IMMEDIATE")  # one transaction, not one (synced) commit per entry
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self._db.execute("COMMIT")

    def drop_attempt(self, key: Key) -> None:
        """Forget everything queued for a fenced attempt: the server will refuse it anyway."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE task_id = ? AND token = ?", key)

    def finished(self) -> set[Key]:
        with self._lock:
            return {(r[0], r[1]) for r in self._db.execute("SELECT task_id, token FROM finished")}

    def prune_finished(self, keep: frozenset[Key] | set[Key]) -> None:
        with self._lock:
            rows = {(r[0], r[1]) for r in self._db.execute("SELECT task_id, token FROM finished")}
            self._db.executemany("DELETE FROM finished WHERE task_id = ? AND token = ?", list(rows - keep))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
