"""Persistence behind a narrow protocol; ``SqliteStore`` is the embedded default, ``EtcdStore`` the HA one."""

from updraft.store.base import KeyUse, LogEntry, Store, Txn
from updraft.store.etcd import EtcdStore, FencedStore
from updraft.store.sqlite import SqliteStore

__all__ = ["EtcdStore", "FencedStore", "KeyUse", "LogEntry", "SqliteStore", "Store", "Txn"]
