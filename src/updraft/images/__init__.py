"""Images: build, push, resolve a tag to a digest, verify what runs, audit what runs where.

A leaf package: it imports nothing of Updraft's but :mod:`updraft.errors`, so the control plane (pinning at
submit), the agent (verification before a container starts) and the CLI (build, push, audit) share it.

Errors: :class:`~updraft.errors.ImageError` when a registry or Docker says no (not retried),
:class:`~updraft.errors.Unavailable` when it does not answer (retried), :class:`~updraft.errors.ValidationError`
for a reference that cannot be used (no registry host to push to).
"""

from updraft.images.audit import AuditReport, ImageAudit, Use, audit
from updraft.images.build import Pushed, build, build_and_push, default_name, push, qualify
from updraft.images.pin import ImagePolicy, PinDecision, Pinner
from updraft.images.pull import Pulled, PullRate, pull_image
from updraft.images.reference import ImageRef, is_loopback, short
from updraft.images.registry import (
    UNRESOLVED,
    Credentials,
    RegistryClient,
    Resolved,
    credentials_by_host,
    manifest_size,
)
from updraft.images.verify import carried_digest, check_digest

__all__ = [
    "UNRESOLVED",
    "AuditReport",
    "Credentials",
    "ImageAudit",
    "ImagePolicy",
    "ImageRef",
    "PinDecision",
    "Pinner",
    "PullRate",
    "Pulled",
    "Pushed",
    "RegistryClient",
    "Resolved",
    "Use",
    "audit",
    "build",
    "build_and_push",
    "carried_digest",
    "check_digest",
    "credentials_by_host",
    "default_name",
    "is_loopback",
    "manifest_size",
    "pull_image",
    "push",
    "qualify",
    "short",
]
