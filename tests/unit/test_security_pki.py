"""The PKI: certificates the stdlib ssl module accepts, checked by a real TLS handshake over a socket pair."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest

from updraft.errors import ValidationError
from updraft.security import pki

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def ca() -> pki.KeyPair:
    return pki.create_ca(NOW)


def _files(tmp: Path, pair: pki.KeyPair, name: str) -> tuple[str, str]:
    cert, key = pki.save(pair, tmp, name)
    return str(cert), str(key)


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> tuple[str, dict | None]:
    """Run both ends of a TLS handshake; return the client's view (cipher) and the client cert the server saw."""
    a, b = socket.socketpair()
    seen: dict[str, object] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                seen["peer"] = s.getpeercert()
                s.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            seen["error"] = exc

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=hostname) as c:
            data = c.recv(2)
            assert data == b"ok"
            version = c.version() or ""
    finally:
        b.close()
        t.join(10)
    if "error" in seen:
        raise seen["error"]  # type: ignore[misc]
    return version, seen.get("peer")  # type: ignore[return-value]


def server_context(tmp: Path, pair: pki.KeyPair, ca: pki.KeyPair | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*_files(tmp, pair, "server"))
    if ca is not None:  # mutual TLS
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=ca.cert_pem.decode())
    return ctx


def client_context(ca: pki.KeyPair, tmp: Path | None = None, pair: pki.KeyPair | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    if pair is not None and tmp is not None:
        ctx.load_cert_chain(*_files(tmp, pair, "client"))
    return ctx


@pytest.mark.parametrize("hostname", ["localhost", "updraft.lan", "127.0.0.1", "::1"])
def test_a_server_cert_verifies_against_the_ca_for_each_san(ca: pki.KeyPair, tmp_path: Path, hostname: str) -> None:
    server = pki.issue(ca, "server", "server", NOW, dns=["localhost", "updraft.lan"], ips=["127.0.0.1", "::1"])
    version, _ = handshake(server_context(tmp_path, server), client_context(ca), hostname)
    assert version.startswith("TLSv1.")


def test_a_name_not_in_the_sans_is_refused(ca: pki.KeyPair, tmp_path: Path) -> None:
    server = pki.issue(ca, "server", "server", NOW, dns=["localhost"])
    with pytest.raises(ssl.SSLCertVerificationError, match=r"match|mismatch"):
        handshake(server_context(tmp_path, server), client_context(ca), "evil.example")


def test_a_cert_from_another_ca_is_refused(ca: pki.KeyPair, tmp_path: Path) -> None:
    other = pki.create_ca(NOW, "someone else")
    server = pki.issue(other, "server", "server", NOW, dns=["localhost"])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(tmp_path, server), client_context(ca), "localhost")


def test_mutual_tls_identifies_the_agent_by_its_common_name(ca: pki.KeyPair, tmp_path: Path) -> None:
    server = pki.issue(ca, "server", "server", NOW, dns=["localhost"])
    agent = pki.issue(ca, "edge-1", "agent", NOW, dns=["edge-1"])
    (tmp_path / "c").mkdir()
    _, peer = handshake(server_context(tmp_path, server, ca), client_context(ca, tmp_path / "c", agent), "localhost")
    assert peer is not None and dict(x[0] for x in peer["subject"])["commonName"] == "edge-1"
    assert pki.common_name(agent.cert_pem) == "edge-1"


def test_mutual_tls_refuses_a_client_without_a_cert_from_the_ca(ca: pki.KeyPair, tmp_path: Path) -> None:
    server = pki.issue(ca, "server", "server", NOW, dns=["localhost"])
    stranger = pki.issue(pki.create_ca(NOW, "other"), "x", "client", NOW)
    (tmp_path / "c").mkdir()
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(server_context(tmp_path, server, ca), client_context(ca, tmp_path / "c", stranger), "localhost")


def test_a_client_cert_cannot_serve(ca: pki.KeyPair, tmp_path: Path) -> None:
    client_only = pki.issue(ca, "cli", "client", NOW, dns=["localhost"])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(tmp_path, client_only), client_context(ca), "localhost")


def test_an_expired_cert_is_refused(ca: pki.KeyPair, tmp_path: Path) -> None:
    old = pki.issue(ca, "server", "server", NOW - dt.timedelta(days=30), dns=["localhost"], days=1)
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        handshake(server_context(tmp_path, old), client_context(ca), "localhost")


def test_keys_are_private_files(ca: pki.KeyPair, tmp_path: Path) -> None:
    _cert, key = pki.save(ca, tmp_path / "pki", "ca")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700
    assert pki.load(tmp_path / "pki", "ca") == ca
    with pytest.raises(ValidationError, match="exists"):
        pki.save(ca, tmp_path / "pki", "ca")
    assert "key_pem" not in repr(ca)


def test_bad_requests(ca: pki.KeyPair) -> None:
    with pytest.raises(ValidationError, match="needs --dns or --ip"):
        pki.issue(ca, "server", "server", NOW)
    with pytest.raises(ValidationError, match="not an IP"):
        pki.issue(ca, "server", "server", NOW, ips=["300.1.1.1"])
    with pytest.raises(ValidationError, match="not a DNS name"):
        pki.issue(ca, "server", "server", NOW, dns=["a\nb"])


def test_the_cert_cli_creates_a_ca_and_a_server_cert_that_verify(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from updraft.cli.main import app

    runner = CliRunner()
    out = tmp_path / "pki"
    assert runner.invoke(app, ["cert", "ca", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["cert", "issue", "server", "--ca", str(out), "--dns", "localhost"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((out / "server.key").stat().st_mode) == 0o600
    authority = pki.load(out, "ca")
    handshake(server_context(tmp_path, pki.load(out, "server")), client_context(authority), "localhost")
    again = runner.invoke(app, ["cert", "ca", "--out", str(out)])
    assert again.exit_code == 2 and pki.load(out, "ca") == authority  # never overwritten silently
