"""Pull an image through Docker and measure the node's pull rate (for the scheduler's pull-time estimate).

The rate is bytes downloaded over the whole pull (download and extraction): the figure that predicts how
long the next pull of a given size takes. Pulls of less than a mebibyte are not counted — their time is
round trips, not bandwidth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from updraft.errors import ImageError, Unavailable
from updraft.images.reference import ImageRef

MIN_SAMPLE_BYTES = 1 << 20


@dataclass(frozen=True)
class Pulled:
    image: Any
    """docker-py's Image."""
    bytes: int
    seconds: float


class PullRate:
    """An exponentially weighted mean of pull rates, bytes/s; None until a pull was large enough."""

    def __init__(self, alpha: float = 0.3, initial: float | None = None) -> None:
        self.alpha = alpha
        self.value: float | None = initial

    def add(self, nbytes: int, seconds: float) -> None:
        if nbytes < MIN_SAMPLE_BYTES or seconds <= 0:
            return
        rate = nbytes / seconds
        self.value = rate if self.value is None else (1 - self.alpha) * self.value + self.alpha * rate


def pull_image(client: Any, image: str) -> Pulled:
    """Pull ``image`` (by digest when pinned). Raises ImageError naming the image and Docker's reason."""
    import docker.errors

    ref = ImageRef.parse(image)
    started = time.monotonic()
    totals: dict[str, int] = {}
    try:
        for chunk in client.api.pull(ref.name, tag=ref.digest or ref.tag or "latest", stream=True, decode=True):
            if "error" in chunk:
                raise ImageError(f"image {image} cannot be pulled: {str(chunk['error']).strip()}", image=image)
            detail = chunk.get("progressDetail") or {}
            if chunk.get("status") == "Downloading" and detail.get("total"):
                layer = str(chunk.get("id", ""))
                totals[layer] = max(totals.get(layer, 0), int(detail["total"]))
        pulled = client.images.get(image)
    except docker.errors.APIError as exc:
        raise ImageError(f"image {image} cannot be pulled: {exc.explanation or exc}", image=image) from exc
    except docker.errors.DockerException as exc:
        raise Unavailable(f"docker does not answer: {exc}") from exc
    return Pulled(pulled, sum(totals.values()), time.monotonic() - started)
