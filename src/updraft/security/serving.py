"""Start-up rules for serving: the first admin token, where plain HTTP or no auth is allowed, TLS contexts.

* :func:`bootstrap_admin` — on a server's first start (no live admin token in the store) create one, store its
  hash, and write the token in clear only to ``DATA_DIR/admin.token`` (0600, in a 0700 directory). The
  server logs the *path*, never the token.
* :func:`check_exposure` — refuses to start an unsafe combination: authentication off anywhere but loopback;
  plain HTTP off loopback without ``--insecure-http``.
* :func:`server_ssl` / :func:`client_ssl` — the uvicorn arguments and the ``ssl.SSLContext`` an agent, the
  SDK or the CLI verifies the server with (``--ca``), with a client certificate for mutual TLS.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from updraft.errors import ValidationError
from updraft.images.reference import is_loopback
from updraft.security.pki import private_dir, write_private
from updraft.security.tokens import Role, TokenRecord, generate

ADMIN_TOKEN_FILE = "admin.token"


def bootstrap_admin(
    data_dir: Path,
    tokens: list[TokenRecord],
    put: Callable[[TokenRecord], None],
    now: float,
) -> Path | None:
    """Create the first admin token when none is live; return the file it was written to, or None."""
    if any(t.role is Role.ADMIN and t.revoked_at is None and not t.expired(now) for t in tokens):
        return None
    token, record = generate(Role.ADMIN, now, description="created at first start")
    private_dir(data_dir)
    path = write_private(data_dir / ADMIN_TOKEN_FILE, (token + "\n").encode(), overwrite=True)
    put(record)
    return path


def read_token_file(path: str | Path) -> str:
    """A token from a file (``--token-file``): the first line, stripped. Tokens never need to be in argv."""
    try:
        text = Path(path).read_text().strip().splitlines()
    except OSError as exc:
        raise ValidationError(f"token file {path}: {exc.strerror}", field="token_file") from exc
    if not text or not text[0].strip():
        raise ValidationError(f"token file {path} is empty", field="token_file")
    return text[0].strip()


def check_exposure(host: str, *, auth: bool, tls: bool, insecure_http: bool = False) -> list[str]:
    """Refuse an unsafe listener (raises ValidationError); return warnings worth logging."""
    loopback = is_loopback(host)
    if not auth and not loopback:
        raise ValidationError(
            f"refusing to serve without authentication on {host}: only a loopback address may (--no-auth)",
            field="host",
        )
    if not tls and not loopback and not insecure_http:
        raise ValidationError(
            f"refusing plain HTTP on {host}: give --tls-cert/--tls-key (see `updraft cert`), or --insecure-http "
            "on a network you trust",
            field="host",
        )
    warnings = []
    if not auth:
        warnings.append("authentication is off (loopback only): every local user is admin")
    if not tls and not loopback:
        warnings.append(f"serving plain HTTP on {host}: tokens cross the network in clear")
    return warnings


def server_ssl(cert: str | Path, key: str | Path, client_ca: str | Path | None = None) -> dict[str, Any]:
    """``uvicorn.run(**server_ssl(...))``: HTTPS, and with ``client_ca`` mutual TLS (client certs required)."""
    for path in (cert, key, client_ca):
        if path is not None and not Path(path).is_file():
            raise ValidationError(f"TLS: {path} is not a file", field="tls")
    out: dict[str, Any] = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    if client_ca is not None:
        out |= {"ssl_ca_certs": str(client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return out


def client_ssl(ca: str | Path | None, cert: str | Path | None = None, key: str | Path | None = None) -> ssl.SSLContext:
    """The context to verify the server with (``httpx.Client(verify=...)``); ``cert``/``key`` for mutual TLS."""
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValidationError(f"TLS: cannot load {ca or cert}: {exc}", field="ca") from exc
    return ctx
