"""Token records kept in one small file beside the store: ``DATA_DIR/tokens.json`` (mode 0600).

Why a file and not the task store: tokens change rarely (an admin creates or revokes one), are read on every
request (so they live in memory), and must be readable before anything else starts. A file rewritten
atomically (write a temporary file, ``fsync``, ``rename``) gives that with no schema, and the same
:class:`~updraft.security.http.TokenStore` protocol can later be served by the etcd store.

Only :class:`~updraft.security.tokens.TokenRecord` values are written — hashes, never tokens.
"""

from __future__ import annotations

import json
import os
import threading
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
        private_dir(path.parent)
        if path.exists():
            try:
                data = json.loads(path.read_text())
                self._records = {r["id"]: TokenRecord.model_validate(r) for r in data.get("tokens", [])}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ValidationError(f"cannot read token records from {path}: {exc}", field="tokens") from exc
            if path.stat().st_uid == os.getuid():
                path.chmod(0o600)

    def get_token(self, token_id: str) -> TokenRecord | None:
        return self._records.get(token_id)

    def list_tokens(self) -> list[TokenRecord]:
        return sorted(self._records.values(), key=lambda r: (r.created_at, r.id))

    def put_token(self, record: TokenRecord) -> None:
        with self._lock:
            records = {**self._records, record.id: record}
            self._write(records)
            self._records = records

    def bind(self, record: TokenRecord, node: str) -> TokenRecord:
        """Bind join token ``record`` to ``node`` unless another live token holds that name (403 ``taken``)."""
        with self._lock:
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
