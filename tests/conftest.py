"""Shared fixtures: a fake clock, a SQLite store in a tmp dir, and a control service over both."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from updraft.clock import FakeClock
from updraft.control import ControlService
from updraft.settings import ServerSettings
from updraft.store import SqliteStore


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(start=1_000_000.0)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "updraft.db")
    yield store
    store.close()


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(data_dir=tmp_path)


@pytest.fixture
def service(sqlite_store: SqliteStore, server_settings: ServerSettings, fake_clock: FakeClock) -> ControlService:
    return ControlService(sqlite_store, server_settings, fake_clock, rng=random.Random(0))
