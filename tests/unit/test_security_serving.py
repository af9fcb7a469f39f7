"""Start-up rules: the first admin token, unsafe listeners refused, TLS contexts (security/serving.py)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading
from pathlib import Path

import httpx
import pytest

from updraft.errors import ValidationError
from updraft.security import Role, TokenRecord, authenticate, pki
from updraft.security.serving import (
    bootstrap_admin,
    check_exposure,
    client_ssl,
    read_token_file,
    server_ssl,
)

NOW = 1_000_000.0


def test_first_start_creates_one_admin_token_readable_only_by_its_owner(tmp_path: Path) -> None:
    store: dict[str, TokenRecord] = {}
    data = tmp_path / "data"
    path = bootstrap_admin(data, list(store.values()), lambda r: store.__setitem__(r.id, r), NOW)
    assert path == data / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(data.stat().st_mode) == 0o700
    token = read_token_file(path)
    record, decision = authenticate(token, store.get, NOW)
    assert decision.allowed and record is not None and record.role is Role.ADMIN
    assert token not in record.model_dump_json()
    # a second start finds the live admin and creates nothing
    assert bootstrap_admin(data, list(store.values()), lambda r: store.__setitem__(r.id, r), NOW) is None
    assert len(store) == 1 and read_token_file(path) == token


def test_a_revoked_admin_is_replaced(tmp_path: Path) -> None:
    store: dict[str, TokenRecord] = {}
    bootstrap_admin(tmp_path, [], lambda r: store.__setitem__(r.id, r), NOW)
    (old,) = store.values()
    store[old.id] = old.model_copy(update={"revoked_at": NOW})
    assert bootstrap_admin(tmp_path, list(store.values()), lambda r: store.__setitem__(r.id, r), NOW) is not None
    assert len(store) == 2


def test_token_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        read_token_file(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValidationError):
        read_token_file(tmp_path / "empty")


@pytest.mark.parametrize(
    ("host", "auth", "tls", "insecure", "ok"),
    [
        ("127.0.0.1", False, False, False, True),
        ("::1", False, False, False, True),
        ("localhost", True, False, False, True),
        ("0.0.0.0", False, True, False, False),  # no auth off loopback, even with TLS
        ("0.0.0.0", True, False, False, False),  # plain HTTP off loopback needs the flag
        ("0.0.0.0", True, False, True, True),
        ("10.0.0.5", True, True, False, True),
    ],
)
def test_check_exposure(host: str, auth: bool, tls: bool, insecure: bool, ok: bool) -> None:
    if ok:
        check_exposure(host, auth=auth, tls=tls, insecure_http=insecure)
    else:
        with pytest.raises(ValidationError):
            check_exposure(host, auth=auth, tls=tls, insecure_http=insecure)


def test_server_and_client_contexts_speak_https(tmp_path: Path) -> None:
    """A real HTTPS round trip: uvicorn's arguments turned into a server context, httpx verifying with --ca."""
    now = dt.datetime.now(dt.UTC)
    ca = pki.create_ca(now)
    ca_crt, _ = pki.save(ca, tmp_path, "ca")
    crt, key = pki.save(pki.issue(ca, "server", "server", now, ips=["127.0.0.1"]), tmp_path, "server")
    args = server_ssl(crt, key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(args["ssl_certfile"], args["ssl_keyfile"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            s.recv(4096)
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with httpx.Client(verify=client_ssl(ca_crt)) as client:
        assert client.get(f"https://127.0.0.1:{port}/").text == "ok"
    t.join(5)
    listener.close()
    with pytest.raises(ValidationError):
        server_ssl(tmp_path / "nope.crt", key)
    assert server_ssl(crt, key, ca_crt)["ssl_cert_reqs"] == ssl.CERT_REQUIRED
