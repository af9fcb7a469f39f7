"""Resolve a tag to a digest through a registry's HTTP API (OCI distribution spec).

``HEAD /v2/<repository>/manifests/<tag>`` answers with the manifest's digest in ``Docker-Content-Digest``;
that digest is what a task is pinned to. The manifest itself (``GET`` by digest, content-addressed and so
cached forever) gives the image's transfer size: what a node without the image has to pull.

Failures are told apart because the control plane treats them differently:

* :class:`~updraft.errors.Unavailable` — the registry did not answer (refused, timed out, 5xx): try again
  later; the image may well exist.
* :class:`~updraft.errors.ImageError` — the registry answered no (unknown tag or digest, access denied,
  no registry host at all): trying again will not help.

Credentials go in headers only, never in URLs or messages, so no error or log line can carry them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


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
        credentials: Credentials | None = None,
        insecure: Iterable[str] = (),
        timeout: float = 3.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._credentials = credentials
        self._insecure = frozenset(insecure)
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=True)
        self._auth: dict[tuple[str, str], str] = {}
        self._sizes: dict[str, int | None] = {}

    def __repr__(self) -> str:
        return f"RegistryClient(credentials={'set' if self._credentials else 'none'})"

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
        url = f"{self.base_url(ref.registry)}/v2/{ref.repository}/manifests/{ref.reference}"
        resp = self._request("HEAD", ref, url)
        if resp.status_code == 404:
            what = f"digest {ref.digest}" if ref.digest else f"tag {ref.tag or 'latest'}"
            raise ImageError(
                f"image {ref}: {what} not found in registry {ref.registry}", image=str(ref), reason="not_found"
            )
        self._raise_for(resp, ref)
        digest = resp.headers.get("Docker-Content-Digest")
        body: bytes | None = None
        if not digest:  # some registries leave it off a HEAD: fetch the manifest and hash it
            get = self._request("GET", ref, url)
            self._raise_for(get, ref)
            body = get.content
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.digest and digest != ref.digest:
            raise ImageError(
                f"image {ref}: the registry serves {digest} for digest {ref.digest}",
                image=str(ref),
                reason="digest_mismatch",
            )
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
        except httpx.TransportError as exc:
            raise Unavailable(
                f"registry {ref.registry} unreachable: {_describe(exc)}", image=str(ref), registry=ref.registry
            ) from exc
        return resp

    def _authorize(self, challenge: str, ref: ImageRef) -> str | None:
        """Answer a ``Basic`` or ``Bearer`` challenge (the token flow of the distribution spec)."""
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic":
            return self._credentials.basic() if self._credentials else None
        if scheme.lower() != "bearer":
            return None
        params = dict(_PARAM.findall(rest))
        realm = params.pop("realm", None)
        if not realm:
            return None
        params.setdefault("scope", f"repository:{ref.repository}:pull")
        headers = {"Authorization": self._credentials.basic()} if self._credentials else {}
        resp = self._http.get(realm, params=params, headers=headers)
        if resp.status_code != 200:
            return None
        data = resp.json()
        token = data.get("token") or data.get("access_token")
        return f"Bearer {token}" if token else None

    def _raise_for(self, resp: httpx.Response, ref: ImageRef) -> None:
        if resp.status_code >= 500 or resp.status_code == 429:
            raise Unavailable(
                f"registry {ref.registry} unreachable: it answered {resp.status_code}",
                image=str(ref),
                registry=ref.registry,
            )
        if resp.status_code in (401, 403):
            hint = "check registry_username / registry_password" if resp.status_code == 401 else "access denied"
            raise ImageError(
                f"image {ref}: registry {ref.registry} refused access ({resp.status_code}; {hint})",
                image=str(ref),
                reason="unauthorized",
            )
        if resp.status_code != 200:
            raise ImageError(
                f"image {ref}: registry {ref.registry} answered {resp.status_code}",
                image=str(ref),
                reason="registry_error",
            )


def manifest_size(body: bytes) -> int | None:
    """Config plus layers of an image manifest; None for an index or anything unexpected."""
    try:
        doc = json.loads(body)
        layers = doc["layers"]
        return int(doc.get("config", {}).get("size", 0)) + sum(int(layer["size"]) for layer in layers)
    except (ValueError, KeyError, TypeError):
        return None


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text
