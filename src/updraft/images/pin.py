"""The pin policy: turn a submitted image into what the task will run, or say why it cannot be pinned.

``image_policy`` on the server:

* ``off``     — nothing is resolved; the task runs the reference as submitted.
* ``warn``    — a tag is resolved to a digest when the registry allows; when it does not, the task runs by
  tag and an event says why. Never blocks a task.
* ``enforce`` — every task runs a digest. A tag the registry says no to (unknown, access denied, no
  registry host) is refused at submit (422). A registry that does not answer is not a no: the task is
  accepted as pending and the server retries the pin before the task can be scheduled.

The pinner is I/O only through the :class:`RegistryClient`; the control plane turns its decisions into
task fields and events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from updraft.errors import ImageError, Unavailable, ValidationError
from updraft.images.reference import ImageRef, short
from updraft.images.registry import RegistryClient

ImagePolicy = Literal["off", "warn", "enforce"]
PinKind = Literal["pinned", "unpinned", "deferred", "refused"]


@dataclass(frozen=True)
class PinDecision:
    kind: PinKind
    submitted: str
    """The reference as the user gave it."""
    image: str
    """The reference the task runs: ``name@sha256:…`` when pinned, else as submitted."""
    digest: str | None = None
    size: int | None = None
    why: str = ""
    """For unpinned, deferred and refused: the reason, naming the image."""

    def message(self) -> str:
        """The event text a user reads."""
        if self.kind == "pinned" and self.why:
            return f"pinned as submitted, but {self.why}"
        if self.kind == "pinned":
            size = f" ({self.size / 1e6:.1f} MB)" if self.size else ""
            return f"pinned {self.submitted} to {short(self.digest)}{size}"
        if self.kind == "deferred":
            return f"waiting to pin {self.submitted}: {self.why}"
        return f"image not pinned: {self.why}"


class Pinner:
    """Decides per submitted image; remembers for ``backoff`` seconds which registries did not answer."""

    def __init__(
        self,
        policy: ImagePolicy,
        registry: RegistryClient,
        monotonic: Callable[[], float] = time.monotonic,
        backoff: float = 5.0,
    ) -> None:
        self.policy: ImagePolicy = policy
        self.registry = registry
        self._monotonic = monotonic
        self._backoff = backoff
        self._down: dict[str, tuple[float, str]] = {}

    def offline(self, image: str) -> bool:
        """True when :meth:`decide` answers for ``image`` without a registry round trip (safe on an event loop)."""
        if self.policy == "off":
            return True
        try:
            ref = ImageRef.parse(image)
        except ValidationError:
            return True  # decide raises the same error at once
        down = self._down.get(ref.registry) if ref.registry is not None else None
        return ref.registry is None or (down is not None and self._monotonic() < down[0])

    def decide(self, image: str, probe: bool = False) -> PinDecision:
        """What to run for ``image``. ``probe`` asks the registry even while it is remembered as down."""
        ref = ImageRef.parse(image)
        if self.policy == "off":
            return PinDecision("pinned" if ref.pinned else "unpinned", image, image, ref.digest)
        if ref.registry is None:
            if ref.pinned:  # pinned by the submitter; nothing to check it against
                return PinDecision("pinned", image, image, ref.digest)
            why = (
                f"image {image} has no registry host, so no registry can pin it "
                "(push it to a registry with `updraft push` and submit that name)"
            )
            return PinDecision("refused" if self.policy == "enforce" else "unpinned", image, image, why=why)
        down = self._down.get(ref.registry)
        if down is not None and not probe and self._monotonic() < down[0]:
            return self._unreachable(ref, image, down[1])
        try:
            resolved = self.registry.resolve(ref)
        except Unavailable as exc:
            self._down[ref.registry] = (self._monotonic() + self._backoff, exc.message)
            return self._unreachable(ref, image, exc.message)
        except ImageError as exc:
            if self.policy == "enforce":
                return PinDecision("refused", image, image, why=exc.message)
            if ref.pinned:  # warn: run what was asked for; the agent says clearly if it cannot be pulled
                return PinDecision("pinned", image, image, ref.digest, why=exc.message)
            return PinDecision("unpinned", image, image, why=f"{exc.message}; running it by tag")
        self._down.pop(ref.registry, None)
        return PinDecision("pinned", image, str(resolved.ref), resolved.digest, resolved.size)

    def _unreachable(self, ref: ImageRef, image: str, why: str) -> PinDecision:
        if ref.pinned:  # already a digest: the registry is only needed for the size
            return PinDecision("pinned", image, image, ref.digest)
        if self.policy == "enforce":
            return PinDecision("deferred", image, image, why=f"{why}; the task stays pending and is retried")
        return PinDecision("unpinned", image, image, why=f"{why}; running {image} by tag")
