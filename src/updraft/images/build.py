"""Build an image with Docker (multi-stage Dockerfiles as they are) and push it to a registry.

The push answers with the manifest digest the registry stored; ``NAME@sha256:…`` is what a task should be
submitted as (or what the server pins the tag to). Docker's own credential store (``docker login``) is
used unless credentials are given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from updraft.errors import ImageError, Unavailable, ValidationError
from updraft.images.reference import ImageRef
from updraft.images.registry import Credentials

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Pushed:
    ref: ImageRef
    """``name@sha256:…``"""
    digest: str
    size: int | None


def qualify(name: str, registry: str | None) -> ImageRef:
    """``name`` with the configured registry host in front when it has none; a push needs a registry."""
    ref = ImageRef.parse(name)
    if ref.registry is None:
        if not registry:
            raise ValidationError(
                f"image {name} names no registry: pass --registry or set UPDRAFT_REGISTRY", field="registry"
            )
        ref = ref.with_registry(registry.removeprefix("http://").removeprefix("https://").rstrip("/"))
    return ref if ref.tag or ref.digest else ImageRef(ref.registry, ref.repository, "latest")


def default_name(path: str | Path) -> str:
    """The build context's folder name, made a valid repository name, tagged ``latest``."""
    base = re.sub(r"[^a-z0-9._-]+", "-", Path(path).resolve().name.lower()).strip("-._") or "app"
    return f"{base}:latest"


def _client() -> Any:
    import docker

    try:
        return docker.from_env(timeout=600)
    except Exception as exc:  # docker-py raises DockerException and OSError subclasses
        raise Unavailable(f"docker does not answer: {exc}") from exc


def build(path: str | Path, tag: str, dockerfile: str | None = None, client: Any = None,
          progress: Progress | None = None) -> str:
    """Build ``path`` as ``tag``; return the image id. Raises ImageError with the build's own message."""
    import docker.errors

    client = client or _client()
    context = Path(path)
    if not (context / (dockerfile or "Dockerfile")).is_file():
        raise ValidationError(f"path: no {dockerfile or 'Dockerfile'} in {context}", field="path")
    image_id: str | None = None
    try:
        for chunk in client.api.build(path=str(context), tag=tag, dockerfile=dockerfile, rm=True, forcerm=True,
                                      decode=True):
            if "error" in chunk:
                raise ImageError(f"build of {tag} failed: {str(chunk['error']).strip()}", image=tag)
            if "stream" in chunk and progress is not None:
                text = str(chunk["stream"]).rstrip()
                if text:
                    progress(text)
            aux = chunk.get("aux") or {}
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = str(aux["ID"])
    except docker.errors.DockerException as exc:
        raise ImageError(f"build of {tag} failed: {exc}", image=tag) from exc
    return image_id or str(client.images.get(tag).id)


def push(image: str, credentials: Credentials | None = None, client: Any = None,
         progress: Progress | None = None) -> Pushed:
    """Push ``image`` (which must name a registry host); return its pinned reference."""
    import docker.errors

    ref = ImageRef.parse(image)
    if ref.registry is None:
        raise ValidationError(f"image {image} names no registry host to push to", field="image")
    client = client or _client()
    auth = None
    if credentials is not None:
        auth = {"username": credentials.username, "password": credentials.password, "serveraddress": ref.registry}
    digest: str | None = None
    size: int | None = None
    try:
        for chunk in client.api.push(ref.name, tag=ref.tag or "latest", stream=True, decode=True, auth_config=auth):
            if "error" in chunk:
                raise ImageError(f"push of {image} failed: {str(chunk['error']).strip()}", image=image)
            aux = chunk.get("aux") or {}
            if isinstance(aux, dict) and aux.get("Digest"):
                digest, size = str(aux["Digest"]), aux.get("Size")
            elif progress is not None and chunk.get("status") and not chunk.get("progressDetail"):
                progress(f"{chunk.get('id', '')} {chunk['status']}".strip())
    except docker.errors.DockerException as exc:
        raise ImageError(f"push of {image} failed: {exc}", image=image) from exc
    if digest is None:
        raise ImageError(f"push of {image} finished without a digest from the registry", image=image)
    return Pushed(ref.with_digest(digest), digest, int(size) if size is not None else None)


def build_and_push(path: str | Path, name: str | None, registry: str | None, dockerfile: str | None = None,
                   credentials: Credentials | None = None, progress: Progress | None = None) -> Pushed:
    """``updraft build``: build, tag with the registry's name, push, return ``NAME@sha256:…``."""
    ref = qualify(name or default_name(path), registry)
    client = _client()
    build(path, str(ref), dockerfile, client=client, progress=progress)
    return push(str(ref), credentials, client=client, progress=progress)
