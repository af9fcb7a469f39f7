"""Token records kept in one small file beside the store: ``DATA_DIR/tokens.json`` (mode 0600).

Why a file and not the task store: tokens change rarely (an admin creates or revokes one), are read on every
request (so they live in memory), and must be readable before anything else starts. A file rewritten
atomically (write a temporary file, ``fsync``, ``rename``) gives that with no schema, and the same
:class:`~updraft.security.http.TokenStore` protocol can later be served by the etcd store.

Only :class:`~updraft.security.tokens.TokenRecord` values are written — hashes, never tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from updraft.errors import ValidationError
from updraft.security.pki import private_dir
from updraft.security.tokens import Decision, TokenRecord, may_bind


class FileTokenStore:
    """Thread-safe; every change is written through before it is visible to readers."""

    def __init__(self, path: Path, now: Callable[[], float]) -> None:
        self.path, self.now = path, now
        self._lock = threading.Lock()
        self._records: dict[str, TokenRecord] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        private_dir(path.parent)
        if path.exists():
            self._records = self._read()
            if path.stat().st_uid == os.getuid():
                path.chmod(0o600)

    def _read(self) -> dict[str, TokenRecord]:
        try:
            st = self.path.stat()
            data = json.loads(self.path.read_text())
            records = {r["id"]: TokenRecord.model_validate(r) for r in data.get("tokens", [])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValidationError(f"cannot read token records from {self.path}: {exc}", field="tokens") from exc
        self._stamp = (st.st_mtime_ns, st.st_size)
        return records

    def _fresh(self) -> dict[str, TokenRecord]:
        """The records, re-read at most once a second if another server sharing the file changed it."""
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            try:
                st = self.path.stat()
            except OSError:
                return self._records
            if (st.st_mtime_ns, st.st_size) != self._stamp:
                with self._lock, contextlib.suppress(ValidationError):
                    self._records = self._read()
        return self._records

    def _latest(self) -> dict[str, TokenRecord]:
        """Before a change: what is on disk now (another server may share the file)."""
        return self._read() if self.path.exists() else self._records

    def get_token(self, token_id: str) -> TokenRecord | None:
        return self._fresh().get(token_id)

    def list_tokens(self) -> list[TokenRecord]:
        return sorted(self._fresh().values(), key=lambda r: (r.created_at, r.id))

    def put_token(self, record: TokenRecord) -> None:
        with self._lock:
            records = {**self._latest(), record.id: record}
            self._write(records)
            self._records = records

    def bind(self, record: TokenRecord, node: str) -> TokenRecord:
        """Bind join token ``record`` to ``node`` unless another live token holds that name (403 ``taken``)."""
        with self._lock:
            self._records = self._latest()
            current = self._records.get(record.id, record)
            if current.node is not None:  # bound meanwhile (a concurrent first register): judge as bound
                if current.node != node:
                    Decision(False, "wrong_node", f"this token acts only as node {current.node}").check()
                return current
            may_bind(current, node, self._records.values(), self.now()).check()
            bound = current.model_copy(update={"node": node})
            records = {**self._records, bound.id: bound}
            self._write(records)
            self._records = records
            return bound

    def _write(self, records: dict[str, TokenRecord]) -> None:
        body = json.dumps({"tokens": [r.model_dump(mode="json") for r in records.values()]}, indent=1)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        st = self.path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size)
