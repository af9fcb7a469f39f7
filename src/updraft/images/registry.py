"""Resolve a tag to a digest through a registry's HTTP API (OCI distribution spec).

``HEAD /v2/<repository>/manifests/<tag>`` answers with the manifest's digest in ``Docker-Content-Digest``;
that digest is what a task is pinned to. The manifest itself (``GET`` by digest, content-addressed and so
cached forever) gives the image's transfer size: what a node without the image has to pull.

Failures are told apart because the control plane treats them differently:

* :class:`~updraft.errors.Unavailable` — the registry did not answer (refused, timed out, 5xx): try again
  later; the image may well exist.
* :class:`~updraft.errors.ImageError` — the registry answered no (unknown tag or digest, access denied,
  no registry host at all): trying again will not help.

What a submitter reads is the same whatever the network answered: ``image X: the image could not be
resolved`` with ``details.reason`` ``unresolved`` (or ``no_registry`` / ``not_allowed``, decided without the
network). Otherwise anyone allowed to submit could name ``10.0.0.5:22/x`` and learn from the event whether that
port is open — a port scanner run by the server. What was really answered goes to the server log
(``updraft.images``, WARNING) for operators.

Credentials are per registry host (``{"reg.example.com:5000": Credentials(...)}``) and go only to that host:
never to a registry a submitter names, never to a Bearer token realm on another host (unless that login lists
the realm host in ``realms``), never over plain HTTP to a realm that is not loopback or configured insecure.
They travel in headers only, never in URLs or messages, so no error or log line can carry them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from updraft.errors import ImageError, Unavailable
from updraft.images.reference import ImageRef, is_loopback

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_PARAM = re.compile(r'(\w+)="([^"]*)"')
log = logging.getLogger("updraft.images")


class Login(Protocol):
    """A username and password (``Credentials``, or the settings' per-host entry)."""

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    realms: tuple[str, ...] = ()
    """Token realm hosts on another host that may receive these credentials (Docker Hub: auth.docker.io)."""

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    @classmethod
    def of(cls, login: Login) -> Credentials:
        return login if isinstance(login, Credentials) else cls(
            login.username, login.password, tuple(getattr(login, "realms", ()) or ())
        )


def credentials_by_host(logins: Mapping[str, Login] | None) -> dict[str, Credentials]:
    """``{host[:port]: Credentials}`` with hosts lower-cased, as :class:`RegistryClient` matches them."""
    return {host.strip().lower(): Credentials.of(login) for host, login in (logins or {}).items()}


@dataclass(frozen=True)
class Resolved:
    ref: ImageRef
    """The pinned reference (``name@sha256:…``)."""
    digest: str
    size: int | None
    """Bytes a node pulls (config and layers, compressed), when the manifest says; None for an index."""


class RegistryClient:
    """A small, thread-safe client for the part of the distribution API that pinning needs."""

    def __init__(
        self,
        credentials: Mapping[str, Login] | Credentials | None = None,
        insecure: Iterable[str] = (),
        timeout: float = 3.0,
        transport: httpx.BaseTransport | None = None,
        allowed: Iterable[str] | None = None,
    ) -> None:
        if isinstance(credentials, Credentials):
            # A login that names no host could only be sent to whichever host a submitter names. Keep it
            # unused (fail closed) and say how to bind it.
            log.warning("registry credentials without a registry host are not used; "
                        "set registry_credentials = {\"HOST[:PORT]\": {username, password}}")
            credentials = None
        self._credentials = credentials_by_host(credentials)
        self._insecure = frozenset(insecure)
        self._allowed = None if allowed is None else frozenset(a.lower() for a in allowed)
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=True)
        self._auth: dict[tuple[str, str], str] = {}
        self._sizes: dict[str, int | None] = {}

    def __repr__(self) -> str:
        return f"RegistryClient(credentials for {sorted(self._credentials) or 'no registry'})"

    def close(self) -> None:
        self._http.close()

    def base_url(self, registry: str) -> str:
        """Plain HTTP for loopback and configured insecure registries (as Docker does), HTTPS otherwise."""
        scheme = "http" if registry in self._insecure or is_loopback(registry) else "https"
        return f"{scheme}://{registry}"

    def resolve(self, ref: ImageRef) -> Resolved:
        """The digest ``ref`` names now, and its size. Raises Unavailable or ImageError (see module doc)."""
        if ref.registry is None:
            raise ImageError(
                f"image {ref}: no registry host in the reference, so no registry can pin it "
                "(push it to a registry with `updraft push` and submit that name)",
                image=str(ref),
                reason="no_registry",
            )
        if self._allowed is not None and ref.registry.lower() not in self._allowed:
            raise ImageError(
                f"image {ref}: registry {ref.registry} is not one this server resolves from (registry_allow)",
                image=str(ref),
                reason="not_allowed",
            )
        url = f"{self.base_url(ref.registry)}/v2/{ref.repository}/manifests/{ref.reference}"
        resp = self._request("HEAD", ref, url)
        if resp.status_code == 404:
            what = f"digest {ref.digest}" if ref.digest else f"tag {ref.tag or 'latest'}"
            raise _no(ref, f"{what} not found")
        self._raise_for(resp, ref)
        digest = resp.headers.get("Docker-Content-Digest")
        body: bytes | None = None
        if not digest:  # some registries leave it off a HEAD: fetch the manifest and hash it
            get = self._request("GET", ref, url)
            self._raise_for(get, ref)
            body = get.content
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.digest and digest != ref.digest:
            raise _no(ref, f"the registry serves {digest} for digest {ref.digest}")
        pinned = ref.with_digest(digest)
        return Resolved(pinned, digest, self._size(pinned, body))

    # -- internals ----------------------------------------------------------------------------------
    def _size(self, ref: ImageRef, body: bytes | None) -> int | None:
        assert ref.digest is not None and ref.registry is not None
        if ref.digest in self._sizes:
            return self._sizes[ref.digest]
        if body is None:
            url = f"{self.base_url(ref.registry)}/v2/{ref.repository}/manifests/{ref.digest}"
            try:
                resp = self._request("GET", ref, url)
            except Unavailable:
                return None
            if resp.status_code != 200:
                return None
            body = resp.content
        if "sha256:" + hashlib.sha256(body).hexdigest() != ref.digest:
            return None  # not the manifest we pinned: say nothing rather than something wrong
        size = manifest_size(body)
        self._sizes[ref.digest] = size
        return size

    def _request(self, method: str, ref: ImageRef, url: str) -> httpx.Response:
        assert ref.registry is not None
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        key = (ref.registry, ref.repository)
        if key in self._auth:
            headers["Authorization"] = self._auth[key]
        try:
            resp = self._http.request(method, url, headers=headers)
            if resp.status_code == 401 and "WWW-Authenticate" in resp.headers:
                auth = self._authorize(resp.headers["WWW-Authenticate"], ref)
                if auth is not None:
                    self._auth[key] = headers["Authorization"] = auth
                    resp = self._http.request(method, url, headers=headers)
        except (httpx.TransportError, httpx.InvalidURL, ValueError) as exc:
            raise _down(ref, f"unreachable: {_describe(exc)}") from exc
        return resp

    def credentials_for(self, host: str) -> Credentials | None:
        """The login configured for exactly ``host[:port]`` (case-insensitive), or None."""
        return self._credentials.get(host.lower())

    def _authorize(self, challenge: str, ref: ImageRef) -> str | None:
        """Answer a ``Basic`` or ``Bearer`` challenge (the token flow of the distribution spec)."""
        assert ref.registry is not None
        scheme, _, rest = challenge.partition(" ")
        creds = self.credentials_for(ref.registry)
        if scheme.lower() == "basic":
            return creds.basic() if creds else None
        if scheme.lower() != "bearer":
            return None
        params = dict(_PARAM.findall(rest))
        realm = params.pop("realm", None)
        if not realm:
            return None
        params.setdefault("scope", f"repository:{ref.repository}:pull")
        headers = {"Authorization": creds.basic()} if creds and self._may_send(creds, ref.registry, realm) else {}
        resp = self._http.get(realm, params=params, headers=headers)
        if resp.status_code != 200:
            return None
        try:
            data = resp.json()
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            return None
        return f"Bearer {token}" if isinstance(token, str) and token else None

    def _may_send(self, creds: Credentials, registry: str, realm: str) -> bool:
        """Whether ``registry``'s login may go to token ``realm``: the same host, or one the login names —
        and over HTTPS unless that host is loopback or configured insecure."""
        parts = urlsplit(realm)
        host = parts.netloc.lower()
        if host != registry.lower() and host not in {r.lower() for r in creds.realms}:
            log.warning("registry %s: not sending its credentials to token realm host %s", registry, host)
            return False
        if parts.scheme != "https" and not (host in self._insecure or is_loopback(host)):
            log.warning("registry %s: not sending its credentials over plain HTTP to %s", registry, host)
            return False
        return True

    def _raise_for(self, resp: httpx.Response, ref: ImageRef) -> None:
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _down(ref, f"answered {resp.status_code}")
        if resp.status_code == 401:
            raise _no(ref, "refused access (401; check registry_credentials for this host)")
        if resp.status_code != 200:
            raise _no(ref, f"answered {resp.status_code}")


UNRESOLVED = "the image could not be resolved"


def _no(ref: ImageRef, cause: str) -> ImageError:
    """The registry said no. The submitter reads :data:`UNRESOLVED`; the cause goes to the server log."""
    log.warning("image %s: registry %s: %s", ref, ref.registry, cause)
    return ImageError(f"image {ref}: {UNRESOLVED}", image=str(ref), reason="unresolved")


def _down(ref: ImageRef, cause: str) -> Unavailable:
    """The registry did not answer; told to the submitter exactly like :func:`_no` (see the module doc)."""
    log.warning("image %s: registry %s: %s", ref, ref.registry, cause)
    return Unavailable(f"image {ref}: {UNRESOLVED}", image=str(ref), reason="unresolved")


def manifest_size(body: bytes) -> int | None:
    """Config plus layers of an image manifest; None for an index or anything unexpected."""
    try:
        doc = json.loads(body)
        layers = doc["layers"]
        return int(doc.get("config", {}).get("size", 0)) + sum(int(layer["size"]) for layer in layers)
    except (ValueError, KeyError, TypeError):
        return None


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text
