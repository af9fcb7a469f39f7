"""Persistence behind a narrow protocol; ``SqliteStore`` is the embedded default."""

from updraft.store.base import KeyUse, LogEntry, Store, Txn
from updraft.store.sqlite import SqliteStore

__all__ = ["KeyUse", "LogEntry", "SqliteStore", "Store", "Txn"]
