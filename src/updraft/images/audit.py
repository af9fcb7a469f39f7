"""Which digest of each image runs where: drift (one name, several digests) and unpinned tasks.

Pure: it works on plain :class:`Use` rows, one per non-terminal task, so the CLI, the API or a CI script
can build them from whatever they have. A task's digest is the one it is pinned to, or, for an unpinned
task, the one its agent reported running; an unpinned task nobody has reported on yet has no digest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from updraft.images.reference import ImageRef, short


@dataclass(frozen=True)
class Use:
    task_id: str
    image: str
    """The reference the task runs (``name@sha256:…`` when pinned)."""
    state: str
    node: str | None = None
    submitted: str | None = None
    """The tag it was submitted as, when pinning rewrote it."""
    reported: str | None = None
    """The digest the agent reported running."""

    @property
    def ref(self) -> ImageRef:
        return ImageRef.parse(self.image)

    @property
    def pinned(self) -> bool:
        return self.ref.pinned

    @property
    def digest(self) -> str | None:
        return self.ref.digest or self.reported


@dataclass
class ImageAudit:
    name: str
    digests: dict[str, list[Use]] = field(default_factory=dict)
    unknown: list[Use] = field(default_factory=list)
    """Unpinned uses with no reported digest yet."""

    @property
    def drift(self) -> bool:
        return len(self.digests) > 1

    def uses(self) -> list[Use]:
        return [u for us in self.digests.values() for u in us] + self.unknown


@dataclass
class AuditReport:
    images: list[ImageAudit]

    @property
    def drifted(self) -> list[ImageAudit]:
        return [i for i in self.images if i.drift]

    @property
    def unpinned(self) -> list[Use]:
        return [u for i in self.images for u in i.uses() if not u.pinned]

    def exit_code(self, strict: bool = False) -> int:
        """1 on drift (and, with ``strict``, on any unpinned task): a CI gate."""
        return 1 if self.drifted or (strict and self.unpinned) else 0

    def to_json(self) -> dict[str, Any]:
        def use(u: Use) -> dict[str, Any]:
            return {"task": u.task_id, "node": u.node, "state": u.state, "image": u.image, "pinned": u.pinned,
                    "submitted": u.submitted}

        return {
            "images": [
                {
                    "name": i.name,
                    "drift": i.drift,
                    "digests": {d: [use(u) for u in us] for d, us in i.digests.items()},
                    "unknown": [use(u) for u in i.unknown],
                }
                for i in self.images
            ],
            "drift": [i.name for i in self.drifted],
            "unpinned": [u.task_id for u in self.unpinned],
        }

    def render(self) -> str:
        rows: list[list[str]] = [["IMAGE", "DIGEST", "TASKS", "NODES", ""]]
        for i in self.images:
            entries = [(short(d), us) for d, us in sorted(i.digests.items())]
            if i.unknown:
                entries.append(("(unpinned, not reported)", i.unknown))
            for n, (digest, us) in enumerate(entries):
                nodes = ", ".join(sorted({u.node or "-" for u in us}))
                flags = []
                if i.drift:
                    flags.append("DRIFT")
                if any(not u.pinned for u in us):
                    flags.append("UNPINNED")
                rows.append([i.name if n == 0 else "", digest, str(len(us)), nodes, " ".join(flags)])
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        for i in self.drifted:
            lines.append(f"drift: {i.name} runs {len(i.digests)} digests: " + ", ".join(
                f"{short(d)} ({', '.join(sorted(u.task_id for u in us))})" for d, us in sorted(i.digests.items())))
        for u in self.unpinned:
            lines.append(f"unpinned: {u.task_id} runs {u.image} by tag on {u.node or '(not placed)'}")
        if not self.images:
            lines.append("no running or assigned tasks")
        return "\n".join(lines)


def audit(uses: Iterable[Use]) -> AuditReport:
    by_name: dict[str, ImageAudit] = {}
    for u in uses:
        entry = by_name.setdefault(u.ref.name, ImageAudit(u.ref.name))
        digest = u.digest
        if digest is None:
            entry.unknown.append(u)
        else:
            entry.digests.setdefault(digest, []).append(u)
    return AuditReport(sorted(by_name.values(), key=lambda i: i.name))
