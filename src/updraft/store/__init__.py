"""Persistence behind a narrow protocol; ``SqliteStore`` is the embedded default, ``EtcdStore`` the HA one.

The etcd store is imported on first use (its client library costs ~20 MB resident), so a server on SQLite
never loads it.
"""

from typing import TYPE_CHECKING, Any

from updraft.store.base import KeyUse, LogEntry, Store, Txn
from updraft.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from updraft.store.etcd import EtcdStore, FencedStore

__all__ = ["EtcdStore", "FencedStore", "KeyUse", "LogEntry", "SqliteStore", "Store", "Txn"]


def __getattr__(name: str) -> Any:
    if name in ("EtcdStore", "FencedStore"):
        from updraft.store import etcd

        return getattr(etcd, name)
    raise AttributeError(f"module 'updraft.store' has no attribute {name!r}")
