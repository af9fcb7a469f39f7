"""TLS on a real ``updraft server`` process (issue 15, item 4), and the listeners it must refuse to open.

Certificates come from the project's own PKI (``updraft cert``); clients verify with the stdlib ``ssl`` module
through httpx, as the SDK, CLI and agents do with ``--ca``.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster import Cluster, Proc, free_port, wait_for
from updraft.security import pki
from updraft.security.serving import client_ssl

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    ca = pki.create_ca(NOW)
    pki.save(ca, out, "ca")
    pki.save(pki.issue(ca, "server", "server", NOW, dns=["localhost"], ips=["127.0.0.1"]), out, "server")
    pki.save(pki.issue(ca, "edge-1", "agent", NOW, dns=["edge-1"]), out, "edge-1")
    other = pki.create_ca(NOW, "someone else")
    pki.save(other, out, "other-ca")
    pki.save(pki.issue(other, "intruder", "client", NOW), out, "intruder")
    return out


def _server(tmp: Path, **config: object) -> tuple[Proc, int]:
    port = free_port()
    cfg = tmp / f"server-{port}.json"
    cfg.write_text(json.dumps({"port": port, "data_dir": str(tmp / f"data-{port}"), **config}))
    proc = Proc([*Cluster(tmp)._cli(), "server", "--config", str(cfg)], tmp / f"server-{port}.log")
    return proc, port


@pytest.fixture(scope="module")
def https(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("https")
    proc, port = _server(tmp, tls_cert=str(certs / "server.crt"), tls_key=str(certs / "server.key"),
                         tls_client_ca=None)
    url = f"https://127.0.0.1:{port}"
    verify = client_ssl(certs / "ca.crt")

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError("server exited:\n" + proc.tail())
        return httpx.get(url + "/ready", verify=verify, timeout=2).status_code == 200

    try:
        wait_for(ready, 30, what="https server ready")
        yield url
    finally:
        proc.stop()


def test_the_server_speaks_https_verified_against_the_ca(https: str, certs: Path) -> None:
    assert httpx.get(https + "/health", verify=client_ssl(certs / "ca.crt"), timeout=5).status_code == 200
    localhost = https.replace("127.0.0.1", "localhost")
    assert httpx.get(localhost + "/health", verify=client_ssl(certs / "ca.crt"), timeout=5).status_code == 200


def test_a_client_trusting_another_ca_refuses_the_server(https: str, certs: Path) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(https + "/health", verify=client_ssl(certs / "other-ca.crt"), timeout=5)


def test_plain_http_to_the_https_port_gets_nothing_useful(https: str) -> None:
    plain = https.replace("https://", "http://")
    try:
        resp = httpx.get(plain + "/health", timeout=5)
    except httpx.HTTPError:
        return
    assert resp.status_code >= 400 and "ok" not in resp.text


def test_mutual_tls_admits_only_certificates_of_the_ca(certs: Path, tmp_path: Path) -> None:
    proc, port = _server(tmp_path, tls_cert=str(certs / "server.crt"), tls_key=str(certs / "server.key"),
                         tls_client_ca=str(certs / "ca.crt"))
    url = f"https://127.0.0.1:{port}/health"
    agent = client_ssl(certs / "ca.crt", certs / "edge-1.crt", certs / "edge-1.key")
    try:
        wait_for(lambda: proc.alive() and httpx.get(url, verify=agent, timeout=2).status_code == 200, 30,
                 what="mTLS server ready")
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)):
            httpx.get(url, verify=client_ssl(certs / "ca.crt"), timeout=5)  # no client certificate
        intruder = client_ssl(certs / "ca.crt", certs / "intruder.crt", certs / "intruder.key")
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)):
            httpx.get(url, verify=intruder, timeout=5)  # a certificate from another CA
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ({"host": "0.0.0.0"}, "plain HTTP"),
        ({"host": "0.0.0.0", "auth": False, "insecure_http": True}, "without authentication"),
    ],
)
def test_unsafe_listeners_are_refused_at_start(tmp_path: Path, config: dict[str, object], why: str) -> None:
    port = free_port()
    cfg = tmp_path / "server.json"
    cfg.write_text(json.dumps({"port": port, "data_dir": str(tmp_path / "data"), **config}))
    run = subprocess.run([*Cluster(tmp_path)._cli(), "server", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and why in run.stdout + run.stderr, run.stdout[-2000:] + run.stderr[-2000:]


def test_an_agent_and_the_sdk_work_over_mutual_tls(certs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole loop over HTTPS with client certificates: the agent registers and heartbeats with its own
    certificate and node token, the SDK verifies the server against UPDRAFT_CA; a client without a certificate
    gets nothing."""
    from updraft.errors import TransportError
    from updraft.sdk import Client

    proc, port = _server(tmp_path, tls_cert=str(certs / "server.crt"), tls_key=str(certs / "server.key"),
                         tls_client_ca=str(certs / "ca.crt"))
    url = f"https://127.0.0.1:{port}"
    admin_ctx = client_ssl(certs / "ca.crt", certs / "edge-1.crt", certs / "edge-1.key")
    token_file = tmp_path / f"data-{port}" / "admin.token"
    agent: Proc | None = None
    try:
        wait_for(lambda: proc.alive() and token_file.exists(), 30, what="mTLS server up")
        admin = token_file.read_text().strip()
        auth = {"Authorization": f"Bearer {admin}"}
        wait_for(lambda: httpx.get(url + "/ready", verify=admin_ctx, timeout=2).status_code == 200, 30, what="ready")
        node_token = httpx.post(url + "/v1/tokens", json={"role": "node", "node": "edge-1"}, headers=auth,
                                verify=admin_ctx, timeout=5).json()["token"]
        tls_env = {"UPDRAFT_CA": str(certs / "ca.crt"), "UPDRAFT_CLIENT_CERT": str(certs / "edge-1.crt"),
                   "UPDRAFT_CLIENT_KEY": str(certs / "edge-1.key")}
        agent = Proc([*Cluster(tmp_path)._cli(), "agent", "--name", "edge-1", "--server", url, "--data-dir",
                      str(tmp_path / "agent"), "--cpus", "0.5", "--memory", "256Mi", "--load-source", "containers",
                      "--port", str(free_port())],
                     tmp_path / "agent.log", env={"UPDRAFT_TOKEN": node_token, **tls_env})
        for k, v in tls_env.items():
            monkeypatch.setenv(k, v)
        with Client(url, token=admin) as c:
            wait_for(lambda: any(n.name == "edge-1" and n.state == "ready" for n in c.nodes()), 30,
                     what="agent registered over mTLS")
            assert c.node("edge-1").last_heartbeat > 0
        monkeypatch.delenv("UPDRAFT_CLIENT_CERT")
        monkeypatch.delenv("UPDRAFT_CLIENT_KEY")
        with Client(url, token=admin) as c, pytest.raises(TransportError):  # the handshake is refused
            c.nodes()
    finally:
        if agent is not None:
            agent.stop()
        proc.stop()
