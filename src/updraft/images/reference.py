"""Image references: ``[registry[:port]/]repository[:tag][@sha256:digest]``, parsed once.

Docker's rule decides whether the first path component is a registry host: it contains a ``.`` or a ``:``,
or it is ``localhost``. A reference without one (``python:3.11-slim``, ``updraft/base:bookworm``) names
Docker Hub for Docker, but no public registry is consulted here: such an image is treated as local to the
nodes, and it cannot be pinned through a registry.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from updraft.errors import ValidationError
from updraft.model.spec import IMAGE_REF

_REF = IMAGE_REF  # one grammar of image references, the model's: what validates a spec is what parses here
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True, slots=True)
class ImageRef:
    registry: str | None
    """``host[:port]``, or None for a reference with no registry host."""
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        match = _REF.fullmatch(text)  # not match: "$" lets a trailing newline through
        if not match:
            raise ValidationError(f"image: {text!r} is not a valid image reference", field="image", image=text)
        name = match.group("name")
        first, sep, rest = name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = None, name
        return cls(registry, repository, match.group("tag"), match.group("digest"))

    @property
    def name(self) -> str:
        """The reference without tag or digest, as Docker spells it (``127.0.0.1:5000/app``)."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if there is one, else the tag (default ``latest``)."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> ImageRef:
        """The pinned form: ``name@sha256:…`` (the tag is dropped; Docker ignores it next to a digest)."""
        return replace(self, tag=None, digest=digest)

    def with_registry(self, registry: str) -> ImageRef:
        return replace(self, registry=registry)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_loopback(registry: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1 — Docker treats these as insecure-allowed."""
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def short(digest: str | None) -> str:
    """``sha256:0123456789ab`` — enough to tell digests apart in a table or an event."""
    return digest[:19] if digest else "-"
