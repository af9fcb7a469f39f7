"""Registry credentials go to their own host only, and a submitter cannot use the server as a port scanner.

Real HTTP servers on loopback, started here: ``home`` is the registry the credentials are for; ``evil`` is a
host a submitter (or a hostile registry's token challenge) names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from updraft.errors import ImageError, Unavailable, UpdraftError
from updraft.images import UNRESOLVED, Credentials, ImageRef, RegistryClient

MANIFEST = json.dumps({"config": {"size": 1}, "layers": [{"size": 2}]}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
SECRET = "s3cret-pw"


class Server:
    """A tiny registry. ``challenge``: None (open), "basic", or a Bearer realm URL."""

    def __init__(self, challenge: str | None = None, garbage: bool = False) -> None:
        self.challenge, self.garbage = challenge, garbage
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, body: bytes = b"") -> None:
                outer.seen.append((self.command, self.path, self.headers.get("Authorization")))
                if outer.garbage:
                    self.send_response(400)
                    self.end_headers()
                    return
                auth = self.headers.get("Authorization") or ""
                if self.path.startswith("/token"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"token": "T0K"}')
                    return
                ok = (
                    outer.challenge is None
                    or (outer.challenge == "basic" and auth.startswith("Basic "))
                    or (auth == "Bearer T0K")
                )
                if not ok:
                    self.send_response(401)
                    value = 'Basic realm="r"' if outer.challenge == "basic" else (
                        f'Bearer realm="{outer.challenge}",service="registry"'
                    )
                    self.send_header("WWW-Authenticate", value)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Docker-Content-Digest", DIGEST)
                self.send_header("Content-Length", str(len(MANIFEST)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(MANIFEST)

            def do_HEAD(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                self._answer()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def authorizations(self) -> list[str]:
        return [a for _, _, a in self.seen if a]


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        s.close()


def start(servers: list[Server], challenge: str | None = None, garbage: bool = False) -> Server:
    s = Server(challenge, garbage)
    servers.append(s)
    return s


def basic_secret_in(values: list[str]) -> bool:
    return any(SECRET in base64.b64decode(v.split(" ", 1)[1]).decode(errors="replace")
               for v in values if v.startswith("Basic "))


def test_basic_credentials_go_to_their_host(servers: list[Server]) -> None:
    home = start(servers, "basic")
    rc = RegistryClient({home.host: Credentials("ci", SECRET)})
    assert rc.resolve(ImageRef.parse(f"{home.host}/app:1")).digest == DIGEST
    assert basic_secret_in(home.authorizations())


def test_a_registry_a_submitter_names_never_receives_them(servers: list[Server]) -> None:
    home, evil = start(servers, "basic"), start(servers, "basic")
    rc = RegistryClient({home.host: Credentials("ci", SECRET)})
    with pytest.raises(ImageError):
        rc.resolve(ImageRef.parse(f"{evil.host}/app:1"))
    assert evil.seen and evil.authorizations() == []


def test_a_bearer_realm_on_another_host_never_receives_them(servers: list[Server]) -> None:
    evil = start(servers)
    home = start(servers, challenge=f"http://{evil.host}/token")
    rc = RegistryClient({home.host: Credentials("ci", SECRET)})
    assert rc.resolve(ImageRef.parse(f"{home.host}/app:1")).digest == DIGEST  # an anonymous token still works
    assert [p for _, p, _ in evil.seen if p.startswith("/token")] and evil.authorizations() == []


def test_a_bearer_realm_on_the_same_host_or_a_listed_one_receives_them(servers: list[Server]) -> None:
    auth = start(servers)
    home = start(servers)
    home.challenge = f"http://{home.host}/token"
    RegistryClient({home.host: Credentials("ci", SECRET)}).resolve(ImageRef.parse(f"{home.host}/app:1"))
    assert basic_secret_in([a for _, p, a in home.seen if p.startswith("/token") and a])
    other = start(servers, challenge=f"http://{auth.host}/token")
    creds = Credentials("ci", SECRET, realms=(auth.host,))
    RegistryClient({other.host: creds}).resolve(ImageRef.parse(f"{other.host}/app:1"))
    assert basic_secret_in(auth.authorizations())


def test_credentials_without_a_host_are_never_sent(servers: list[Server]) -> None:
    home = start(servers, "basic")
    rc = RegistryClient(Credentials("ci", SECRET))
    with pytest.raises(ImageError):
        rc.resolve(ImageRef.parse(f"{home.host}/app:1"))
    assert home.authorizations() == []


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _public(err: UpdraftError, host: str) -> str:
    """What a submitter reads in an event or a 422: the message and details. (The class — retry or not —
    stays inside the server; docs/security.md says what ``enforce`` still reveals and how registry_allow
    closes it.)"""
    return json.dumps([err.message, err.details]).replace(host, "HOST")


def test_what_answered_is_not_told_to_the_submitter(servers: list[Server]) -> None:
    """A closed port, an HTTP server that is no registry, and a registry without the tag read the same."""
    garbage, registry = start(servers, garbage=True), start(servers)
    registry_missing = f"{registry.host}/app@sha256:{'0' * 64}"
    rc = RegistryClient(timeout=2)
    seen = []
    for host, image in ((_closed_port(), None), (garbage.host, None), (registry.host, registry_missing)):
        with pytest.raises((ImageError, Unavailable)) as err:
            rc.resolve(ImageRef.parse(image or f"{host}/app:1"))
        seen.append(_public(err.value, host).replace(f"app@sha256:{'0' * 64}", "app:1"))
        assert UNRESOLVED in err.value.message
    assert len(set(seen)) == 1, seen


def test_an_allow_list_refuses_other_registries_without_asking_them(servers: list[Server]) -> None:
    home, evil = start(servers), start(servers)
    rc = RegistryClient(allowed=[home.host])
    assert rc.resolve(ImageRef.parse(f"{home.host}/app:1")).digest == DIGEST
    with pytest.raises(ImageError) as err:
        rc.resolve(ImageRef.parse(f"{evil.host}/app:1"))
    assert err.value.details["reason"] == "not_allowed" and evil.seen == []
