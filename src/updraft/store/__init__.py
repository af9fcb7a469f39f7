"""Persistence behind a narrow protocol; ``SqliteStore`` is the embedded default."""

from updraft.store.base import LogEntry, Store, Txn
from updraft.store.sqlite import SqliteStore

__all__ = ["LogEntry", "SqliteStore", "Store", "Txn"]
