"""``POST /images/create`` (pull) and ``GET /images/{name}/json``, as far as ``docker run`` needs them.

There is no image store behind this API: whichever node runs a container pulls its image there (by digest
when pinned). ``docker pull`` therefore checks the reference and answers, in Docker's progress-stream
shape, that the pull is deferred to that node; an image inspect answers from the images the nodes report
holding, and 404 otherwise (as Docker does for an image it lacks).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from updraft.errors import NotFound, ValidationError


def _reference(query: Mapping[str, str]) -> str:
    if query.get("fromSrc"):
        raise ValidationError("docker import (fromSrc): importing images is not supported", field="fromSrc")
    image = query.get("fromImage", "")
    if not image:
        raise ValidationError("fromImage: an image is required", field="fromImage")
    tag = query.get("tag", "")
    if tag.startswith("sha256:"):
        return f"{image}@{tag}"
    return f"{image}:{tag}" if tag and ":" not in image.rsplit("/", 1)[-1] else image


def _credentials_given(header: str | None) -> bool:
    if not header:
        return False
    try:
        padded = header + "=" * (-len(header) % 4)
        auth = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError):
        return True
    return isinstance(auth, dict) and any(
        auth.get(k) for k in ("username", "password", "auth", "identitytoken", "registrytoken")
    )


def _normal(ref: str) -> str:
    """``name``, ``name:latest`` and ``docker.io/library/name:latest`` (as the docker CLI sends a pull) are the
    same image."""
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if ref.startswith(prefix):
            ref = ref.removeprefix(prefix)
            break
    last = ref.rsplit("/", 1)[-1]
    return ref if (":" in last or "@" in ref) else ref + ":latest"


class ImageCatalog:
    def __init__(self, nodes: Callable[[], list[dict[str, Any]]]) -> None:
        self.nodes = nodes

    def pull(self, query: Mapping[str, str], registry_auth: str | None) -> list[dict[str, Any]]:
        from updraft.model.spec import IMAGE_REF

        ref = _reference(query)
        if ref.startswith(("docker.io/", "index.docker.io/")):
            ref = _normal(ref)
        if not IMAGE_REF.match(ref):
            raise ValidationError(f"invalid reference format: {ref!r}", field="fromImage")
        if query.get("platform"):
            raise ValidationError(f"--platform ({query['platform']}): the node that runs it chooses")
        if _credentials_given(registry_auth):
            raise ValidationError("registry credentials (docker login) are not forwarded: each node pulls with "
                                  "its own registry configuration", field="X-Registry-Auth")
        holders = self._holders(ref)
        where = f"present on {', '.join(holders)}" if holders else "on no node yet"
        return [
            {"status": f"Pulling from {ref.rsplit(':', 1)[0] if '@' not in ref else ref.split('@')[0]}",
             "id": ref.rsplit(":", 1)[-1]},
            {"status": f"Updraft: {ref} is {where}; the node that runs each container pulls it there"},
            {"status": f"Status: Deferred pull for {ref}"},
        ]

    def _holders(self, ref: str) -> list[str]:
        want = _normal(ref)
        return sorted(n["name"] for n in self.nodes() if want in {_normal(i) for i in n.get("images") or []})

    def inspect(self, name: str) -> dict[str, Any]:
        holders = self._holders(name)
        if not holders:
            raise NotFound(f"No such image: {name}", image=name)
        ref = _normal(name)
        return {
            "Id": "",
            "RepoTags": [ref] if "@" not in ref else [],
            "RepoDigests": [ref] if "@" in ref else [],
            "Os": "linux",
            "Architecture": "amd64",
            "Size": 0,
            "Config": {"Cmd": None, "Entrypoint": None, "Env": [], "Labels": {}},
            "RootFS": {"Type": "layers", "Layers": []},
            "Updraft": {"Nodes": holders},
        }
