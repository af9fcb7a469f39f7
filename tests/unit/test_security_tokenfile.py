"""Token records in DATA_DIR/tokens.json (security/tokenfile.py)."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from updraft.errors import Forbidden, ValidationError
from updraft.security import Role, generate
from updraft.security.tokenfile import FileTokenStore

NOW = 1_000_000.0


def test_records_survive_a_restart_and_hold_no_token(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "data" / "tokens.json", lambda: NOW)
    token, record = generate(Role.SUBMITTER, NOW)
    store.put_token(record)
    path = tmp_path / "data" / "tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert token not in path.read_text()
    again = FileTokenStore(path, lambda: NOW)
    assert again.get_token(record.id) == record and again.list_tokens() == [record]


def test_binding_is_atomic_and_exclusive(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "tokens.json", lambda: NOW)
    joins = [generate(Role.NODE, NOW)[1] for _ in range(8)]
    for j in joins:
        store.put_token(j)
    won: list[str] = []
    lost: list[str] = []

    def take(record: object) -> None:
        try:
            store.bind(record, "edge-1")  # type: ignore[arg-type]
            won.append("x")
        except Forbidden:
            lost.append("x")

    threads = [threading.Thread(target=take, args=(j,)) for j in joins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7
    assert [r.node for r in store.list_tokens()].count("edge-1") == 1
    winner = next(r for r in store.list_tokens() if r.node == "edge-1")
    assert store.bind(winner, "edge-1").node == "edge-1"  # binding again to its own name is a no-op
    with pytest.raises(Forbidden):
        store.bind(winner, "edge-2")


def test_a_corrupt_file_is_refused_loudly(tmp_path: Path) -> None:
    (tmp_path / "tokens.json").write_text("{not json")
    with pytest.raises(ValidationError):
        FileTokenStore(tmp_path / "tokens.json", lambda: NOW)
