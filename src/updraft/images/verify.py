"""Prove what runs: the image an agent is about to start must carry the digest the task is pinned to.

Docker records, per image, the ``name@sha256:…`` references it was pulled or pushed as (``RepoDigests``).
Pulling by digest is content-addressed, so a mismatch means the local image store does not hold what the
control plane pinned (tampering, a corrupt store, a lying registry) and the task must not run.
"""

from __future__ import annotations

from collections.abc import Iterable

from updraft.images.reference import ImageRef, short


def check_digest(image: str, repo_digests: Iterable[str]) -> str | None:
    """None when ``image`` is unpinned or the image carries its digest; otherwise the reason, for the task."""
    ref = ImageRef.parse(image)
    if ref.digest is None:
        return None
    held = list(repo_digests)
    if f"{ref.name}@{ref.digest}" in held:
        return None
    carried = sorted({short(r.partition("@")[2]) for r in held if r.partition("@")[0] == ref.name})
    found = ", ".join(carried) if carried else f"no digest for {ref.name}"
    return f"image verification failed: {image} is pinned to {short(ref.digest)} but the local image carries {found}"


def carried_digest(image: str, repo_digests: Iterable[str]) -> str | None:
    """The digest an image carries under the name ``image`` refers to (its own digest when pinned)."""
    ref = ImageRef.parse(image)
    if ref.digest is not None:
        return ref.digest
    for repo_digest in repo_digests:
        name, _, digest = repo_digest.partition("@")
        if name == ref.name:
            return digest
    return None
